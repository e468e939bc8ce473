// The reconciler's diff: wanted vs present -> actions.
#include <algorithm>

#include <gtest/gtest.h>

#include "net/net.hpp"

namespace ve::net {
namespace {

constexpr KernelFeatures kFull{true, true, true};
constexpr std::uint32_t ip(int a, int b, int c, int d) {
  return (static_cast<std::uint32_t>(a) << 24) | (static_cast<std::uint32_t>(b) << 16) |
         (static_cast<std::uint32_t>(c) << 8) | static_cast<std::uint32_t>(d);
}

Wanted bridge_wanted() {
  Wanted w;
  w.mode = Mode::Bridge;
  w.bridge = "ve-br0";
  w.ports = {{"eth1", 10, 100}, {"eth2", 10, 100}};
  w.vlan_interfaces = {{"ve-br0.100", "ve-br0", 100, Ipv4Cidr{ip(10, 10, 100, 1), 24}},
                       {"ve-br0.10", "ve-br0", 10, Ipv4Cidr{ip(10, 10, 10, 1), 24}}};
  return w;
}

PresentLink link(int idx, std::string name, std::string kind = "", std::string alias = "") {
  PresentLink l;
  l.ifindex = idx;
  l.name = std::move(name);
  l.kind = std::move(kind);
  l.alias = std::move(alias);
  l.admin_up = true;
  l.carrier = true;
  return l;
}

// The kernel as voiceedge leaves it after programming bridge_wanted().
Present programmed_bridge() {
  Present p;
  p.links.push_back(link(1, "lo"));
  auto eth1 = link(2, "eth1", "veth");
  eth1.master = 10;
  auto eth2 = link(3, "eth2", "veth");
  eth2.master = 10;
  auto br = link(10, "ve-br0", "bridge", "voiceedge");
  br.vlan_filtering = true;
  auto v100 = link(11, "ve-br0.100", "vlan", "voiceedge");
  v100.parent = 10;
  v100.vlan_id = 100;
  auto v10 = link(12, "ve-br0.10", "vlan", "voiceedge");
  v10.parent = 10;
  v10.vlan_id = 10;
  p.links.insert(p.links.end(), {eth1, eth2, br, v100, v10});
  p.bridge_vlans[2] = {{10, true, true}, {100, false, false}};
  p.bridge_vlans[3] = {{10, true, true}, {100, false, false}};
  p.bridge_vlans[10] = {{100, false, false}, {10, false, false}};
  p.addresses[11] = {{ip(10, 10, 100, 1), 24}};
  p.addresses[12] = {{ip(10, 10, 10, 1), 24}};
  return p;
}

bool has(const Plan& p, ActionKind k, const std::string& name) {
  return std::any_of(p.actions.begin(), p.actions.end(),
                     [&](const Action& a) { return a.kind == k && a.name == name; });
}

std::string dump(const Plan& p) {
  std::string s;
  for (const auto& a : p.actions) s += describe(a) + "\n";
  return s;
}

TEST(NetPlan, AlreadyRightGivesNoActions) {
  Plan p = plan(bridge_wanted(), programmed_bridge(), kFull);
  EXPECT_TRUE(p.empty()) << dump(p);
  EXPECT_TRUE(p.issues.empty());
}

TEST(NetPlan, EmptyKernelBuildsWholeTopologyInOrder) {
  Present p;
  p.links = {link(1, "lo"), link(2, "eth1", "veth"), link(3, "eth2", "veth")};
  Plan out = plan(bridge_wanted(), p, kFull);
  ASSERT_FALSE(out.actions.empty());
  EXPECT_EQ(out.actions[0].kind, ActionKind::CreateBridge);
  EXPECT_EQ(out.actions[0].name, "ve-br0");
  auto pos = [&](ActionKind k, const std::string& name, int vid = -1) {
    auto it = std::find_if(out.actions.begin(), out.actions.end(),
                           [&](const Action& a) { return a.kind == k && a.name == name && (vid < 0 || a.vid == vid); });
    return it - out.actions.begin();
  };
  long n = static_cast<long>(out.actions.size());
  EXPECT_LT(pos(ActionKind::SetMaster, "eth1"), pos(ActionKind::AddBridgeVlan, "eth1", 10));
  EXPECT_LT(pos(ActionKind::AddBridgeVlan, "eth1", 10), n);
  EXPECT_LT(pos(ActionKind::CreateVlanLink, "ve-br0.100"), pos(ActionKind::AddAddress, "ve-br0.100"));
  EXPECT_LT(pos(ActionKind::AddAddress, "ve-br0.100"), n);
  // The data VLAN is PVID untagged, the voice VLAN tagged.
  auto pvid = out.actions[static_cast<std::size_t>(pos(ActionKind::AddBridgeVlan, "eth2", 10))];
  EXPECT_TRUE(pvid.pvid && pvid.untagged && !pvid.self);
  auto voice = out.actions[static_cast<std::size_t>(pos(ActionKind::AddBridgeVlan, "eth2", 100))];
  EXPECT_FALSE(voice.pvid || voice.untagged);
  // The bridge itself carries both interface VLANs tagged.
  auto self = out.actions[static_cast<std::size_t>(pos(ActionKind::AddBridgeVlan, "ve-br0", 100))];
  EXPECT_TRUE(self.self);
  EXPECT_FALSE(self.untagged);
  EXPECT_FALSE(has(out, ActionKind::DeleteLink, "lo"));
}

TEST(NetPlan, ForeignLinksAreNeverDeleted) {
  Present p = programmed_bridge();
  p.links.push_back(link(20, "br-lan", "bridge"));  // someone else's bridge
  auto foreign_vlan = link(21, "eth0.300", "vlan");
  foreign_vlan.vlan_id = 300;
  p.links.push_back(foreign_vlan);
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_TRUE(out.empty()) << dump(out);
}

TEST(NetPlan, OwnedLinkNoLongerWantedIsDeleted) {
  Present p = programmed_bridge();
  auto stale = link(22, "ve-br0.200", "vlan", "voiceedge");
  stale.parent = 10;
  stale.vlan_id = 200;
  p.links.push_back(stale);
  Plan out = plan(bridge_wanted(), p, kFull);
  ASSERT_EQ(out.actions.size(), 1u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::DeleteLink);
  EXPECT_EQ(out.actions[0].name, "ve-br0.200");
}

TEST(NetPlan, OwnedLinkWithForeignUpperIsKept) {
  Wanted w = bridge_wanted();
  w.mode = Mode::Subinterface;  // nothing wants the bridge any more
  w.ports.clear();
  w.vlan_interfaces.clear();
  Present p = programmed_bridge();
  auto foreign = link(30, "ve-br0.300", "vlan");
  foreign.parent = 10;
  foreign.vlan_id = 300;
  p.links.push_back(foreign);
  Plan out = plan(w, p, kFull);
  EXPECT_FALSE(has(out, ActionKind::DeleteLink, "ve-br0")) << dump(out);
  EXPECT_TRUE(has(out, ActionKind::DeleteLink, "ve-br0.100"));
  EXPECT_TRUE(has(out, ActionKind::DeleteLink, "ve-br0.10"));
  EXPECT_FALSE(has(out, ActionKind::DeleteLink, "ve-br0.300"));
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].subject, "ve-br0");
  EXPECT_NE(out.issues[0].message.find("ve-br0.300"), std::string::npos);
}

