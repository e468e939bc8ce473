// Daemon glue for cdp/: one Agent per configured port on the daemon's io_context, power requests
// handed to the PoE manager through Services, neighbours reported as step-3 phone events, and
// the "show.cdp.neighbors" control command.
#include <ctime>

#include "cdp/cdp.hpp"
#include "daemon/daemon_registry.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"
#include "ve/time_format.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;

std::uint8_t lldp_priority(config::PoePriority p) {
  switch (p) {
    case config::PoePriority::Critical: return 1;
    case config::PoePriority::High: return 2;
    case config::PoePriority::Low: return 3;
  }
  return 3;
}

// Our address for CDP/LLDP management TLVs: the router of the subnet served on the port's voice VLAN.
std::optional<std::uint32_t> management_address(const config::SiteConfig& c, const config::Port& port) {
  for (const auto& s : c.dhcp.subnets) {
    if (s.vlan == port.voice_vlan && (s.interface.empty() || s.interface == port.name) && s.router.value != 0) {
      return s.router.value;
    }
  }
  return std::nullopt;
}

std::vector<cdp::PortSettings> port_settings(const config::SiteConfig& c) {
  std::vector<cdp::PortSettings> out;
  for (const auto& p : c.ports) {
    cdp::PortSettings s;
    s.name = p.name;
    s.voice_vlan = p.voice_vlan;
    s.data_vlan = p.data_vlan;
    s.max_power_mw = p.poe.mode == config::PoeMode::Off ? 0 : static_cast<std::uint32_t>(p.poe.max_watts * 1000.0);
    s.lldp_power_priority = lldp_priority(p.poe.priority);
    for (const auto& phone : c.phones) {
      if (phone.port == p.name) s.phones.push_back(phone.mac);
    }
    out.push_back(std::move(s));
  }
  return out;
}

cdp::AgentSettings agent_settings(const config::SiteConfig& c) {
  cdp::AgentSettings s;
  s.device_id = c.site.name;
  s.platform = "voiceedge";
  s.software_version = std::string("voiceedge ") + VE_VERSION;
  if (!c.ports.empty()) s.management_ipv4 = management_address(c, c.ports.front());
  s.cdp_enabled = c.cdp.enabled;
  s.interval_s = c.cdp.interval_s;
  s.holdtime_s = c.cdp.holdtime_s;
  s.fast_start_count = c.cdp.fast_start_count;
  s.lldp_enabled = c.lldp.enabled;
  s.lldp_med = c.lldp.med;
  s.voice_priority = static_cast<std::uint8_t>(c.lldp.voice_priority);
  s.voice_dscp = static_cast<std::uint8_t>(c.lldp.voice_dscp);
  return s;
}

json neighbor_json(const cdp::Neighbor& n) {
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(n.expires - std::chrono::steady_clock::now());
  const bool lldp = n.protocol == cdp::Protocol::Lldp;
  json j{
      {"device_id", n.device_id},
      {"protocol", cdp::to_string(n.protocol)},
      {"local_port", n.port},
      {"holdtime_s", std::max<long>(0, static_cast<long>(left.count()))},
      {"capabilities", lldp ? cdp::lldp_capability_letters(static_cast<std::uint16_t>(n.capabilities))
                            : cdp::capability_letters(n.capabilities)},
      {"capability_bits", n.capabilities},
      {"verified", n.verified},
      {"platform", n.platform},
      {"port_id", n.port_id},
      {"mac", n.phone_mac.to_string()},
      {"source_mac", n.source.to_string()},
      {"addresses", n.addresses},
      {"software_version", n.software_version},
      {"asked_voice_vlan", n.asked_voice_vlan},
      {"med_endpoint", n.med_endpoint},
      {"first_seen", iso_time(n.first_seen)},
      {"last_seen", iso_time(n.last_seen)},
  };
  j["native_vlan"] = n.native_vlan ? json(*n.native_vlan) : json();
  j["power_requested_mw"] = n.power_requested_mw ? json(*n.power_requested_mw) : json();
  j["power_granted_mw"] = n.power_granted_mw ? json(*n.power_granted_mw) : json();
  if (lldp) {
    j["capability_names"] = cdp::lldp_capability_names(static_cast<std::uint16_t>(n.capabilities));
    j["system_capabilities"] = cdp::lldp_capability_names(static_cast<std::uint16_t>(n.available_capabilities));
    json policies = json::array();
    for (const auto& p : n.policies) {
      policies.push_back(json{{"application", p.application == 1   ? "voice"
                                              : p.application == 2 ? "voice-signaling"
                                                                   : std::to_string(p.application)},
                              {"tagged", p.tagged},
                              {"unknown", p.unknown},
                              {"vlan", p.vlan},
                              {"priority", p.l2_priority},
                              {"dscp", p.dscp}});
    }
    j["network_policies"] = std::move(policies);
    j["policy_warning"] = n.policy_warning;
  }
  return j;
}

