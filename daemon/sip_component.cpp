// Daemon glue for sip/: the registrar on the daemon's io_context, its bindings reported as phone
// events (steps 10 and 11) through the journey sink, and the "show.sip.registrations" command.
#include <ctime>

#include <fmt/format.h>

#include "daemon/daemon_registry.hpp"
#include "sip/phone_control.hpp"
#include "sip/sip.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"
#include "ve/time_format.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;

json binding_json(const sip::BindingInfo& b) {
  return json{
      {"aor", b.aor},
      {"user", b.user},
      {"contact", b.contact},
      {"instance", b.instance},
      {"transport", sip::to_string(b.transport)},
      {"source", b.source},
      {"expires_in_s", b.expires_in_s},
      {"expires_at", iso_time(b.expires_at)},
      {"registered_at", iso_time(b.registered_at)},
      {"mac", b.mac ? json(b.mac->to_string()) : json()},
      {"device_name", b.device_name},
      {"model", b.model},
      {"user_agent", b.user_agent},
      {"active_load", b.active_load},
      {"inactive_load", b.inactive_load},
      {"reason_name", b.reason_name},
      {"registered_with", b.registered_with},
      {"call_id", b.call_id},
      {"cseq", b.cseq},
  };
}

json counters_json(const sip::ServerCounters& c) {
  return json{{"received", c.received},
              {"malformed_dropped", c.malformed_dropped},
              {"malformed_answered", c.malformed_answered},
              {"responses_ignored", c.responses_ignored},
              {"registers", c.registers},
              {"challenges", c.challenges},
              {"auth_failures", c.auth_failures},
              {"tcp_accepted", c.tcp_accepted},
              {"tcp_rejected", c.tcp_rejected},
              {"tcp_idle_closed", c.tcp_idle_closed},
              {"auth_stale", c.auth_stale},
              {"auth_replays", c.auth_replays},
              {"auth_blocked", c.auth_blocked},
              {"auth_blocks", c.auth_blocks},
              {"bindings_replaced", c.bindings_replaced},
              {"udp_contacts_trimmed", c.udp_contacts_trimmed},
              {"unverified_events", c.unverified_events}};
}

json optional_time(const std::optional<std::chrono::system_clock::time_point>& t) {
  return t ? json(iso_time(*t)) : json();
}

json call_json(const sip::CallInfo& c, std::chrono::system_clock::time_point now) {
  const auto end = c.ended.value_or(now);
  const auto seconds = [](auto d) { return std::chrono::duration_cast<std::chrono::seconds>(d).count(); };
  return json{{"call_id", c.call_id},
              {"from", c.from},
              {"to", c.to},
              {"answered_by", c.answered_by},
              {"state", c.state},
              {"started_at", iso_time(c.started)},
              {"answered_at", optional_time(c.answered)},
              {"ended_at", optional_time(c.ended)},
              {"since_s", seconds(now - (c.answered ? *c.answered : c.started))},
              {"duration_s", c.answered ? json(seconds(end - *c.answered)) : json()},
              {"final_code", c.final_code},
              {"reason", c.reason},
              {"ended_by", c.ended_by},
              {"caller_transport", sip::to_string(c.caller_transport)},
              {"callee_transport", sip::to_string(c.callee_transport)}};
}

json call_counters_json(const sip::CallCounters& c) {
  return json{
      {"attempts", c.attempts},           {"answered", c.answered},         {"busy", c.busy},
      {"no_answer", c.no_answer},         {"cancelled", c.cancelled},       {"not_found", c.not_found},
      {"unavailable", c.unavailable},     {"failed_other", c.failed_other}, {"auth_challenges", c.auth_challenges},
      {"auth_failures", c.auth_failures}, {"relay_denied", c.relay_denied}, {"forwarded", c.forwarded}};
}