TEST(NetPlan, PortOfForeignBridgeIsLeftAloneWithConflict) {
  Present p = programmed_bridge();
  p.links.push_back(link(20, "br-lan", "bridge"));
  for (auto& l : p.links)
    if (l.name == "eth2") l.master = 20;
  p.bridge_vlans.erase(3);
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_TRUE(out.empty()) << dump(out);
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].subject, "eth2");
  EXPECT_EQ(out.issues[0].kind, IssueKind::Conflict);
  EXPECT_NE(out.issues[0].message.find("br-lan"), std::string::npos);
}

TEST(NetPlan, VoiceVlanChangeAddsNewAndRemovesOldOnOwnBridge) {
  Wanted w = bridge_wanted();
  w.ports[0].voice_vlan = 101;
  Plan out = plan(w, programmed_bridge(), kFull);
  ASSERT_EQ(out.actions.size(), 2u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::AddBridgeVlan);
  EXPECT_EQ(out.actions[0].vid, 101);
  EXPECT_EQ(out.actions[1].kind, ActionKind::DelBridgeVlan);
  EXPECT_EQ(out.actions[1].vid, 100);
  EXPECT_EQ(out.actions[1].name, "eth1");
}

TEST(NetPlan, ExtraVlansOnForeignBridgeAreKept) {
  Present p = programmed_bridge();
  for (auto& l : p.links)
    if (l.name == "ve-br0") l.alias.clear();  // the operator made the bridge, not us
  p.bridge_vlans[2].push_back({1, false, true});
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_TRUE(out.empty()) << dump(out);
}

