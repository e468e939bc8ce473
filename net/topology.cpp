// Site file -> wanted topology. See docs/network.md for the resulting picture.
#include <algorithm>

#include <fmt/format.h>

#include "net/net.hpp"

namespace ve::net {

namespace {

Mode mode_of(config::NetMode m) {
  switch (m) {
    case config::NetMode::None: return Mode::None;
    case config::NetMode::Bridge: return Mode::Bridge;
    case config::NetMode::Subinterface: return Mode::Subinterface;
  }
  return Mode::None;
}

std::optional<Ipv4Cidr> router_of(const config::Subnet& s) {
  if (s.router.value == 0) return std::nullopt;
  return Ipv4Cidr{s.router.value, s.prefix.length};
}

// Subinterface mode: the interface that carries subnet `s` tagged, or empty when it is the
// untagged (data) VLAN of its interface and so needs no VLAN interface.
std::string sub_parent(const config::SiteConfig& c, const config::Subnet& s) {
  return c.net.uplink.empty() ? s.interface : c.net.uplink;
}

bool untagged_on(const config::SiteConfig& c, const std::string& ifname, int vid) {
  const config::Port* p = c.find_port(ifname);
  return p != nullptr && p->data_vlan == vid;
}

}  // namespace

std::string vlan_interface_name(std::string_view parent, int vid) {
  std::string suffix = fmt::format(".{}", vid);
  std::size_t room = kMaxIfNameLen > suffix.size() ? kMaxIfNameLen - suffix.size() : 0;
  return std::string(parent.substr(0, room)) + suffix;
}

Wanted wanted_from_config(const config::SiteConfig& c) {
  Wanted w;
  w.mode = mode_of(c.net.mode);
  if (w.mode == Mode::None) return w;
  w.bridge = c.net.bridge;
  for (const auto& p : c.ports) w.ports.push_back({p.name, p.data_vlan, p.voice_vlan});

  auto add_vi = [&](WantedVlanInterface vi) {
    auto same = std::find_if(w.vlan_interfaces.begin(), w.vlan_interfaces.end(),
                             [&](const WantedVlanInterface& o) { return o.name == vi.name; });
    if (same == w.vlan_interfaces.end())
      w.vlan_interfaces.push_back(std::move(vi));
    else if (!same->address)
      same->address = vi.address;
  };

  if (w.mode == Mode::Bridge) {
    // One VLAN interface on the bridge per subnet VLAN, carrying the router address.
    for (const auto& s : c.dhcp.subnets)
      add_vi({vlan_interface_name(w.bridge, s.vlan), w.bridge, s.vlan, router_of(s)});
    return w;
  }
  // Subinterface mode: "eth1.100" on the subnet's interface (or the uplink), except for the
  // VLAN that the interface carries untagged.
  for (const auto& s : c.dhcp.subnets) {
    std::string parent = sub_parent(c, s);
    if (parent.empty() || untagged_on(c, parent, s.vlan)) continue;
    add_vi({vlan_interface_name(parent, s.vlan), parent, s.vlan, router_of(s)});
  }
  if (c.net.uplink.empty()) {
    // Each port also accepts its voice VLAN tagged, even where no subnet is configured on it.
    for (const auto& p : c.ports)
      if (p.voice_vlan != 0 && p.voice_vlan != p.data_vlan)
        add_vi({vlan_interface_name(p.name, p.voice_vlan), p.name, p.voice_vlan, std::nullopt});
  }
  return w;
}

std::string service_interface(const config::SiteConfig& c, const config::Subnet& s) {
  switch (c.net.mode) {
    case config::NetMode::None: return s.interface;
    case config::NetMode::Bridge: return vlan_interface_name(c.net.bridge, s.vlan);
    case config::NetMode::Subinterface: {
      std::string parent = sub_parent(c, s);
      if (parent.empty() || untagged_on(c, parent, s.vlan)) return parent;
      return vlan_interface_name(parent, s.vlan);
    }
  }
  return s.interface;
}

}  // namespace ve::net
