// net/ against the running kernel, inside fresh network namespaces (needs root; label netns).
// - the link monitor sees a veth peer go down and up within a second;
// - a configured port that appears after start is picked up (and one that is renamed away is lost);
// - on a kernel without 8021q / bridge VLAN filtering the VLAN step reports "unsupported" per port
//   and programs nothing; on a kernel with them, the port is programmed and a second pass is empty.
#include <unistd.h>

#include <chrono>
#include <functional>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "net/net.hpp"
#include "tests/net_testns.hpp"

namespace ve::net {
namespace {

using namespace std::chrono_literals;
using testing::NetnsPair;

class NetNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    auto pair = NetnsPair::create();
    ASSERT_TRUE(pair.has_value()) << pair.error();
    ns_ = std::move(*pair);
  }
  void TearDown() override { ns_.reset(); }

  // Runs the io_context until `done()` or `limit` passes; returns how long it took.
  std::chrono::milliseconds run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    io_.restart();
    while (!done() && std::chrono::steady_clock::now() - start < limit) io_.run_for(10ms);
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  }

  // A veth pair "<port>" (box) <-> "<port>p" (peer namespace), both up.
  void make_port(const std::string& port) {
    auto r = testing::add_veth(port, port + "p", ns_->peer_fd());
    ASSERT_TRUE(r.has_value()) << r.error();
    ASSERT_TRUE(testing::set_link_up(port, true).has_value());
    auto up = ns_->in_peer([&] { return testing::set_link_up(port + "p", true); });
    ASSERT_TRUE(up.has_value()) << up.error();
  }

  static config::SiteConfigPtr site(const std::string& port, config::NetMode mode = config::NetMode::Bridge) {
    auto c = std::make_shared<config::SiteConfig>();
    c->net.mode = mode;
    c->ports = {{port, 100, 10, {}}};
    config::Subnet voice;
    voice.vlan = 100;
    voice.interface = port;
    voice.prefix = {*config::Ipv4::parse("10.10.100.0"), 24};
    voice.router = *config::Ipv4::parse("10.10.100.1");
    c->dhcp.subnets = {voice};
    return c;
  }

  boost::asio::io_context io_;
  std::unique_ptr<NetnsPair> ns_;
};

TEST_F(NetNetns, MonitorSeesPeerDownAndUpWithinASecond) {
  make_port("vport0");
  std::vector<LinkEvent> events;
  auto mon = LinkMonitor::start(io_, [&](const LinkEvent& e) { events.push_back(e); });
  ASSERT_TRUE(mon.has_value()) << mon.error().to_string();
  // Carrier needs both ends up; wait for the initial carrier to settle.
  run_until(
      [&] {
        auto l = (*mon)->find("vport0");
        return l && l->up();
      },
      2000ms);
  ASSERT_TRUE((*mon)->find("vport0")->up());
  events.clear();

  ASSERT_TRUE(ns_->in_peer([] { return testing::set_link_up("vport0p", false); }).has_value());
  auto down_after = run_until(
      [&] {
        auto l = (*mon)->find("vport0");
        return l && !l->carrier;
      },
      1000ms);
  EXPECT_LT(down_after, 1000ms);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().name, "vport0");
  EXPECT_FALSE(events.back().up());
  EXPECT_TRUE(events.back().admin_up);  // our end stays administratively up: carrier lost

  events.clear();
  ASSERT_TRUE(ns_->in_peer([] { return testing::set_link_up("vport0p", true); }).has_value());
  auto up_after = run_until(
      [&] {
        auto l = (*mon)->find("vport0");
        return l && l->up();
      },
      1000ms);
  EXPECT_LT(up_after, 1000ms);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().up());
  std::cout << fmt::format("[ measured ] link down seen after {} ms, up after {} ms\n", down_after.count(),
                           up_after.count());
}