TEST(NetPlan, WrongPvidFlagsAreUpdatedInPlaceWithoutRelease) {
  Present p = programmed_bridge();
  p.bridge_vlans[2] = {{10, false, true}, {100, false, false}, {1, true, true}};
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_FALSE(has(out, ActionKind::ReleaseMaster, "eth1"));
  EXPECT_FALSE(has(out, ActionKind::SetMaster, "eth1"));
  ASSERT_EQ(out.actions.size(), 2u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::AddBridgeVlan);
  EXPECT_TRUE(out.actions[0].pvid);
  EXPECT_EQ(out.actions[1].kind, ActionKind::DelBridgeVlan);
  EXPECT_EQ(out.actions[1].vid, 1);
}

TEST(NetPlan, DownPortIsBroughtUpButNeverDown) {
  Present p = programmed_bridge();
  for (auto& l : p.links)
    if (l.name == "eth1") l.admin_up = false;
  Plan out = plan(bridge_wanted(), p, kFull);
  ASSERT_EQ(out.actions.size(), 1u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::SetUp);
  EXPECT_EQ(out.actions[0].name, "eth1");
}

TEST(NetPlan, AbsentPortIsReportedNotFatal) {
  Present p = programmed_bridge();
  std::erase_if(p.links, [](const PresentLink& l) { return l.name == "eth2"; });
  p.bridge_vlans.erase(3);
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_TRUE(out.empty()) << dump(out);
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].kind, IssueKind::Absent);
}

TEST(NetPlan, UnconfiguredPortOfOwnBridgeIsReleased) {
  Wanted w = bridge_wanted();
  w.ports.pop_back();
  Plan out = plan(w, programmed_bridge(), kFull);
  ASSERT_EQ(out.actions.size(), 1u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::ReleaseMaster);
  EXPECT_EQ(out.actions[0].name, "eth2");
}

TEST(NetPlan, AddressChangeOnOwnInterface) {
  Wanted w = bridge_wanted();
  w.vlan_interfaces[0].address = Ipv4Cidr{ip(10, 10, 100, 254), 24};
  Plan out = plan(w, programmed_bridge(), kFull);
  ASSERT_EQ(out.actions.size(), 2u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::AddAddress);
  EXPECT_EQ(out.actions[1].kind, ActionKind::DelAddress);
  EXPECT_EQ(out.actions[1].address.address, ip(10, 10, 100, 1));
}

TEST(NetPlan, ForeignInterfaceWithOurNameIsAConflict) {
  Present p = programmed_bridge();
  for (auto& l : p.links)
    if (l.name == "ve-br0.100") {
      l.alias.clear();
      l.vlan_id = 7;
    }
  Plan out = plan(bridge_wanted(), p, kFull);
  EXPECT_TRUE(out.empty()) << dump(out);
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].subject, "ve-br0.100");
  EXPECT_EQ(out.issues[0].kind, IssueKind::Conflict);
}

