// Site file -> kea-dhcp4 configuration. One place decides what Kea is told, so the hook and Kea
// always agree on subnets, pools and the site file.
#include "dhcp/dhcp.hpp"

#include <set>
#include <string>

#include <fmt/format.h>

namespace ve::dhcp {

namespace fs = std::filesystem;

KeaPaths kea_paths(const config::SiteConfig& site) {
  KeaPaths p;
  p.dir = fs::path(site.state_dir) / "kea";
  p.config = p.dir / "kea-dhcp4.json";
  p.leases = p.dir / "kea-leases4.csv";
  p.control_socket = p.dir / "kea4-ctrl.sock";
  p.pid_file = p.dir / "kea-dhcp4.kea-dhcp4.pid";
  p.log = p.dir / "kea-dhcp4.log";
  return p;
}

namespace {

// A fingerprint of what the hook reads from the site file. Kea's JSON changes with it, so editing
// only tftp_servers or phone_match still makes the supervisor send config-reload, which makes Kea
// reload the hook, which re-reads the site file.
std::string hook_inputs_digest(const config::SiteConfig& site) {
  std::string canon;
  for (const auto& s : site.dhcp.subnets) {
    canon += s.prefix.to_string() + ":";
    for (const auto& t : s.tftp_servers) canon += t.to_string() + ",";
    canon += ";";
  }
  for (const auto& p : site.dhcp.phone_match.vendor_class_prefixes) canon += "v:" + p + ";";
  for (const auto& o : site.dhcp.phone_match.ouis) canon += "o:" + o + ";";
  for (const auto& p : site.phones) canon += "m:" + p.mac.to_string() + ";";
  canon += "rb:" + std::to_string(site.dhcp.kea.socket_receive_buffer_kib) + ";";  // set on Kea's sockets
  std::uint64_t h = 1469598103934665603ull;                                        // FNV-1a 64
  for (unsigned char c : canon) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

nlohmann::json hook_library(const config::SiteConfig& site, bool with_digest) {
  std::error_code ec;
  auto site_file = site.source.empty() ? fs::path{} : fs::absolute(site.source, ec);
  nlohmann::json params = {{"site-file", site_file.string()}, {"event-socket", site.dhcp.kea.event_socket}};
  if (with_digest) params["site-digest"] = hook_inputs_digest(site);
  return {{"library", site.dhcp.kea.hook_library}, {"parameters", params}};
}

nlohmann::json subnet_json(const config::Subnet& s, int id) {
  nlohmann::json options = nlohmann::json::array();
  if (s.router.value != 0) options.push_back({{"name", "routers"}, {"data", s.router.to_string()}});
  if (!s.dns.empty()) {
    std::string list;
    for (const auto& d : s.dns) list += (list.empty() ? "" : ", ") + d.to_string();
    options.push_back({{"name", "domain-name-servers"}, {"data", list}});
  }
  // Options 150 and 66 are not here: the hook adds them, for phones only.
  nlohmann::json j = {{"id", id},
                      {"subnet", s.prefix.to_string()},
                      {"pools", {{{"pool", s.pool_first.to_string() + " - " + s.pool_last.to_string()}}}},
                      {"option-data", options},
                      {"user-context", {{"voiceedge-vlan", s.vlan}}}};
  if (!s.interface.empty()) j["interface"] = s.interface;
  return j;
}

}  // namespace

nlohmann::json make_kea_config(const config::SiteConfig& site, bool hook_part_only) {
  nlohmann::json hooks = nlohmann::json::array({hook_library(site, !hook_part_only)});
  if (hook_part_only) return {{"hooks-libraries", hooks}};

  const auto paths = kea_paths(site);
  std::set<std::string> interfaces;
  nlohmann::json subnets = nlohmann::json::array();
  int id = 1;
  for (const auto& s : site.dhcp.subnets) {
    if (!s.interface.empty()) interfaces.insert(s.interface);
    subnets.push_back(subnet_json(s, id++));
  }
  return {{"Dhcp4",
           {{"interfaces-config", {{"interfaces", interfaces}, {"dhcp-socket-type", "raw"}}},
            {"control-socket", {{"socket-type", "unix"}, {"socket-name", paths.control_socket.string()}}},
            {"lease-database",
             {{"type", "memfile"}, {"persist", true}, {"name", paths.leases.string()}, {"lfc-interval", 3600}}},
            {"valid-lifetime", site.dhcp.kea.valid_lifetime_s},
            {"subnet4", subnets},
            {"hooks-libraries", hooks},
            {"loggers",
             {{{"name", "kea-dhcp4"},
               {"severity", "INFO"},
               // No timestamp: the daemon's log adds its own when it relays these lines.
               {"output_options",
                {{{"output", paths.log.string()},
                  {"pattern", "%-5p [%c] %m\n"},
                  {"flush", true},
                  {"maxsize", 10485760},
                  {"maxver", 2}}}}}}}}}};
}

}  // namespace ve::dhcp
