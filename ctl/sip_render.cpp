// voiceedgectl show sip registrations [--detail]: one row per binding from the daemon's JSON.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

std::string render_registrations(const json& data, const json& args) {
  if (!data.is_object() || !data.contains("registrations")) return "no data\n";
  std::string out;
  if (!field(data, "error").empty()) out += fmt::format("Registrar not running: {}\n\n", field(data, "error"));
  const bool detail = args.value("detail", false);
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : data["registrations"]) {
    std::vector<std::string> row{field(b, "aor"),       field(b, "contact"),      field(b, "transport"),
                                 field(b, "source"),    field(b, "expires_in_s"), field(b, "device_name"),
                                 field(b, "user_agent")};
    if (detail) {
      row.push_back(field(b, "mac"));
      row.push_back(field(b, "active_load"));
      row.push_back(field(b, "inactive_load"));
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header{"AOR", "Contact", "Transport", "Source", "Expires (s)", "Device", "User-Agent"};
  if (detail) {
    header.insert(header.end(), {"MAC", "Active Load", "Inactive Load"});
  }
  out += render_table(header, rows);
  out += fmt::format("\nTotal registrations: {}\n", rows.size());
  if (detail && data.contains("counters")) {
    const auto& c = data["counters"];
    out += fmt::format(
        "Received {}, REGISTER {}, challenges {}, auth failures {}, malformed answered {} / dropped {}, "
        "TCP accepted {} / rejected {} / idle-closed {}\n",
        field(c, "received"), field(c, "registers"), field(c, "challenges"), field(c, "auth_failures"),
        field(c, "malformed_answered"), field(c, "malformed_dropped"), field(c, "tcp_accepted"),
        field(c, "tcp_rejected"), field(c, "tcp_idle_closed"));
  }
  return out;
}

std::string render_calls(const json& data, const json&) {
  if (!data.is_object() || !data.contains("calls")) return "no data\n";
  std::vector<std::vector<std::string>> active;
  std::vector<std::vector<std::string>> ended;
  for (const auto& c : data["calls"]) {
    const std::string transports = field(c, "caller_transport") + " -> " + field(c, "callee_transport");
    if (field(c, "state") != "ended") {
      active.push_back({field(c, "from"), field(c, "to"), field(c, "answered_by"), field(c, "state"),
                        field(c, "since_s"), transports});
    } else {
      ended.push_back({field(c, "started_at"), field(c, "from"), field(c, "to"), field(c, "answered_by"),
                       field(c, "answered_at"), field(c, "ended_at"), field(c, "duration_s"),
                       field(c, "final_code") + " " + field(c, "reason"), field(c, "ended_by")});
    }
  }
  std::string out = fmt::format("Active calls: {}\n", active.size());
  if (!active.empty()) out += render_table({"From", "To", "Answered by", "State", "Since (s)", "Transports"}, active);
  out += fmt::format("\nRecent calls: {}\n", ended.size());
  if (!ended.empty())
    out += render_table({"Start", "From", "To", "Answered by", "Answer", "End", "Duration (s)", "Final", "Ended by"},
                        ended);
  if (data.contains("counters")) {
    const auto& k = data["counters"];
    out += fmt::format(
        "\nAttempts {}, answered {}, busy {}, no answer {}, cancelled {}, not found {}, unavailable {}, other "
        "failures {}; 407 challenges {}, 403 {}, relay denied {}, forwarded {}\n",
        field(k, "attempts"), field(k, "answered"), field(k, "busy"), field(k, "no_answer"), field(k, "cancelled"),
        field(k, "not_found"), field(k, "unavailable"), field(k, "failed_other"), field(k, "auth_challenges"),
        field(k, "auth_failures"), field(k, "relay_denied"), field(k, "forwarded"));
  }
  return out;
}

// SRST: each upstream's probe state and the box's mode.
std::string render_upstream(const json& data, const json&) {
  if (!data.is_object() || !data.contains("mode")) return "no data\n";
  const std::string mode = field(data, "mode");
  if (mode == "local") return "Mode: local (no sip.upstream configured: the box is the call control)\n";
  std::string out = fmt::format("Mode: {} since {} ({} s)", mode, field(data, "since"), field(data, "since_s"));
  if (!field(data, "active").empty()) out += fmt::format(", registering with {}", field(data, "active"));
  out += "\n";
  if (data.contains("survivability")) {
    const auto& s = data["survivability"];
    out += fmt::format("Probes: OPTIONS every {} s, down after {} misses, re-home after {} s answering\n\n",
                       field(s, "probe_interval_s"), field(s, "probe_failures"), field(s, "rehome_after_s"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& u : data.value("upstreams", json::array())) {
    std::string state = field(u, "state");
    if (state == "up" && !u.value("usable", false)) state = "up (re-homing)";
    const std::string probe = u.contains("last_probe_s") && !u["last_probe_s"].is_null()
                                  ? field(u, "last_probe_s") + " s ago"
                                  : std::string("never");
    const std::string rtt = u.contains("rtt_ms") && !u["rtt_ms"].is_null() ? field(u, "rtt_ms") + " ms" : "-";
    rows.push_back({field(u, "name"), field(u, "address"), state, probe, rtt,
                    field(u, "since") + " (" + field(u, "since_s") + " s)", field(u, "misses")});
  }
  out += render_table({"Name", "Address", "State", "Last probe", "RTT", "Since", "Misses"}, rows);
  const auto changes = data.value("changes", json::array());
  if (!changes.empty()) {
    out += "\nMode changes (most recent last):\n";
    for (const auto& c : changes)
      out += fmt::format("  {}  {} -> {}: {}\n", field(c, "at"), field(c, "from"), field(c, "to"), field(c, "why"));
  }
  return out;
}

}  // namespace

void add_sip_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowSipRegistrations),
                    {},
                    "SIP registrations: AOR, contact, transport, source, expiry, device, user agent",
                    render_registrations,
                    {"detail"}});
  table.add(Command{command::words(command::kShowCalls),
                    {},
                    "Calls through the proxy: active calls (from, to, state, since, transports) and recent "
                    "call records (start, answer, end, duration, final code, ending side)",
                    render_calls});
  table.add(Command{command::words(command::kShowSipUpstream),
                    {},
                    "SRST: the box's mode (upstream or survivable, since when) and each sip.upstream's name, "
                    "address, state, last probe, round-trip time and since when",
                    render_upstream});
}

}  // namespace ve::ctl
