// voiceedgectl show provision: listeners, counters and the most recent TFTP/HTTP transfers.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

std::string render_provision(const json& data, const json&) {
  if (!data.is_object() || !data.contains("counters")) return "no data\n";
  const json& t = data["tftp"];
  const json& h = data["http"];
  const json& c = data["counters"];
  std::string out;
  out += fmt::format("TFTP {}  active {} (max {}, {} per client)\n", field(t, "listen"), field(t, "active"),
                     field(t, "max_transfers"), field(t, "max_per_client"));
  out += fmt::format("HTTP {}  connections {} (max {})\n", field(h, "listen"), field(h, "connections"),
                     field(h, "max_connections"));
  out += fmt::format("Root {}  secure {}\n", field(data, "root"), field(data, "secure"));
  if (!field(data, "error").empty()) out += fmt::format("Error: {}\n", field(data, "error"));
  out += "\n";
  const json& ct = c["tftp"];
  const json& ch = c["http"];
  out += render_table({"", "Requests", "OK", "Not found", "Refused", "Failed", "Busy", "Malformed", "Retransmits"},
                      {{"TFTP", field(ct, "requests"), field(ct, "ok"), field(ct, "not_found"), field(ct, "refused"),
                        field(ct, "failed"), field(ct, "busy"), field(ct, "malformed"), field(ct, "retransmits")},
                       {"HTTP", field(ch, "requests"), field(ch, "ok"), field(ch, "not_found"), field(ch, "refused"),
                        field(ch, "failed"), field(ch, "busy"), field(ch, "malformed"), ""}});
  out += fmt::format("Bytes sent: {}\n\n", field(c, "bytes_sent"));
  std::vector<std::vector<std::string>> rows;
  if (data.contains("recent") && data["recent"].is_array()) {
    for (const auto& r : data["recent"]) {
      rows.push_back({field(r, "time"), field(r, "protocol"), field(r, "client_ip"), field(r, "phone"),
                      field(r, "file"), field(r, "step"), field(r, "result"), field(r, "bytes"),
                      field(r, "duration_ms")});
    }
  }
  out += render_table({"Time", "Proto", "Client", "Phone", "File", "Step", "Result", "Bytes", "ms"}, rows);
  return out;
}

}  // namespace

void add_provision_commands(CommandTable& table) {
  table.add(Command{command::words(command::kShowProvision),
                    {},
                    "TFTP/HTTP provisioning: listeners, counters, recent transfers",
                    render_provision});
}

}  // namespace ve::ctl
