// voiceedgectl: "show interfaces" -- per port link state, speed, PVID, voice VLAN, what the kernel
// has programmed and why not, then the VLAN interfaces that carry the subnets' router addresses.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

std::string yes_no(const json& j, const char* key) { return j.value(key, false) ? "yes" : "no"; }

std::string speed(const json& p) {
  if (!p.contains("speed_mbps") || !p["speed_mbps"].is_number()) return "-";
  int mbps = p["speed_mbps"].get<int>();
  return mbps >= 1000 && mbps % 1000 == 0 ? fmt::format("{}G", mbps / 1000) : fmt::format("{}M", mbps);
}

std::string vlan(const json& p, const char* key) {
  if (!p.contains(key) || !p[key].is_number() || p[key].get<int>() == 0) return "-";
  return std::to_string(p[key].get<int>());
}

std::string render_interfaces(const json& data, const json&) {
  const json features = data.value("features", json::object());
  std::string out =
      fmt::format("VLAN mode: {}{}   kernel: bridge VLAN filtering {}, 802.1Q {}\n\n", field(data, "mode"),
                  field(data, "bridge").empty() ? "" : " (bridge " + field(data, "bridge") + ")",
                  yes_no(features, "bridge_vlan_filtering"), yes_no(features, "vlan_8021q"));
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : data.value("ports", json::array())) {
    std::string programmed = field(p, "programmed");
    rows.push_back({field(p, "name"), field(p, "link"), speed(p), vlan(p, "pvid"), vlan(p, "voice_vlan"),
                    field(p, "state"), programmed.empty() ? "-" : programmed});
  }
  out += render_table({"Interface", "Link", "Speed", "PVID", "Voice", "State", "Programmed"}, rows);

  std::string notes;
  for (const auto& p : data.value("ports", json::array())) {
    const std::string error = field(p, "error");
    if (!error.empty()) notes += fmt::format("  {}: {}\n", field(p, "name"), error);
  }
  if (!notes.empty()) out += "\n" + notes;

  const json vis = data.value("vlan_interfaces", json::array());
  if (!vis.empty()) {
    std::vector<std::vector<std::string>> vrows;
    std::string vnotes;
    for (const auto& v : vis) {
      std::string address = field(v, "address");
      vrows.push_back({field(v, "name"), field(v, "parent"), vlan(v, "vid"), address.empty() ? "-" : address,
                       v.value("up", false) ? "up" : (v.value("present", false) ? "down" : "absent"),
                       field(v, "state")});
      const std::string error = field(v, "error");
      if (!error.empty()) vnotes += fmt::format("  {}: {}\n", field(v, "name"), error);
    }
    out += "\n" + render_table({"VLAN interface", "On", "VLAN", "Address", "Link", "State"}, vrows);
    if (!vnotes.empty()) out += "\n" + vnotes;
  }
  return out;
}

}  // namespace

void add_net_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowInterfaces),
                    {},
                    "ports: link, speed, PVID, voice VLAN, what is programmed in the kernel and any error",
                    render_interfaces});
}

}  // namespace ve::ctl
