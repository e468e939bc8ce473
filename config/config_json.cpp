// SiteConfig as JSON for `voiceedgectl show config`. Secrets never leave: passwords print "***".
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace ve::config {

namespace {
nlohmann::json addrs(const std::vector<Ipv4>& v) {
  auto a = nlohmann::json::array();
  for (const auto& x : v) a.push_back(x.to_string());
  return a;
}
}  // namespace

nlohmann::json to_json(const SiteConfig& c) {
  using nlohmann::json;
  json j;
  j["source"] = c.source.string();
  j["site"] = {{"name", c.site.name}, {"timezone", c.site.timezone}, {"locale", c.site.locale}};
  j["state_dir"] = c.state_dir;
  j["control"] = {{"socket", c.control.socket},
                  {"read_group", c.control.read_group},
                  {"admin_group", c.control.admin_group},
                  {"http", c.control.http ? json(c.control.http->to_string()) : json(nullptr)}};
  j["ports"] = json::array();
  for (const auto& p : c.ports) {
    j["ports"].push_back(
        {{"name", p.name},
         {"voice_vlan", p.voice_vlan},
         {"data_vlan", p.data_vlan},
         {"poe",
          {{"mode", to_string(p.poe.mode)}, {"priority", to_string(p.poe.priority)}, {"max_watts", p.poe.max_watts}}}});
  }
  j["cdp"] = {{"enabled", c.cdp.enabled},
              {"interval_s", c.cdp.interval_s},
              {"holdtime_s", c.cdp.holdtime_s},
              {"fast_start_count", c.cdp.fast_start_count}};
  j["lldp"] = {{"enabled", c.lldp.enabled},
               {"med", c.lldp.med},
               {"voice_priority", c.lldp.voice_priority},
               {"voice_dscp", c.lldp.voice_dscp}};
  json sim = json::object();
  for (const auto& [port, s] : c.poe.sim)
    sim[port] = {{"class", s.power_class}, {"draw_watts", s.draw_watts}, {"connected", s.connected}};
  j["poe"] = {{"driver", c.poe.driver}, {"budget_watts", c.poe.budget_watts}, {"sim", sim}};
  json subnets = json::array();
  for (const auto& s : c.dhcp.subnets) {
    subnets.push_back({{"vlan", s.vlan},
                       {"interface", s.interface},
                       {"prefix", s.prefix.to_string()},
                       {"pool", s.pool_first.to_string() + "-" + s.pool_last.to_string()},
                       {"router", s.router.to_string()},
                       {"dns", addrs(s.dns)},
                       {"tftp_servers", addrs(s.tftp_servers)}});
  }
  j["dhcp"] = {
      {"kea",
       {{"manage", c.dhcp.kea.manage},
        {"binary", c.dhcp.kea.binary},
        {"hook_library", c.dhcp.kea.hook_library},
        {"event_socket", c.dhcp.kea.event_socket},
        {"valid_lifetime_s", c.dhcp.kea.valid_lifetime_s},
        {"socket_receive_buffer_kib", c.dhcp.kea.socket_receive_buffer_kib}}},
      {"subnets", subnets},
      {"phone_match",
       {{"vendor_class_prefixes", c.dhcp.phone_match.vendor_class_prefixes}, {"ouis", c.dhcp.phone_match.ouis}}}};
  json group = json::array();
  for (const auto& m : c.provisioning.call_manager_group)
    group.push_back({{"name", m.name}, {"host", m.host}, {"sip_port", m.sip_port}, {"priority", m.priority}});
  const auto& pr = c.provisioning;
  j["provisioning"] = {{"root", pr.root},
                       {"tftp",
                        {{"listen", pr.tftp.listen.host + ":" + std::to_string(pr.tftp.listen.port)},
                         {"max_transfers", pr.tftp.max_transfers},
                         {"max_per_client", pr.tftp.max_per_client}}},
                       {"http",
                        {{"listen", pr.http.listen.host + ":" + std::to_string(pr.http.listen.port)},
                         {"max_connections", pr.http.max_connections}}},
                       {"secure", pr.secure},
                       {"call_manager_group", group},
                       {"default_load", pr.default_load},
                       {"auto_register", pr.auto_register},
                       {"config_access", to_string(pr.config_access)}};
  json listen = json::array();
  for (const auto& e : c.sip.listen) listen.push_back(e.to_string());
  j["sip"] = {{"listen", listen},
              {"realm", c.sip.realm},
              {"default_expires_s", c.sip.default_expires_s},
              {"min_expires_s", c.sip.min_expires_s},
              {"max_expires_s", c.sip.max_expires_s}};
  json upstream = json::array();
  for (const auto& u : c.sip.upstream)
    upstream.push_back({{"name", u.name}, {"host", u.host}, {"port", u.port}, {"transport", u.transport}});
  j["sip"]["upstream"] = upstream;
  j["sip"]["survivability"] = {{"probe_interval_s", c.sip.survivability.probe_interval_s},
                               {"probe_failures", c.sip.survivability.probe_failures},
                               {"rehome_after_s", c.sip.survivability.rehome_after_s}};
  j["net"] = {{"mode", to_string(c.net.mode)}, {"bridge", c.net.bridge}, {"uplink", c.net.uplink}};
  j["diagnostics"] = {{"boot_capture_per_phone_kib", c.diagnostics.boot_capture_per_phone_kib},
                      {"boot_capture_total_mib", c.diagnostics.boot_capture_total_mib},
                      {"boot_timeout_s", c.diagnostics.boot_timeout_s}};
  j["phones"] = json::array();
  for (const auto& p : c.phones) {
    json lines = json::array();
    for (const auto& l : p.lines) {
      lines.push_back({{"button", l.button},
                       {"extension", l.extension},
                       {"display", l.display},
                       {"auth_user", l.auth_user},
                       {"password", "***"}});
    }
    j["phones"].push_back({{"mac", p.mac.to_string()},
                           {"name", p.mac.sep_name()},
                           {"model", p.model},
                           {"description", p.description},
                           {"load", p.load},
                           {"port", p.port},
                           {"lines", lines}});
    if (p.ip) j["phones"].back()["ip"] = p.ip->to_string();
  }
  return j;
}

}  // namespace ve::config
