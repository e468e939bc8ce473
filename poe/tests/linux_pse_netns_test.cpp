// linux-pse against the running kernel. Interfaces here (lo, veth) have no PSE: the driver must
// report "no PSE attached" as a clean per-port status. Real PSE hardware is used when present.
// Needs root (netns, veth, PSE_SET).
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "poe/poe.hpp"
#include "poe/tests/test_support.hpp"
#include "tests/support/netns.hpp"

namespace ve::poe {
namespace {

std::unique_ptr<LinuxPseDriver> open_or_skip(std::vector<std::string> ports) {
  auto d = LinuxPseDriver::open(std::move(ports));
  if (!d && d.error().code == DriverErrorCode::NotSupported) return nullptr;
  EXPECT_TRUE(d) << (d ? "" : d.error().message);
  return d ? std::move(d.value()) : nullptr;
}

#define OPEN_OR_SKIP(var, ...)          \
  auto var = open_or_skip(__VA_ARGS__); \
  if (!var) GTEST_SKIP() << "kernel has no ethtool generic netlink (CONFIG_ETHTOOL_NETLINK)"

// A veth pair whose one end lives in its own network namespace; removed even when a test fails.
struct VethInNetns {
  test::Namespace ns{"vepoe"};
  std::string host = test::unique_name("vpoa"), peer = test::unique_name("vpob");  // peer: in ns
  test::VethPair veth{{nullptr, host}, {&ns, peer}};
};

TEST(LinuxPse, ResolvesTheEthtoolFamily) {
  OPEN_OR_SKIP(d, {"lo"});
  EXPECT_GT(d->family_id(), 0);
  EXPECT_EQ(d->ports(), std::vector<std::string>{"lo"});
}

TEST(LinuxPse, LoopbackReportsNoPseAttached) {
  OPEN_OR_SKIP(d, {"lo"});
  auto s = d->status("lo");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->detection, Detection::NoPse);
  EXPECT_FALSE(s->fault.empty()) << "the kernel's reason is kept";
}

TEST(LinuxPse, SettingPowerOnAnInterfaceWithoutPseIsAnErrorValue) {
  OPEN_OR_SKIP(d, {"lo"});
  auto r = d->set_admin("lo", true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, DriverErrorCode::NoPse) << r.error().message;
  auto l = d->set_power_limit("lo", 15400);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, DriverErrorCode::NoPse) << l.error().message;
}

// PSE_NTF arrives on the ethtool "monitor" multicast group, which every kernel with ethtool netlink
// has: the driver subscribes and offers a descriptor; with nothing queued a read returns nothing.
TEST(LinuxPse, SubscribesToTheEthtoolMonitorGroup) {
  OPEN_OR_SKIP(d, {"lo"});
  EXPECT_GE(d->notification_fd(), 0) << "no subscription to the ethtool monitor group";
  EXPECT_TRUE(d->read_notifications().empty());
}

TEST(LinuxPse, SettingPriorityOnAnInterfaceWithoutPseIsAnErrorValue) {
  OPEN_OR_SKIP(d, {"lo"});
  auto r = d->set_priority("lo", 0);
  ASSERT_FALSE(r);
  // Kernels before 6.17 reject the unknown attribute (EINVAL), later ones find no PSE (EOPNOTSUPP).
  EXPECT_TRUE(r.error().code == DriverErrorCode::NoPse || r.error().code == DriverErrorCode::Invalid)
      << to_string(r.error().code) << ": " << r.error().message;
}

TEST(LinuxPse, UnknownInterfaceIsNoSuchPort) {
  OPEN_OR_SKIP(d, {"nosuchif0"});
  auto s = d->status("nosuchif0");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, DriverErrorCode::NoSuchPort) << s.error().message;
}

TEST(LinuxPse, VethReportsNoPseOnBothSidesOfANetns) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for ip netns";
  VethInNetns veth;
  ASSERT_TRUE(veth.veth.ok()) << veth.veth.error();
  {
    OPEN_OR_SKIP(d, {veth.host});
    auto s = d->status(veth.host);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->detection, Detection::NoPse);
  }
  // Inside the namespace: a child process enters it and asks there.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string path = "/run/netns/" + veth.ns.name();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(10);
    auto d = LinuxPseDriver::open({veth.peer});
    if (!d) ::_exit(11);
    auto s = d.value()->status(veth.peer);
    if (!s) ::_exit(12);
    ::_exit(s->detection == Detection::NoPse ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child exit code (10 setns, 11 open, 12 status, 13 not NoPse)";
}

TEST(LinuxPse, ManagerShowsNoPseAndGrantsNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for ip netns";
  VethInNetns veth;
  ASSERT_TRUE(veth.veth.ok()) << veth.veth.error();
  OPEN_OR_SKIP(d, {veth.host});
  testing::RecordingSink sink;
  auto cfg = testing::make_config({{veth.host}}, 370);
  Manager mgr(*d, sink, cfg, steady_clock_now());
  mgr.start();
  mgr.poll();
  auto v = mgr.port(veth.host);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->oper, Oper::NoPse);
  EXPECT_EQ(mgr.negotiate(veth.host, 12900), 0u);
  EXPECT_TRUE(sink.events.empty()) << "no phone events for a port without PSE";
}

// Runs only where the kernel has a PSE driver bound to an interface (a board with a PSE
// controller, e.g. TPS23881/PD692x0). Reads status; writes only when VE_POE_HW_WRITE_PORT names
// a port that may be power-cycled.
TEST(LinuxPseHardware, ReportsStatusOfRealPsePorts) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net")) {
    names.push_back(e.path().filename().string());
  }
  OPEN_OR_SKIP(d, names);
  std::vector<std::string> pse_ports;
  for (const auto& n : names) {
    auto s = d->status(n);
    if (s && s->detection != Detection::NoPse) pse_ports.push_back(n);
  }
  if (pse_ports.empty()) {
    std::string checked;
    for (const auto& n : names) checked += " " + n;
    GTEST_SKIP() << "no interface with a PSE attached on this machine (checked:" << checked << ")";
  }
  for (const auto& n : pse_ports) {
    auto s = d->status(n);
    ASSERT_TRUE(s) << n << ": " << s.error().message;
    EXPECT_NE(s->admin, AdminState::Unknown) << n;
    EXPECT_NE(s->detection, Detection::Unknown) << n;
  }
  // Kernel 6.17+ PSE model where the controller offers it (pd692x0, tps23881, si3474).
  for (const auto& n : pse_ports) {
    auto s = d->status(n);
    if (!s->priority_max) continue;
    EXPECT_TRUE(s->priority) << n << ": PRIO_MAX without PRIO";
    EXPECT_LE(*s->priority, *s->priority_max) << n;
    EXPECT_TRUE(s->power_domain) << n << ": priorities are per power domain";
  }
  if (const char* port = std::getenv("VE_POE_HW_WRITE_PORT")) {
    ASSERT_TRUE(d->set_admin(port, false));
    EXPECT_EQ(d->status(port)->admin, AdminState::Disabled);
    ASSERT_TRUE(d->set_admin(port, true));
    EXPECT_EQ(d->status(port)->admin, AdminState::Enabled);
  }
}

}  // namespace
}  // namespace ve::poe
