// The simulated PSE behaves like the kernel's PSE interface.
#include <gtest/gtest.h>

#include "poe/poe.hpp"
#include "poe/tests/test_support.hpp"

namespace ve::poe {
namespace {

using namespace std::chrono_literals;
using testing::FakeClock;
using testing::TempDir;

SimOptions phases_of(std::chrono::milliseconds phase) {
  SimOptions o;
  o.phase = phase;
  return o;
}

TEST(SimDriver, EnabledPortWalksDetectionThenClassificationThenDelivery) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn(), phases_of(100ms));
  auto s = sim.status("eth1");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->admin, AdminState::Disabled);
  EXPECT_EQ(s->detection, Detection::Disabled);

  ASSERT_TRUE(sim.set_admin("eth1", true));
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Searching);
  clock.advance(100ms);  // detected, now classifying: still "searching" to the kernel API
  s = sim.status("eth1");
  EXPECT_EQ(s->detection, Detection::Searching);
  EXPECT_EQ(s->power_class, -1);
  clock.advance(100ms);
  s = sim.status("eth1");
  EXPECT_EQ(s->admin, AdminState::Enabled);
  EXPECT_EQ(s->detection, Detection::Delivering);
  EXPECT_EQ(s->power_class, 2);
  EXPECT_EQ(s->actual_mw, 6300u);
  EXPECT_EQ(sim.power_ons("eth1"), 1);
}

TEST(SimDriver, EmptyPortKeepsSearching) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  clock.advance(10s);
  auto s = sim.status("eth1");
  EXPECT_EQ(s->detection, Detection::Searching);
  EXPECT_EQ(s->actual_mw, 0u);
}

TEST(SimDriver, EnablingAnEnabledPortChangesNothing) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  clock.advance(1s);
  ASSERT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  ASSERT_TRUE(sim.set_admin("eth1", true));
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  EXPECT_EQ(sim.power_cycles("eth1"), 0);
  EXPECT_EQ(sim.power_ons("eth1"), 1);
}

TEST(SimDriver, DisablingAPoweredPortCountsAPowerCycle) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  clock.advance(1s);
  ASSERT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  ASSERT_TRUE(sim.set_admin("eth1", false));
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Disabled);
  EXPECT_EQ(sim.power_cycles("eth1"), 1);
}

TEST(SimDriver, DrawAboveTheLimitTripsOverCurrent) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  ASSERT_TRUE(sim.set_power_limit("eth1", 7000));
  clock.advance(1s);
  ASSERT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  EXPECT_EQ(sim.status("eth1")->limit_mw, 7000u);
  sim.set_draw("eth1", 9000);
  auto s = sim.status("eth1");
  EXPECT_EQ(s->detection, Detection::Fault);
  EXPECT_EQ(s->fault, "over-current");
  EXPECT_EQ(s->actual_mw, 0u);
  EXPECT_EQ(sim.power_cycles("eth1"), 1);
}

TEST(SimDriver, LimitOutOfRangeIsAnErrorValue) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {}, clock.fn());
  auto r = sim.set_power_limit("eth1", 100000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, DriverErrorCode::Invalid);
}

TEST(SimDriver, InjectedFaultHoldsUntilClearedThenDetectsAgain) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{3, 11000}}}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  clock.advance(1s);
  sim.inject_fault("eth1", "short circuit");
  clock.advance(10s);
  auto s = sim.status("eth1");
  EXPECT_EQ(s->detection, Detection::Fault);
  EXPECT_EQ(s->fault, "short circuit");
  sim.clear_fault("eth1");
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Searching);
  clock.advance(1s);
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  EXPECT_EQ(sim.power_ons("eth1"), 2);
}

TEST(SimDriver, UnplugReturnsToSearchingWithoutCountingAPowerCycle) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  clock.advance(1s);
  sim.unplug("eth1");
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Searching);
  EXPECT_EQ(sim.power_cycles("eth1"), 0);
  sim.plug("eth1", SimDevice{4, 20000});
  clock.advance(1s);
  auto s = sim.status("eth1");
  EXPECT_EQ(s->detection, Detection::Delivering);
  EXPECT_EQ(s->power_class, 4);
}

TEST(SimDriver, PortWithoutPseAnswersLikeEopnotsupp) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {}, clock.fn());
  sim.set_no_pse("eth1", true);
  auto s = sim.status("eth1");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->detection, Detection::NoPse);
  auto r = sim.set_admin("eth1", true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, DriverErrorCode::NoPse);
}

TEST(SimDriver, UnknownPortAndInjectedFailureAreErrorValues) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {}, clock.fn());
  auto unknown = sim.status("eth9");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, DriverErrorCode::NoSuchPort);
  sim.fail_next("eth1", DriverError{DriverErrorCode::Busy, "i2c timeout", EBUSY});
  auto failed = sim.status("eth1");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, DriverErrorCode::Busy);
  EXPECT_TRUE(sim.status("eth1"));  // only the next call
}

TEST(SimDriver, HardwareStateOutlivesTheDriverObject) {
  TempDir dir;
  FakeClock clock;
  SimOptions options;
  options.hardware_file = dir.path() / "hw.json";
  {
    SimDriver sim({"eth1", "eth2"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn(), options);
    ASSERT_TRUE(sim.set_admin("eth1", true));
    ASSERT_TRUE(sim.set_power_limit("eth1", 7000));
    clock.advance(1s);
    ASSERT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  }
  // A new process: the port is still delivering at once, never having been switched off.
  SimDriver again({"eth1", "eth2"}, {{"eth1", SimDevice{2, 6300}}}, clock.fn(), options);
  auto s = again.status("eth1");
  EXPECT_EQ(s->detection, Detection::Delivering);
  EXPECT_EQ(s->limit_mw, 7000u);
  EXPECT_EQ(again.power_ons("eth1"), 1);
  EXPECT_EQ(again.power_cycles("eth1"), 0);
  EXPECT_EQ(again.status("eth2")->detection, Detection::Disabled);
}

TEST(SimDriver, BuildsFromTheSiteFile) {
  config::SiteConfig cfg;
  for (const char* name : {"eth1", "eth2"}) {
    config::Port port;
    port.name = name;
    cfg.ports.push_back(port);
  }
  cfg.poe.sim["eth1"] = config::PoeSimPort{3, 12.5, true};
  cfg.poe.sim["eth2"] = config::PoeSimPort{2, 6.3, false};
  FakeClock clock;
  SimOptions options;
  options.admin_enabled_at_power_up = true;
  auto sim = SimDriver::from_config(cfg, clock.fn(), options);
  EXPECT_EQ(sim->ports(), (std::vector<std::string>{"eth1", "eth2"}));
  clock.advance(1s);
  auto s1 = sim->status("eth1");
  EXPECT_EQ(s1->detection, Detection::Delivering);
  EXPECT_EQ(s1->power_class, 3);
  EXPECT_EQ(s1->actual_mw, 12500u);
  EXPECT_EQ(sim->status("eth2")->detection, Detection::Searching);  // nothing connected
}

}  // namespace
}  // namespace ve::poe
