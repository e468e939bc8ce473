// voiceedgectl show cdp neighbors [--detail]: IOS-like columns from the daemon's JSON.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

constexpr const char* kCapabilityLegend =
    "Capability Codes: R - Router, T - Trans Bridge, B - Source Route Bridge\n"
    "                  S - Switch, H - Host, I - IGMP, r - Repeater, P - Phone,\n"
    "                  D - Remote, C - CVTA, M - Two-port Mac Relay\n"
    "LLDP (Proto lldp): R - Router, B - Bridge, T - Telephone, C - DOCSIS Cable Device,\n"
    "                  W - WLAN Access Point, P - Repeater, S - Station, O - Other\n\n";

std::string join(const json& list) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& v : list) {
    if (!v.is_string()) continue;
    if (!out.empty()) out += ", ";
    out += v.get<std::string>();
  }
  return out;
}

// Long LLDP system descriptions would push the columns off the screen (IOS truncates too);
// --detail and --json show them whole.
std::string clip(std::string text, std::size_t width) {
  if (text.size() > width) text = text.substr(0, width - 1) + "~";
  return text;
}

std::string milliwatts(const json& n, const char* key) {
  if (!n.contains(key) || !n[key].is_number()) return "";
  return fmt::format("{} mW", n[key].get<std::uint64_t>());
}

std::string render_detail(const json& data) {
  std::string out;
  for (const auto& n : data["neighbors"]) {
    out += "-------------------------\n";
    out += fmt::format("Device ID: {}\n", field(n, "device_id"));
    out += fmt::format("Protocol: {}  MAC: {}  (frames from {})\n", field(n, "protocol"), field(n, "mac"),
                       field(n, "source_mac"));
    out += fmt::format("Entry address(es): {}\n", join(n["addresses"]));
    out += fmt::format("Platform: {},  Capabilities: {}\n", field(n, "platform"),
                       n.contains("capability_names") ? join(n["capability_names"]) : field(n, "capabilities"));
    if (n.contains("system_capabilities") && !n["system_capabilities"].empty()) {
      out += fmt::format("System capabilities: {}\n", join(n["system_capabilities"]));
    }
    out += fmt::format("Interface: {},  Port ID (outgoing port): {}\n", field(n, "local_port"), field(n, "port_id"));
    out += fmt::format("Holdtime : {} sec\n", field(n, "holdtime_s"));
    out += fmt::format("Version : {}\n", field(n, "software_version"));
    if (!field(n, "native_vlan").empty()) out += fmt::format("Native VLAN: {}\n", field(n, "native_vlan"));
    out += fmt::format("Asked for voice VLAN: {}\n", n.value("asked_voice_vlan", false) ? "yes" : "no");
    out += fmt::format("Port's phone (verified): {}\n", n.value("verified", false) ? "yes" : "no");
    for (const auto& p : n.value("network_policies", json::array())) {
      out +=
          fmt::format("Network policy: {} vlan {} {} priority {} dscp {}\n", field(p, "application"), field(p, "vlan"),
                      p.value("tagged", false) ? "tagged" : "untagged", field(p, "priority"), field(p, "dscp"));
    }
    if (!field(n, "policy_warning").empty()) out += fmt::format("Policy warning: {}\n", field(n, "policy_warning"));
    if (!milliwatts(n, "power_requested_mw").empty()) {
      const std::string granted = milliwatts(n, "power_granted_mw");
      out += fmt::format("Power request: {},  granted: {}\n", milliwatts(n, "power_requested_mw"),
                         granted.empty() ? "refused (not the port's phone)" : granted);
    }
    out += fmt::format("First seen: {},  last seen: {}\n\n", field(n, "first_seen"), field(n, "last_seen"));
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : data["ports"]) {
    const json& c = p.contains("counters") ? p["counters"] : json::object();
    std::string state = p.value("capturing", false) ? "up" : "down";
    if (!field(p, "error").empty()) state += " (" + field(p, "error") + ")";
    rows.push_back({field(p, "port"), field(p, "voice_vlan"), field(c, "cdp_sent"), field(c, "cdp_received"),
                    field(c, "lldp_sent"), field(c, "lldp_received"), field(c, "malformed"), field(c, "ignored"),
                    field(c, "neighbors_dropped"), field(c, "neighbors_evicted"), field(c, "power_refused"), state});
  }
  out += render_table({"Port", "Voice VLAN", "CDP out", "CDP in", "LLDP out", "LLDP in", "Malformed", "Ignored",
                       "Dropped", "Evicted", "Refused", "Capture"},
                      rows);
  return out;
}

std::string render_neighbors(const json& data, const json& args) {
  if (!data.is_object() || !data.contains("neighbors")) return "no data\n";
  if (args.value("detail", false)) return render_detail(data);
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : data["neighbors"]) {
    rows.push_back({clip(field(n, "device_id"), 24), field(n, "local_port"), field(n, "holdtime_s"),
                    field(n, "capabilities"), clip(field(n, "platform"), 24), clip(field(n, "port_id"), 16),
                    field(n, "protocol")});
  }
  std::string out = kCapabilityLegend;
  out += render_table({"Device ID", "Local Intrfce", "Holdtme", "Capability", "Platform", "Port ID", "Proto"}, rows);
  out += fmt::format("\nTotal entries displayed: {}\n", rows.size());
  return out;
}

}  // namespace

void add_cdp_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowCdpNeighbors),
                    {},
                    "CDP and LLDP neighbours per port (--detail: full entries and per-port counters)",
                    render_neighbors,
                    {"detail"}});
}

}  // namespace ve::ctl