// SRST: the box's mode and each upstream's probe state (show.sip.upstream).
json upstream_json(const sip::UpstreamOverview& o, std::chrono::system_clock::time_point now) {
  const auto ago = [&](const std::optional<std::chrono::system_clock::time_point>& t) -> json {
    return t ? json(std::chrono::duration_cast<std::chrono::seconds>(now - *t).count()) : json();
  };
  json list = json::array();
  for (const auto& u : o.upstreams) {
    list.push_back(json{{"name", u.name},
                        {"address", u.address},
                        {"state", u.state},
                        {"since", iso_time(u.since)},
                        {"since_s", ago(u.since)},
                        {"last_probe", optional_time(u.last_probe)},
                        {"last_probe_s", ago(u.last_probe)},
                        {"last_answer", optional_time(u.last_answer)},
                        {"rtt_ms", u.rtt ? json(u.rtt->count()) : json()},
                        {"last_status", u.last_status},
                        {"misses", u.misses},
                        {"usable", u.usable},
                        {"answering_since", optional_time(u.answering_since)}});
  }
  json changes = json::array();
  for (const auto& c : o.changes)
    changes.push_back(json{{"at", iso_time(c.at)}, {"from", c.from}, {"to", c.to}, {"why", c.why}});
  return json{{"mode", o.mode},
              {"since", iso_time(o.since)},
              {"since_s", ago(o.since)},
              {"active", o.active},
              {"upstreams", std::move(list)},
              {"changes", std::move(changes)},
              {"survivability", json{{"probe_interval_s", o.probe_interval_s},
                                     {"probe_failures", o.probe_failures},
                                     {"rehome_after_s", o.rehome_after_s}}}};
}

class SipComponent final : public Component {
 public:
  explicit SipComponent(Context& ctx) : server_(ctx.io, ctx.config, ctx.events, options(ctx)) {}

  std::string_view name() const override { return "sip"; }

  void start() override {
    auto r = server_.start();
    if (!r) {
      // Port in use or state dir unwritable: the rest of the daemon keeps serving phones.
      error_ = r.error();
      ve::logger("sip")->error("registrar not running: {}", error_);
      return;
    }
    ve::logger("sip")->info("registrar listening (udp port {}, tcp port {})", server_.udp_port(), server_.tcp_port());
  }

  Result<void, std::string> prepare_reconfigure(const config::SiteConfigPtr& config) override {
    return server_.prepare_reconfigure(config);
  }
  void abandon_reconfigure() override { server_.abandon_reconfigure(); }
  void reconfigure(const config::SiteConfigPtr& config) override { server_.reconfigure(config); }
  void stop() override { server_.stop(); }

  json registrations() const {
    json list = json::array();
    for (const auto& b : server_.registrations()) list.push_back(binding_json(b));
    return json{{"registrations", std::move(list)},
                {"counters", counters_json(server_.counters())},
                {"listening", json{{"udp_port", server_.udp_port()}, {"tcp_port", server_.tcp_port()}}},
                {"error", error_}};
  }

  std::string metrics() const {
    const auto c = server_.call_counters();
    std::string out =
        "# HELP voiceedge_calls_total Calls through the proxy by outcome.\n# TYPE voiceedge_calls_total counter\n";
    for (const auto& [outcome, n] : std::vector<std::pair<const char*, std::uint64_t>>{{"answered", c.answered},
                                                                                       {"busy", c.busy},
                                                                                       {"no_answer", c.no_answer},
                                                                                       {"cancelled", c.cancelled},
                                                                                       {"not_found", c.not_found},
                                                                                       {"unavailable", c.unavailable},
                                                                                       {"failed", c.failed_other}})
      out += fmt::format("voiceedge_calls_total{{outcome=\"{}\"}} {}\n", outcome, n);
    std::size_t active = 0;
    for (const auto& call : server_.calls())
      if (call.state != "ended") ++active;
    out += fmt::format(
        "# HELP voiceedge_calls_active Calls ringing or answered now.\n# TYPE voiceedge_calls_active gauge\n"
        "voiceedge_calls_active {}\n",
        active);
    out += fmt::format(
        "# HELP voiceedge_call_auth_failures_total Calls refused 403 (wrong password or From).\n"
        "# TYPE voiceedge_call_auth_failures_total counter\nvoiceedge_call_auth_failures_total {}\n",
        c.auth_failures);
    // SRST: one gauge per mode (1 for the current one) and each upstream's state.
    const auto up = server_.upstream();
    out +=
        "# HELP voiceedge_sip_mode The box's SIP mode: local (no sip.upstream), upstream or survivable.\n"
        "# TYPE voiceedge_sip_mode gauge\n";
    for (const char* mode : {"local", "upstream", "survivable"})
      out += fmt::format("voiceedge_sip_mode{{mode=\"{}\"}} {}\n", mode, up.mode == mode ? 1 : 0);
    if (!up.upstreams.empty()) {
      out +=
          "# HELP voiceedge_sip_upstream_up 1 while the upstream answers its OPTIONS probes.\n"
          "# TYPE voiceedge_sip_upstream_up gauge\n";
      for (const auto& u : up.upstreams)
        out += fmt::format("voiceedge_sip_upstream_up{{upstream=\"{}\",address=\"{}\"}} {}\n", u.name, u.address,
                           u.state == "up" ? 1 : 0);
      out +=
          "# HELP voiceedge_sip_upstream_rtt_seconds Round-trip time of the last answered probe.\n"
          "# TYPE voiceedge_sip_upstream_rtt_seconds gauge\n";
      for (const auto& u : up.upstreams)
        if (u.rtt)
          out += fmt::format("voiceedge_sip_upstream_rtt_seconds{{upstream=\"{}\"}} {:.4f}\n", u.name,
                             static_cast<double>(u.rtt->count()) / 1000.0);
    }
    return out;
  }