TEST(NetPlan, MissingKernelFeaturesMeanUntaggedAndNoActions) {
  Present p;
  p.links = {link(1, "lo"), link(2, "eth1", "veth"), link(3, "eth2", "veth")};
  Plan out = plan(bridge_wanted(), p, KernelFeatures{true, false, false});
  EXPECT_TRUE(out.empty()) << dump(out);
  ASSERT_EQ(out.issues.size(), 2u);
  for (const auto& i : out.issues) {
    EXPECT_EQ(i.kind, IssueKind::Unsupported);
    EXPECT_NE(i.message.find("bridge VLAN filtering"), std::string::npos) << i.message;
    EXPECT_NE(i.message.find("8021q"), std::string::npos) << i.message;
    EXPECT_NE(i.message.find("voice VLAN 100 not carried"), std::string::npos) << i.message;
  }
}

TEST(NetPlan, ModeNoneTouchesNothingEvenOwnLinks) {
  Wanted w;
  w.mode = Mode::None;
  Plan out = plan(w, programmed_bridge(), kFull);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(out.issues.empty());
}

TEST(NetPlan, SubinterfaceModeCreatesVlanOnPort) {
  Wanted w;
  w.mode = Mode::Subinterface;
  w.ports = {{"eth1", 10, 100}};
  w.vlan_interfaces = {{"eth1.100", "eth1", 100, Ipv4Cidr{ip(10, 10, 100, 1), 24}}};
  Present p;
  p.links = {link(1, "lo"), link(2, "eth1")};
  Plan out = plan(w, p, kFull);
  ASSERT_EQ(out.actions.size(), 3u) << dump(out);
  EXPECT_EQ(out.actions[0].kind, ActionKind::CreateVlanLink);
  EXPECT_EQ(out.actions[0].peer, "eth1");
  EXPECT_EQ(out.actions[0].vid, 100);
  EXPECT_EQ(out.actions[1].kind, ActionKind::AddAddress);
  EXPECT_EQ(out.actions[2].kind, ActionKind::SetUp);

  // ... and once that is there, nothing more. Switching to bridge mode later removes it.
  auto v = link(5, "eth1.100", "vlan", "voiceedge");
  v.parent = 2;
  v.vlan_id = 100;
  p.links.push_back(v);
  p.addresses[5] = {{ip(10, 10, 100, 1), 24}};
  EXPECT_TRUE(plan(w, p, kFull).empty()) << dump(plan(w, p, kFull));
  Wanted b = bridge_wanted();
  b.ports.pop_back();
  Plan to_bridge = plan(b, p, kFull);
  ASSERT_FALSE(to_bridge.actions.empty());
  EXPECT_EQ(to_bridge.actions[0].kind, ActionKind::DeleteLink);
  EXPECT_EQ(to_bridge.actions[0].name, "eth1.100");
}

TEST(NetPlan, SubinterfaceModeWithout8021qIsUnsupported) {
  Wanted w;
  w.mode = Mode::Subinterface;
  w.ports = {{"eth1", 10, 100}};
  w.vlan_interfaces = {{"eth1.100", "eth1", 100, std::nullopt}};
  Present p;
  p.links = {link(2, "eth1")};
  Plan out = plan(w, p, KernelFeatures{true, true, false});
  EXPECT_TRUE(out.empty());
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].kind, IssueKind::Unsupported);
  EXPECT_EQ(out.issues[0].message.find("bridge"), std::string::npos) << out.issues[0].message;
}

TEST(NetPlan, OutOfRangeVlanIsAnIssueNotAKernelCall) {
  Wanted w = bridge_wanted();
  w.ports[0].voice_vlan = 4095;
  Plan out = plan(w, programmed_bridge(), kFull);
  for (const auto& a : out.actions) EXPECT_NE(a.vid, 4095);
  ASSERT_FALSE(out.issues.empty());
  EXPECT_EQ(out.issues[0].kind, IssueKind::Failed);
}

TEST(NetPlan, DescribeIsReadable) {
  Action a;
  a.kind = ActionKind::AddBridgeVlan;
  a.name = "eth1";
  a.vid = 10;
  a.pvid = a.untagged = true;
  EXPECT_EQ(describe(a), "add vlan 10 pvid untagged on eth1");
  a.kind = ActionKind::AddAddress;
  a.address = {ip(10, 10, 100, 1), 24};
  EXPECT_EQ(describe(a), "add address 10.10.100.1/24 to eth1");
}

}  // namespace
}  // namespace ve::net
