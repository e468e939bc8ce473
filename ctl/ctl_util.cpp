#include "ctl/ctl_util.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "ve/device_status.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {

using nlohmann::json;

std::string field(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "";
  const auto& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

std::string render_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size(), 0);
  for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      out += cell;
      if (i + 1 < width.size()) out += std::string(width[i] - cell.size() + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

namespace {

std::string render_phones(const json& data, const json&) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : data) {
    std::string reg = p.value("registered", false) ? "Registered" : "No";
    std::string failed = p["failed_step"].is_null() ? "" : p["failed_step"].dump();
    rows.push_back({field(p, "name"), field(p, "port"), field(p, "ipv4_address"), reg, field(p, "active_load_id"),
                    p.value("registered", false) ? "" : field(p, "reason")});
  }
  std::string out = render_table({"Name", "Port", "IPv4 Address", "Registered", "Load", "First failing step"}, rows);
  std::size_t registered = 0;
  for (const auto& p : data)
    if (p.value("registered", false)) ++registered;
  out += fmt::format("\n{} phones, {} registered\n", data.size(), registered);
  return out;
}

std::string render_journey(const json& data, const json&) {
  const auto& ds = data["phone"];
  std::string out = fmt::format("Device Status — {}\n", field(ds, "name"));
  for (const auto& f : kDeviceStatusFields) {
    out += fmt::format("  {:<17} {}\n", std::string(f.label) + ":", field(ds, std::string(f.key).c_str()));
  }
  out += "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : data["steps"]) {
    rows.push_back({field(s, "step"), field(s, "name"), s.value("seen", false) ? field(s, "outcome") : "-",
                    field(s, "last"), field(s, "detail")});
  }
  out += render_table({"#", "Step", "Outcome", "Last", "Detail"}, rows);
  if (!data["failed_step"].is_null()) out += "\nFirst failing step: " + field(data, "reason") + "\n";
  return out;
}

}  // namespace

void add_core_commands(CommandTable& table) {
  table.add({command::words(command::kVersion),
             {},
             "Versions of the running daemon and of voiceedgectl",
             [](const json& d, const json&) {
               return fmt::format("{} {}\nvoiceedgectl {}\n", field(d, "name"), field(d, "version"), VE_VERSION);
             }});
  table.add({command::words(command::kReload),
             {},
             "Re-read the site file (the old config keeps running on error)",
             [](const json& d, const json&) {
               return fmt::format("reloaded: {} ports, {} phones\n", field(d, "ports"), field(d, "phones"));
             }});
  table.add({command::words(command::kShowConfig),
             {},
             "The running configuration (passwords masked)",
             [](const json& d, const json&) { return d.dump(2) + "\n"; }});
  table.add({command::words(command::kShowPhones),
             {},
             "Every phone seen: port, address, registration, first failing step",
             render_phones});
  table.add({command::words(command::kShowJourney),
             {"phone"},
             "The fourteen boot steps of one phone, with times and details",
             render_journey});
}

}  // namespace ve::ctl
