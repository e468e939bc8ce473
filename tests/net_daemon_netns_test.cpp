// The real voiceedged in a network namespace (needs root; label netns): "voiceedgectl show
// interfaces" (text and --json) reports per port link state, speed, PVID, voice VLAN, the VLAN
// step's state on this kernel; a peer's link down/up shows up; a port created after start is
// picked up; a reload (SIGHUP) with another voice VLAN is reflected.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"

namespace ve::test {
namespace {

using namespace std::chrono_literals;

// The box (the daemon runs in it through `ip netns exec`) and a peer namespace for the phone ends
// of the veths. Removed in the destructor, whatever happened.
struct Namespaces {
  Namespace box{"ve-netd-"}, peer{"ve-netdp-"};
  std::vector<std::unique_ptr<VethPair>> ports;
  // "<port>" in the box, "<port>p" in the peer namespace, both up.
  ::testing::AssertionResult add_port(const std::string& port) {
    ports.push_back(std::make_unique<VethPair>(VethPair::End{&box, port}, VethPair::End{&peer, port + "p"}));
    if (ports.back()->ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << ports.back()->error();
  }
};

::testing::AssertionResult succeeded(const RunResult& r) {
  if (r.exit_code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << describe(r);
}

std::string site(int voice_vlan) {
  return fmt::format(R"(site: {{ name: net-test }}
state_dir: "@STATE@"
control: {{ socket: "@SOCKET@", http: "off" }}
ports:
  - {{ name: vnd0, voice_vlan: {0}, data_vlan: 10, poe: {{ mode: "off" }} }}
  - {{ name: vnd1, voice_vlan: {0}, data_vlan: 10, poe: {{ mode: "off" }} }}
cdp: {{ enabled: false }}
lldp: {{ enabled: false }}
dhcp:
  kea: {{ manage: false, event_socket: "@STATE@/kea-events.sock" }}
  subnets:
    - {{ vlan: {0}, interface: vnd0, prefix: 10.10.{0}.0/24, pool: 10.10.{0}.100-10.10.{0}.199, router: 10.10.{0}.1 }}
provisioning: {{ root: "@STATE@" }}
net: {{ mode: bridge, bridge: ve-br0 }}
)",
                     voice_vlan);
}

nlohmann::json port(const nlohmann::json& data, const std::string& name) {
  for (const auto& p : data.value("ports", nlohmann::json::array()))
    if (p.value("name", "") == name) return p;
  return nullptr;
}

TEST(NetDaemonNetns, ShowInterfacesFollowsLinksLatePortsAndReload) {
  if (!is_root()) GTEST_SKIP() << "needs root for network namespaces";
  Namespaces ns;
  ASSERT_TRUE(ns.box.ok() && ns.peer.ok()) << ns.box.error() << ns.peer.error();
  ASSERT_TRUE(ns.add_port("vnd0"));  // vnd1 does not exist yet

  Daemon d(site(100), ns.box.exec());
  ASSERT_TRUE(d.start()) << d.log();

  auto show = [&] { return d.ctl_json({"show", "interfaces"}); };
  auto data = show();
  ASSERT_TRUE(data.is_object()) << d.log();
  auto p0 = port(data, "vnd0");
  ASSERT_TRUE(p0.is_object()) << data.dump();
  EXPECT_EQ(p0["pvid"], 10);
  EXPECT_EQ(p0["voice_vlan"], 100);
  EXPECT_EQ(p0["present"], true);
  EXPECT_EQ(p0["speed_mbps"], 10000);  // veth reports 10G
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd0")["link"] == "up"; }, 2s));
  EXPECT_EQ(port(data, "vnd1")["state"], "absent");
  const bool vlan_kernel = data["features"]["bridge_vlan_filtering"] == true && data["features"]["vlan_8021q"] == true;
  if (vlan_kernel) {
    EXPECT_EQ(p0["state"], "ok") << p0.dump();
    EXPECT_EQ(p0["programmed"], "ve-br0: 10 pvid untagged, 100 tagged");
  } else {
    EXPECT_EQ(p0["state"], "unsupported") << p0.dump();
    EXPECT_NE(p0["error"].get<std::string>().find("kernel lacks"), std::string::npos);
    EXPECT_NE(d.log().find("kernel lacks"), std::string::npos) << "the log must say it too";
  }

  // The human table.
  auto text = d.ctl({"show", "interfaces"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("Interface"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("vnd0"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(vlan_kernel ? "ok" : "unsupported"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("ve-br0.100"), std::string::npos) << text.out;

  // The phone end goes down, then up again.
  ASSERT_TRUE(succeeded(ns.peer.ip({"link", "set", "vnd0p", "down"})));
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd0")["link"] == "down"; }, 2s));
  ASSERT_TRUE(succeeded(ns.peer.ip({"link", "set", "vnd0p", "up"})));
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd0")["link"] == "up"; }, 2s));

  // A port that appears after start.
  ASSERT_TRUE(ns.add_port("vnd1"));
  const char* settled = vlan_kernel ? "ok" : "unsupported";
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd1")["state"] == settled; }, 2s)) << show().dump();
  EXPECT_EQ(port(show(), "vnd1")["present"], true);

  // Reload with another voice VLAN.
  d.write_site(site(101));
  ASSERT_EQ(::kill(d.child().pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd0")["voice_vlan"] == 101; }, 5s)) << d.log();

  // Nothing was created on a kernel without VLAN support.
  if (!vlan_kernel) {
    EXPECT_NE(ns.box.ip({"link", "show", "ve-br0"}).exit_code, 0);
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace ve::test