TEST_F(NetNetns, MonitorResyncsAfterSocketOverflow) {
  // A tiny receive buffer and no reading while many links come and go: the kernel drops
  // notifications (ENOBUFS); the monitor must notice, re-read and end up with the true table.
  std::vector<LinkEvent> events;
  auto mon = LinkMonitor::start(
      io_, [&](const LinkEvent& e) { events.push_back(e); }, 1);
  ASSERT_TRUE(mon.has_value()) << mon.error().to_string();
  constexpr int kPairs = 40;
  for (int i = 0; i < kPairs; ++i)
    ASSERT_TRUE(testing::add_veth(fmt::format("vov{}", i), fmt::format("vov{}p", i), -1).has_value());
  for (int i = 0; i < kPairs; i += 2)
    ASSERT_TRUE(testing::rename_link(fmt::format("vov{}", i), fmt::format("vren{}", i)).has_value());
  auto complete = [&] {
    return (*mon)->find("vov1").has_value() && (*mon)->find(fmt::format("vov{}p", kPairs - 1)).has_value() &&
           (*mon)->find(fmt::format("vren{}", kPairs - 2)).has_value() && !(*mon)->find("vov0").has_value();
  };
  run_until(complete, 3000ms);
  EXPECT_GT((*mon)->resyncs(), 0u) << "the overflow was not detected (buffer too big to overflow?)";
  EXPECT_TRUE(complete()) << "table incomplete after resync";
  // Every link of the namespace is known, with its current name.
  auto prog = Programmer::open();
  ASSERT_TRUE(prog.has_value());
  auto present = (*prog)->read_present();
  ASSERT_TRUE(present.has_value());
  EXPECT_EQ((*mon)->links().size(), present->links.size());
  for (const auto& l : present->links) EXPECT_TRUE((*mon)->find(l.name).has_value()) << l.name;
}

TEST_F(NetNetns, ManagerDrivesLinkListenersOnPeerDownUp) {
  make_port("vport1");
  std::vector<std::pair<std::string, bool>> heard;
  Manager m(io_, site("vport1"), [&](const std::string& p, bool up) { heard.emplace_back(p, up); });
  ASSERT_TRUE(m.start().has_value());
  run_until([&] { return !heard.empty() && heard.back().second; }, 2000ms);
  ASSERT_FALSE(heard.empty());
  EXPECT_EQ(heard.back(), std::make_pair(std::string("vport1"), true));

  ASSERT_TRUE(ns_->in_peer([] { return testing::set_link_up("vport1p", false); }).has_value());
  auto t = run_until([&] { return heard.back().second == false; }, 1000ms);
  EXPECT_LT(t, 1000ms);
  EXPECT_EQ(heard.back(), std::make_pair(std::string("vport1"), false));
  auto status = m.status_json();
  EXPECT_EQ(status["ports"][0]["link"], "down");

  ASSERT_TRUE(ns_->in_peer([] { return testing::set_link_up("vport1p", true); }).has_value());
  t = run_until([&] { return heard.back().second == true; }, 1000ms);
  EXPECT_LT(t, 1000ms);
  EXPECT_EQ(m.status_json()["ports"][0]["link"], "up");
  m.stop();
}

TEST_F(NetNetns, PortCreatedAfterStartIsPickedUp) {
  std::vector<std::pair<std::string, bool>> heard;
  Manager m(
      io_, site("vlate0"), [&](const std::string& p, bool up) { heard.emplace_back(p, up); },
      Manager::Options{std::chrono::milliseconds(20)});
  ASSERT_TRUE(m.start().has_value());  // the port does not exist: the daemon still starts
  auto before = m.status_json()["ports"][0];
  EXPECT_EQ(before["state"], "absent") << before.dump();
  EXPECT_EQ(before["present"], false);
  auto reconciles = m.reconciles();

  make_port("vlate0");
  run_until([&] { return m.reconciles() > reconciles && !heard.empty() && heard.back().second; }, 2000ms);
  auto after = m.status_json()["ports"][0];
  EXPECT_EQ(after["present"], true) << after.dump();
  EXPECT_NE(after["state"], "absent") << after.dump();
  EXPECT_GT(m.reconciles(), reconciles) << "appearance of a configured port must trigger a reconcile";
  ASSERT_FALSE(heard.empty());
  EXPECT_EQ(heard.back(), std::make_pair(std::string("vlate0"), true));

  // Renamed away: the port is gone for us (and reported down).
  ASSERT_TRUE(testing::set_link_up("vlate0", false).has_value());
  ASSERT_TRUE(testing::rename_link("vlate0", "vother0").has_value());
  run_until([&] { return m.status_json()["ports"][0]["present"] == false; }, 1000ms);
  EXPECT_EQ(m.status_json()["ports"][0]["present"], false);
  EXPECT_EQ(heard.back(), std::make_pair(std::string("vlate0"), false));
  m.stop();
}