  sip::Server& server() { return server_; }
  json upstream() const { return upstream_json(server_.upstream(), std::chrono::system_clock::now()); }

  json calls() const {
    const auto now = std::chrono::system_clock::now();
    json list = json::array();
    for (const auto& c : server_.calls()) list.push_back(call_json(c, now));
    return json{{"calls", std::move(list)}, {"counters", call_counters_json(server_.call_counters())}};
  }

 private:
  // TCP connections are capped by the process's fd budget (ve/accept_guard.hpp).
  static sip::ServerOptions options(Context& ctx) {
    sip::ServerOptions o;
    o.tcp_max_connections = ctx.fd_budget.cap(o.tcp_max_connections, fd_share::kSipTcp);
    Services& services = ctx.services;
    // Kea's lease of a source address to the line's phone makes an unauthenticated request
    // evidence about that phone (a wrong password on the phone itself). Looked up per request:
    // the DHCP component sets mac_for_ip during wiring, possibly after this component.
    o.lease_mac = [&services](const std::string& ip) -> std::optional<MacAddress> {
      return services.mac_for_ip ? services.mac_for_ip(ip) : std::nullopt;
    };
    return o;
  }

  sip::Server server_;
  std::string error_;
};

// Phone control's NOTIFY (daemon/phonectl_component.cpp) as JSON: what went out, then the answer.
Result<json, std::string> service_control(sip::Server& server, const Services::ServiceControlCall& call,
                                          std::function<void(const json&)> answered) {
  sip::ServiceControlRequest req;
  req.mac = call.mac;
  req.action = call.action == "reset" ? sip::ServiceAction::Reset : sip::ServiceAction::Restart;
  req.config_version = call.config_version;
  req.line_user = call.line_user;
  auto sent = server.service_control(req, [answered = std::move(answered)](const sip::ServiceControlResult& r) {
    if (!answered) return;
    answered(json{{"answered", r.outcome.answered},
                  {"status", r.outcome.status},
                  {"reason", r.outcome.reason},
                  {"retransmissions", r.outcome.retransmissions},
                  {"waited_ms", r.outcome.waited.count()}});
  });
  if (!sent) return unexpected(sent.error());
  return json{{"destination", sent->destination},  {"transport", sip::to_string(sent->binding.transport)},
              {"registration", sent->binding.aor}, {"register_call_id", sent->binding.call_id},
              {"notify_call_id", sent->call_id},   {"body", sent->body}};
}

}  // namespace

void add_sip_component(Wiring& w) {
  auto component = std::make_unique<SipComponent>(w.ctx);
  SipComponent* raw = component.get();
  w.ctx.control.add(command::kShowSipRegistrations,
                    [raw](const json&) -> ControlResult { return raw->registrations(); });
  w.ctx.control.add(command::kShowCalls, [raw](const json&) -> ControlResult { return raw->calls(); });
  w.ctx.control.add(command::kShowSipUpstream, [raw](const json&) -> ControlResult { return raw->upstream(); });
  w.ctx.services.metrics.push_back([raw] { return raw->metrics(); });
  w.ctx.services.service_control = [raw](const Services::ServiceControlCall& call,
                                         std::function<void(const json&)> answered) {
    return service_control(raw->server(), call, std::move(answered));
  };
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
