// voiceedgectl: "show power inline" in the IOS layout and "power inline PORT on|off|auto".
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

std::string number_w(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "n/a";
  return fmt::format("{:.1f}", j[key].get<double>());
}

// IOS's "show power inline": a budget summary, then one row per interface.
std::string render_power_inline(const json& data, const json&) {
  std::string out =
      render_table({"Module", "Available", "Used", "Remaining"},
                   {{"", "(Watts)", "(Watts)", "(Watts)"},
                    {"1", number_w(data, "budget_w"), number_w(data, "allocated_w"), number_w(data, "remaining_w")}});
  out += "\n";
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"", "", "", "(Watts)", "", "", "", "", ""});
  for (const auto& p : data.value("ports", json::array())) {
    std::string admin = field(p, "admin");
    if (p.value("admin_overridden", false)) admin += "*";
    std::string device = field(p, "device");
    if (device.empty()) device = field(p, "oper") == "on" ? "Ieee PD" : "n/a";
    std::string cls = field(p, "class");
    if (cls.empty()) cls = "n/a";
    // The PSE's power domain; "+" when the PSE itself keeps that domain's budget (kernel 6.17+).
    std::string domain = field(p, "power_domain");
    if (domain.empty()) domain = "-";
    if (field(p, "budget_by") == "pse") domain += "+";
    std::string prio = field(p, "priority");
    if (!field(p, "pse_priority").empty()) prio += "/" + field(p, "pse_priority");
    rows.push_back({field(p, "interface"), admin, field(p, "oper"), number_w(p, "power_w"), device, cls,
                    number_w(p, "max_w"), domain, prio});
  }
  out += render_table({"Interface", "Admin", "Oper", "Power", "Device", "Class", "Max", "Domain", "Priority"}, rows);

  // Why a port is not powered, where there is a reason.
  std::string notes;
  for (const auto& p : data.value("ports", json::array())) {
    const std::string detail = field(p, "detail");
    if (!detail.empty()) notes += fmt::format("  {}: {}\n", field(p, "interface"), detail);
  }
  if (!notes.empty()) out += "\n" + notes;
  out += fmt::format("\nTotals: budget {} W, allocated {} W, used {} W (driver {})\n", number_w(data, "budget_w"),
                     number_w(data, "allocated_w"), number_w(data, "used_w"), field(data, "driver"));
  bool any_override = false;
  for (const auto& p : data.value("ports", json::array())) any_override |= p.value("admin_overridden", false);
  if (any_override) out += "* mode set with 'power inline', not from the site file\n";
  bool any_pse = false;
  std::uint64_t refused = 0;
  for (const auto& p : data.value("ports", json::array())) {
    any_pse |= field(p, "budget_by") == "pse";
    if (p.contains("refused_requests") && p["refused_requests"].is_number_unsigned()) {
      refused += p["refused_requests"].get<std::uint64_t>();
    }
  }
  if (any_pse) out += "Domain+: the PSE keeps this power domain's budget by priority (site/PSE priority shown)\n";
  if (refused != 0) out += fmt::format("Refused power requests (below the present draw): {}\n", refused);
  return out;
}

}  // namespace

void add_poe_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowPowerInline),
                    {},
                    "PoE budget and per-port power (IOS layout)",
                    render_power_inline});
  table.add(Command{command::words(command::kPowerInline),
                    {"port", "mode"},
                    "set a port's PoE mode: on (static, reserved at max_watts), off, auto",
                    render_power_inline});
}

}  // namespace ve::ctl