TEST_F(NetNetns, VlanStepReportsUnsupportedOrProgramsPort) {
  make_port("vvlan0");
  Manager m(io_, site("vvlan0"), nullptr);
  ASSERT_TRUE(m.start().has_value());
  auto f = m.features();
  auto port = m.status_json()["ports"][0];
  if (!f.bridge_vlan_filtering || !f.vlan_8021q) {
    // This machine's kernel: say so per port, program nothing, keep the port as it was.
    EXPECT_EQ(port["state"], "unsupported") << port.dump();
    EXPECT_NE(port["error"].get<std::string>().find("kernel lacks"), std::string::npos) << port.dump();
    EXPECT_NE(port["error"].get<std::string>().find("voice VLAN 100 not carried"), std::string::npos);
    EXPECT_FALSE(testing::link_exists("ve-br0")) << "nothing may be created without VLAN support";
    EXPECT_EQ(port["programmed"], "");
    EXPECT_EQ(m.status_json()["vlan_interfaces"][0]["state"], "unsupported");
    // Services listen on the untagged port itself then.
    EXPECT_EQ(m.service_interface(site("vvlan0")->dhcp.subnets[0]), "vvlan0");
    // The probe left nothing behind.
    auto prog = Programmer::open();
    ASSERT_TRUE(prog.has_value());
    auto present = (*prog)->read_present();
    ASSERT_TRUE(present.has_value());
    for (const auto& l : present->links) EXPECT_EQ(l.name.rfind("vep", 0), std::string::npos) << l.name;
  } else {
    // A kernel with VLAN support: the port is programmed and a second pass changes nothing.
    EXPECT_EQ(port["state"], "ok") << port.dump();
    EXPECT_NE(port["programmed"].get<std::string>().find("10 pvid untagged, 100 tagged"), std::string::npos)
        << port.dump();
    EXPECT_TRUE(testing::link_exists("ve-br0.100"));
    EXPECT_EQ(m.service_interface(site("vvlan0")->dhcp.subnets[0]), "ve-br0.100");
    EXPECT_TRUE(m.reconcile().empty());
  }
  // Either way a reconcile again applies nothing: a restart never flaps a port.
  EXPECT_TRUE(m.reconcile().empty());
  m.stop();
}

TEST_F(NetNetns, ProgrammerReadsBridgeMembershipOfPlainBridge) {
  // Even without VLAN filtering the reader must understand a bridge and its ports (the state
  // every reconcile starts from).
  make_port("vread0");
  auto prog = Programmer::open();
  ASSERT_TRUE(prog.has_value());
  auto features = (*prog)->probe_features();
  if (!features.bridge) GTEST_SKIP() << "kernel has no bridge support";
  Action create;
  create.kind = ActionKind::CreateBridge;
  create.name = "vrb0";
  auto r = (*prog)->apply(create);
  if (!features.bridge_vlan_filtering) {
    ASSERT_FALSE(r.has_value());  // the kernel refuses VLAN filtering: an error value, not a crash
    EXPECT_NE(r.error().to_string().find("create bridge vrb0"), std::string::npos) << r.error().to_string();
    return;
  }
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  Action join;
  join.kind = ActionKind::SetMaster;
  join.name = "vread0";
  join.peer = "vrb0";
  ASSERT_TRUE((*prog)->apply(join).has_value());
  auto present = (*prog)->read_present();
  ASSERT_TRUE(present.has_value());
  const PresentLink* br = present->find("vrb0");
  ASSERT_NE(br, nullptr);
  EXPECT_TRUE(br->owned());
  EXPECT_TRUE(br->vlan_filtering);
  EXPECT_EQ(present->find("vread0")->master, br->ifindex);
}

}  // namespace
}  // namespace ve::net
