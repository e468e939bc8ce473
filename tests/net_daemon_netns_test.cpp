// The real voiceedged in a network namespace (needs root; label netns): "voiceedgectl show
// interfaces" (text and --json) reports per port link state, speed, PVID, voice VLAN, the VLAN
// step's state on this kernel; a peer's link down/up shows up; a port created after start is
// picked up; a reload (SIGHUP) with another voice VLAN is reflected.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"

namespace ve::test {
namespace {

using namespace std::chrono_literals;

// A named namespace (the daemon runs in it through `ip netns exec`) plus a peer namespace for the
// phone ends of the veths. Removed in the destructor, whatever happened.
class Namespaces {
 public:
  Namespaces() : box_(fmt::format("ve-netd-{}", getpid())), peer_(fmt::format("ve-netdp-{}", getpid())) {
    ok_ = run({"ip", "netns", "add", box_}).exit_code == 0 && run({"ip", "netns", "add", peer_}).exit_code == 0 &&
          in_box({"ip", "link", "set", "lo", "up"});
  }
  ~Namespaces() {
    (void)run({"ip", "netns", "del", box_});
    (void)run({"ip", "netns", "del", peer_});
  }
  bool ok() const { return ok_; }
  const std::string& box() const { return box_; }
  bool in_box(std::vector<std::string> argv) const { return in(box_, std::move(argv)); }
  bool in_peer(std::vector<std::string> argv) const { return in(peer_, std::move(argv)); }
  // "<port>" in the box, "<port>p" in the peer namespace, both up.
  bool add_port(const std::string& port) const {
    return in_box({"ip", "link", "add", port, "type", "veth", "peer", "name", port + "p", "netns", peer_}) &&
           in_box({"ip", "link", "set", port, "up"}) && in_peer({"ip", "link", "set", port + "p", "up"});
  }

 private:
  static bool in(const std::string& ns, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
    auto r = run(argv);
    if (r.exit_code != 0) ADD_FAILURE() << "command failed: " << r.err;
    return r.exit_code == 0;
  }
  std::string box_;
  std::string peer_;
  bool ok_ = false;
};

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
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(ns.add_port("vnd0"));  // vnd1 does not exist yet

  Daemon d(site(100), {"ip", "netns", "exec", ns.box()});
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
  ASSERT_TRUE(ns.in_peer({"ip", "link", "set", "vnd0p", "down"}));
  EXPECT_TRUE(eventually([&] { return port(show(), "vnd0")["link"] == "down"; }, 2s));
  ASSERT_TRUE(ns.in_peer({"ip", "link", "set", "vnd0p", "up"}));
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
    EXPECT_NE(run({"ip", "netns", "exec", ns.box(), "ip", "link", "show", "ve-br0"}).exit_code, 0);
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace ve::test