json counters_json(const cdp::Counters& c) {
  return json{{"cdp_sent", c.cdp_sent},
              {"cdp_received", c.cdp_received},
              {"lldp_sent", c.lldp_sent},
              {"lldp_received", c.lldp_received},
              {"malformed", c.malformed},
              {"ignored", c.ignored},
              {"neighbors_dropped", c.neighbors_dropped},
              {"neighbors_evicted", c.neighbors_evicted},
              {"power_refused", c.power_refused},
              {"send_errors", c.send_errors},
              {"voice_vlan_replies", c.voice_vlan_replies},
              {"power_replies", c.power_replies}};
}

class CdpComponent final : public Component {
 public:
  explicit CdpComponent(Context& ctx)
      : ctx_(ctx),
        agents_(
            ctx.io, [&io = ctx.io](const std::string& port) { return cdp::make_pcap_link(io, port); },
            make_hooks(ctx)) {}

  std::string_view name() const override { return "cdp"; }

  void start() override {
    agents_.apply(port_settings(*ctx_.config), agent_settings(*ctx_.config));
    ve::logger("cdp")->info("cdp/lldp on {} port(s)", agents_.agents().size());
  }

  void reconfigure(const config::SiteConfigPtr& config) override {
    agents_.apply(port_settings(*config), agent_settings(*config));
  }

  void stop() override { agents_.stop_all(); }

  void link_changed(const std::string& port, bool up) { agents_.link_changed(port, up); }

  json neighbors(bool detail) const {
    json list = json::array();
    json ports = json::array();
    for (const cdp::Agent* a : agents_.agents()) {
      for (const auto& n : a->neighbors()) list.push_back(neighbor_json(n));
      json p{{"port", a->port_name()},
             {"voice_vlan", a->port().voice_vlan},
             {"data_vlan", a->port().data_vlan},
             {"capturing", a->link_open()},
             {"error", a->last_error()}};
      if (detail) p["counters"] = counters_json(a->counters());
      ports.push_back(std::move(p));
    }
    return json{{"neighbors", std::move(list)}, {"ports", std::move(ports)}, {"detail", detail}};
  }

 private:
  static cdp::Hooks make_hooks(Context& ctx) {
    cdp::Hooks h;
    // Looked up at call time: the PoE component may fill Services after us, or not at all.
    Services* services = &ctx.services;
    h.negotiate_power = [services](const std::string& port, std::uint32_t mw) -> std::optional<std::uint32_t> {
      if (services->negotiate_power) return services->negotiate_power(port, mw);
      return std::nullopt;  // no PoE manager: the agent caps at the port's max_watts
    };
    h.available_power = [services](const std::string& port) -> std::uint32_t {
      return services->available_power ? services->available_power(port) : 0;
    };
    h.device_seen = [services](const std::string& port, const MacAddress& mac) { services->device_seen(port, mac); };
    h.events = &ctx.events;
    return h;
  }

  Context& ctx_;
  cdp::AgentSet agents_;
};

}  // namespace

void add_cdp_component(Wiring& w) {
  auto component = std::make_unique<CdpComponent>(w.ctx);
  CdpComponent* raw = component.get();
  w.ctx.services.link_listeners.push_back([raw](const std::string& port, bool up) { raw->link_changed(port, up); });
  w.ctx.control.add(command::kShowCdpNeighbors, [raw](const json& args) -> ControlResult {
    bool detail = false;
    if (args.is_object() && args.contains("detail")) {
      if (!args["detail"].is_boolean()) return unexpected(ControlError{"bad-request", "detail must be true or false"});
      detail = args["detail"].get<bool>();
    }
    return raw->neighbors(detail);
  });
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
