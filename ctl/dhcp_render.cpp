// voiceedgectl show dhcp leases: the lease table the Kea hook reports, and the managed Kea's state.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {

namespace {

std::string render_leases(const nlohmann::json& data, const nlohmann::json&) {
  std::vector<std::vector<std::string>> rows;
  const auto& leases = data.contains("leases") ? data["leases"] : nlohmann::json::array();
  std::size_t bound = 0;
  for (const auto& l : leases) {
    if (field(l, "state") == "bound") ++bound;
    const std::string phone = field(l, "phone") == "no" ? "" : field(l, "device");
    std::string expires = field(l, "expires_in_s");
    if (!expires.empty()) expires += " s";
    rows.push_back({field(l, "ip"), field(l, "mac"), phone, field(l, "state"), field(l, "subnet"), expires,
                    field(l, "hostname"), field(l, "vendor_class")});
  }
  std::string out =
      render_table({"IP", "MAC", "Phone", "State", "Subnet", "Expires", "Hostname", "Vendor class"}, rows);
  out += fmt::format("\n{} lease(s), {} bound\n", leases.size(), bound);
  if (data.contains("status") && data["status"].contains("kea")) {
    const auto& kea = data["status"]["kea"];
    if (kea.value("managed", false) && kea.contains("state")) {
      out += fmt::format("kea-dhcp4: {} (pid {}{}), restarts {}\n", field(kea, "state"),
                         field(kea, "pid").empty() ? "-" : field(kea, "pid"),
                         kea.value("adopted", false) ? ", adopted" : "", field(kea, "restarts"));
    } else {
      out += "kea-dhcp4: not managed by voiceedged\n";
    }
  }
  return out;
}

}  // namespace

void add_dhcp_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowDhcpLeases),
                    {},
                    "DHCP leases reported by Kea (phones marked), and Kea's state",
                    render_leases});
}

}  // namespace ve::ctl
