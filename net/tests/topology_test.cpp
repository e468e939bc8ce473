// Site file -> wanted topology.
#include <gtest/gtest.h>

#include "net/net.hpp"

namespace ve::net {
namespace {

config::SiteConfig site(config::NetMode mode) {
  config::SiteConfig c;
  c.net.mode = mode;
  c.ports = {{"eth1", 100, 10, {}}, {"eth2", 100, 10, {}}};
  config::Subnet voice;
  voice.vlan = 100;
  voice.interface = "eth1";
  voice.prefix = {*config::Ipv4::parse("10.10.100.0"), 24};
  voice.router = *config::Ipv4::parse("10.10.100.1");
  config::Subnet data = voice;
  data.vlan = 10;
  data.prefix = {*config::Ipv4::parse("10.10.10.0"), 24};
  data.router = *config::Ipv4::parse("10.10.10.1");
  c.dhcp.subnets = {voice, data};
  return c;
}

TEST(NetTopology, BridgeModeHasOneInterfacePerSubnetVlan) {
  auto c = site(config::NetMode::Bridge);
  Wanted w = wanted_from_config(c);
  EXPECT_EQ(w.mode, Mode::Bridge);
  EXPECT_EQ(w.bridge, "ve-br0");
  ASSERT_EQ(w.ports.size(), 2u);
  EXPECT_EQ(w.ports[0].pvid, 10);
  EXPECT_EQ(w.ports[0].voice_vlan, 100);
  ASSERT_EQ(w.vlan_interfaces.size(), 2u);
  EXPECT_EQ(w.vlan_interfaces[0].name, "ve-br0.100");
  EXPECT_EQ(w.vlan_interfaces[0].parent, "ve-br0");
  ASSERT_TRUE(w.vlan_interfaces[0].address.has_value());
  EXPECT_EQ(w.vlan_interfaces[0].address->to_string(), "10.10.100.1/24");
  EXPECT_EQ(service_interface(c, c.dhcp.subnets[0]), "ve-br0.100");
  EXPECT_EQ(service_interface(c, c.dhcp.subnets[1]), "ve-br0.10");
}

TEST(NetTopology, SubinterfaceModeLeavesDataVlanOnThePort) {
  auto c = site(config::NetMode::Subinterface);
  Wanted w = wanted_from_config(c);
  // eth1.100 with the router address, eth2.100 for eth2's tagged voice frames; VLAN 10 is
  // untagged on eth1, so it needs no interface.
  ASSERT_EQ(w.vlan_interfaces.size(), 2u);
  EXPECT_EQ(w.vlan_interfaces[0].name, "eth1.100");
  EXPECT_TRUE(w.vlan_interfaces[0].address.has_value());
  EXPECT_EQ(w.vlan_interfaces[1].name, "eth2.100");
  EXPECT_FALSE(w.vlan_interfaces[1].address.has_value());
  EXPECT_EQ(service_interface(c, c.dhcp.subnets[0]), "eth1.100");
  EXPECT_EQ(service_interface(c, c.dhcp.subnets[1]), "eth1");
}

TEST(NetTopology, UplinkCarriesAllSubnetsTagged) {
  auto c = site(config::NetMode::Subinterface);
  c.net.uplink = "enp3s0";
  Wanted w = wanted_from_config(c);
  ASSERT_EQ(w.vlan_interfaces.size(), 2u);
  EXPECT_EQ(w.vlan_interfaces[0].name, "enp3s0.100");
  EXPECT_EQ(w.vlan_interfaces[1].name, "enp3s0.10");
}

TEST(NetTopology, ModeNoneWantsNothing) {
  auto c = site(config::NetMode::None);
  Wanted w = wanted_from_config(c);
  EXPECT_TRUE(w.ports.empty());
  EXPECT_TRUE(w.vlan_interfaces.empty());
  EXPECT_EQ(service_interface(c, c.dhcp.subnets[0]), "eth1");
}

TEST(NetTopology, LongNamesAreShortenedToFitIfnamsiz) {
  EXPECT_EQ(vlan_interface_name("ve-br0", 100), "ve-br0.100");
  std::string n = vlan_interface_name("enp0s31f6-long", 4094);
  EXPECT_EQ(n, "enp0s31f6-.4094");
  EXPECT_LE(n.size(), kMaxIfNameLen);
}

}  // namespace
}  // namespace ve::net
