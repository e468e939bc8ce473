// The PoE manager over the simulated PSE: allocation, negotiation, budget, shedding, restoring,
// restart adoption and reloads.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "poe/poe.hpp"
#include "poe/tests/test_support.hpp"

namespace ve::poe {
namespace {

using namespace std::chrono_literals;
using config::PoeMode;
using config::PoePriority;
using testing::FakeClock;
using testing::make_config;
using testing::PortSpec;
using testing::RecordingSink;
using testing::TempDir;

const MacAddress kPhone1 = *MacAddress::parse("00:11:22:33:44:01");
const MacAddress kPhone2 = *MacAddress::parse("00:11:22:33:44:02");

// One manager over one simulated PSE, with the clock moved past detection + classification.
struct Rig {
  FakeClock clock;
  RecordingSink sink;
  std::shared_ptr<config::SiteConfig> cfg;
  std::unique_ptr<SimDriver> sim;
  std::unique_ptr<Manager> mgr;
  std::filesystem::path state_file;
  std::filesystem::path hardware_file;

  Rig(std::vector<PortSpec> ports, double budget, std::map<std::string, SimDevice> plugged,
      const std::filesystem::path& dir = {}) {
    cfg = make_config(ports, budget);
    if (!dir.empty()) {
      state_file = dir / "poe-state.json";
      hardware_file = dir / "hw.json";
    }
    make_driver(std::move(plugged));
    make_manager();
  }

  void make_driver(std::map<std::string, SimDevice> plugged) {
    SimOptions o;
    o.phase = 100ms;
    if (!hardware_file.empty()) o.hardware_file = hardware_file;
    sim = std::make_unique<SimDriver>(testing::names_of(cfg), std::move(plugged), clock.fn(), o);
  }
  void make_manager() {
    ManagerOptions mo;
    mo.state_file = state_file;
    mgr = std::make_unique<Manager>(*sim, sink, cfg, clock.fn(), mo);
  }
  // Lets detection and classification finish and the manager see it.
  void settle() {
    for (int i = 0; i < 4; ++i) {
      clock.advance(100ms);
      mgr->poll();
    }
  }
  Oper oper(const std::string& port) const { return mgr->port(port)->oper; }
  std::uint32_t allocated(const std::string& port) const { return mgr->port(port)->allocated_mw; }
  void reload(std::shared_ptr<config::SiteConfig> next) {
    cfg = std::move(next);
    mgr->reconfigure(cfg);
  }
  std::shared_ptr<config::SiteConfig> copy_config() const { return std::make_shared<config::SiteConfig>(*cfg); }
};

TEST(PoeManager, AllocatesByClassAtDetection) {
  Rig rig({{"eth1"}, {"eth2"}, {"eth3", PoePriority::Low, 15.4}}, 370,
          {{"eth1", {2, 6300}}, {"eth2", {1, 3000}}, {"eth3", {4, 14000}}});
  rig.mgr->start();
  EXPECT_EQ(rig.oper("eth1"), Oper::Searching);
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.allocated("eth1"), 7000u);
  EXPECT_EQ(rig.allocated("eth2"), 4000u);
  EXPECT_EQ(rig.allocated("eth3"), 15400u) << "class 4 capped by max_watts 15.4";
  EXPECT_EQ(rig.mgr->port("eth1")->measured_mw, 6300u);
  const Totals t = rig.mgr->totals();
  EXPECT_EQ(t.budget_mw, 370000u);
  EXPECT_EQ(t.allocated_mw, 26400u);
  EXPECT_EQ(t.used_mw, 6300u + 3000u + 14000u);
  EXPECT_EQ(rig.sim->status("eth1")->limit_mw, 7000u) << "the PSE polices the allocation";
}

TEST(PoeManager, PowerOnIsAPhoneEventForTheConfiguredPhone) {
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}});
  config::Phone phone;
  phone.mac = kPhone1;
  phone.port = "eth1";
  rig.cfg->phones.push_back(phone);
  rig.make_manager();
  rig.mgr->start();
  rig.settle();
  const auto events = rig.sink.for_port("eth1");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].mac, kPhone1);
  EXPECT_EQ(events[0].step, Step::Power);
  EXPECT_EQ(events[0].outcome, Outcome::Ok);
  EXPECT_NE(events[0].detail.find("class 2"), std::string::npos) << events[0].detail;
}

TEST(PoeManager, DeviceLearnedLaterGetsItsPowerEvent) {
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.sink.events.size(), 1u);
  EXPECT_TRUE(rig.sink.events[0].mac.is_zero());
  rig.mgr->set_port_device("eth1", kPhone2);
  ASSERT_EQ(rig.sink.events.size(), 2u);
  EXPECT_EQ(rig.sink.events[1].mac, kPhone2);
  EXPECT_EQ(rig.sink.events[1].outcome, Outcome::Ok);
  rig.mgr->set_port_device("eth1", kPhone2);  // CDP repeats every minute: no new event
  EXPECT_EQ(rig.sink.events.size(), 2u);
  EXPECT_EQ(rig.mgr->port("eth1")->device, kPhone2);
}

TEST(PoeManager, NegotiatesUpCappedByMaxWattsAndDown) {
  Rig rig({{"eth1", PoePriority::High, 15.4}}, 370, {{"eth1", {2, 6300}}});
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.mgr->negotiate("eth1", 12900), 12900u);
  EXPECT_EQ(rig.allocated("eth1"), 12900u);
  EXPECT_EQ(rig.mgr->available("eth1"), 12900u);
  EXPECT_EQ(rig.sim->status("eth1")->limit_mw, 12900u);
  EXPECT_EQ(rig.mgr->negotiate("eth1", 20000), 15400u);
  EXPECT_EQ(rig.allocated("eth1"), 15400u);
  EXPECT_EQ(rig.mgr->negotiate("eth1", 6300), 6300u);
  EXPECT_EQ(rig.allocated("eth1"), 6300u);
  EXPECT_EQ(rig.mgr->port("eth1")->requested_mw, 6300u);
  // The capped answer is recorded in the phone's timeline.
  bool saw_capped = false;
  for (const auto& e : rig.sink.events) {
    if (e.detail.find("requested 20.0 W, granted 15.4 W") != std::string::npos) saw_capped = true;
  }
  EXPECT_TRUE(saw_capped);
}

TEST(PoeManager, NegotiationIsCappedByTheBudget) {
  Rig rig({{"eth1"}, {"eth2"}}, 20, {{"eth1", {3, 10000}}, {"eth2", {1, 3000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.allocated("eth1"), 15400u);
  ASSERT_EQ(rig.allocated("eth2"), 4000u);
  EXPECT_EQ(rig.mgr->negotiate("eth2", 12000), 4600u) << "20 W budget - 15.4 W on eth1";
  EXPECT_EQ(rig.mgr->totals().allocated_mw, 20000u);
}

TEST(PoeManager, RequestArrivingBeforeTheNextPollSeesTheFreshState) {
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}});
  rig.mgr->start();
  rig.clock.advance(300ms);  // delivering now, but no poll has seen it yet
  ASSERT_EQ(rig.oper("eth1"), Oper::Searching);
  EXPECT_EQ(rig.mgr->negotiate("eth1", 12900), 12900u);
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
}

TEST(PoeManager, UnpoweredOrUnknownPortsGetNothing) {
  Rig rig({{"eth1"}, {"eth2", PoePriority::Low, 15.4, PoeMode::Off}}, 370, {{"eth2", {2, 6300}}});
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.mgr->negotiate("eth1", 12900), 0u) << "nothing powered";
  EXPECT_EQ(rig.mgr->negotiate("eth2", 12900), 0u) << "mode off";
  EXPECT_EQ(rig.mgr->negotiate("eth9", 12900), 0u) << "not a port of the site";
  EXPECT_EQ(rig.oper("eth2"), Oper::Off);
  EXPECT_EQ(rig.sim->status("eth2")->detection, Detection::Disabled);
}

TEST(PoeManager, BudgetExhaustionDeniesTheLeastImportantNewcomer) {
  Rig rig({{"eth1", PoePriority::High}, {"eth2", PoePriority::Low}}, 20, {{"eth1", {3, 12000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);
  rig.sim->plug("eth2", {2, 6300});
  rig.settle();
  EXPECT_EQ(rig.oper("eth2"), Oper::Denied);
  EXPECT_EQ(rig.allocated("eth2"), 0u);
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.sim->status("eth2")->admin, AdminState::Disabled);
  const auto events = rig.sink.for_port("eth2");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().outcome, Outcome::Failed);
  EXPECT_NE(events.back().detail.find("denied"), std::string::npos) << events.back().detail;
  EXPECT_LE(rig.mgr->totals().allocated_mw, 20000u);
}

TEST(PoeManager, MoreImportantNewcomerShedsLowerPriorityPort) {
  Rig rig({{"eth1", PoePriority::Low}, {"eth2", PoePriority::Critical}}, 20, {{"eth1", {3, 12000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);
  rig.sim->plug("eth2", {2, 6300});
  rig.settle();
  EXPECT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_EQ(rig.oper("eth1"), Oper::Shed);
  EXPECT_EQ(rig.sim->status("eth1")->detection, Detection::Disabled);
  const auto events = rig.sink.for_port("eth1");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().outcome, Outcome::Failed);
  EXPECT_NE(events.back().detail.find("shed"), std::string::npos);
}

std::vector<std::string> shed_order(const RecordingSink& sink) {
  std::vector<std::string> out;
  for (const auto& e : sink.events) {
    if (e.detail.rfind("power shed", 0) == 0) out.push_back(e.port);
  }
  return out;
}

TEST(PoeManager, ShedsLowestPriorityFirstAndTiesToTheHigherPortNumber) {
  // Four ports of 7 W each (class 2); eth2 is high priority, the rest low.
  Rig rig({{"eth1"}, {"eth2", PoePriority::High}, {"eth3"}, {"eth4"}}, 28,
          {{"eth1", {2, 6000}}, {"eth2", {2, 6000}}, {"eth3", {2, 6000}}, {"eth4", {2, 6000}}});
  rig.mgr->start();
  rig.settle();
  for (auto p : {"eth1", "eth2", "eth3", "eth4"}) ASSERT_EQ(rig.oper(p), Oper::On) << p;

  auto next = rig.copy_config();
  next->poe.budget_watts = 14;
  rig.reload(next);
  EXPECT_EQ(shed_order(rig.sink), (std::vector<std::string>{"eth4", "eth3"}));
  next = rig.copy_config();
  next->poe.budget_watts = 7;
  rig.reload(next);
  EXPECT_EQ(shed_order(rig.sink), (std::vector<std::string>{"eth4", "eth3", "eth1"}));
  EXPECT_EQ(rig.oper("eth2"), Oper::On) << "the high-priority port keeps power";
  EXPECT_EQ(rig.mgr->totals().allocated_mw, 7000u);
}

TEST(PoeManager, RestoresMostImportantFirstWhenPowerFrees) {
  Rig rig({{"eth1"}, {"eth2", PoePriority::High}, {"eth3"}, {"eth4"}}, 7,
          {{"eth1", {2, 6000}}, {"eth2", {2, 6000}}, {"eth3", {2, 6000}}, {"eth4", {2, 6000}}});
  rig.mgr->start();
  rig.settle();
  // With room for one, the high-priority port holds it.
  EXPECT_EQ(rig.oper("eth2"), Oper::On);
  for (auto p : {"eth1", "eth3", "eth4"}) EXPECT_NE(rig.oper(p), Oper::On) << p;

  std::vector<std::string> restored;
  auto note_restored = [&] {
    for (const auto& e : rig.sink.events) {
      if (e.detail.rfind("power restored", 0) == 0 &&
          std::find(restored.begin(), restored.end(), e.port) == restored.end()) {
        restored.push_back(e.port);
      }
    }
  };
  auto next = rig.copy_config();
  next->poe.budget_watts = 14;
  rig.reload(next);
  rig.settle();
  note_restored();
  EXPECT_EQ(restored, (std::vector<std::string>{"eth1"}));
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  next = rig.copy_config();
  next->poe.budget_watts = 28;
  rig.reload(next);
  rig.settle();
  note_restored();
  EXPECT_EQ(restored, (std::vector<std::string>{"eth1", "eth3", "eth4"}));
  for (auto p : {"eth1", "eth2", "eth3", "eth4"}) EXPECT_EQ(rig.oper(p), Oper::On) << p;
}

TEST(PoeManager, UnplugFreesPowerForADeniedPort) {
  Rig rig({{"eth1"}, {"eth2"}, {"eth3"}}, 14, {{"eth1", {2, 6000}}, {"eth2", {2, 6000}}});
  rig.mgr->start();
  rig.settle();
  rig.sim->plug("eth3", {2, 6000});
  rig.settle();
  ASSERT_EQ(rig.oper("eth3"), Oper::Denied);
  rig.sim->unplug("eth1");
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::Searching);
  EXPECT_EQ(rig.oper("eth3"), Oper::On);
  EXPECT_EQ(rig.mgr->totals().allocated_mw, 14000u);
}

TEST(PoeManager, RestoredPortWithoutDeviceReturnsItsReservation) {
  Rig rig({{"eth1", PoePriority::High}, {"eth2"}}, 7, {{"eth1", {2, 6000}}, {"eth2", {2, 6000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth2"), Oper::Denied);
  rig.sim->unplug("eth2");  // unplugged while held off: we cannot see it
  rig.sim->unplug("eth1");
  rig.settle();
  EXPECT_EQ(rig.oper("eth2"), Oper::Searching);
  EXPECT_EQ(rig.allocated("eth2"), 7000u) << "reserved while it detects";
  rig.clock.advance(6s);
  rig.mgr->poll();
  EXPECT_EQ(rig.allocated("eth2"), 0u);
}

TEST(PoeManager, FaultIsReportedAndReleasesPower) {
  Rig rig({{"eth1"}, {"eth2"}}, 7, {{"eth1", {2, 6000}}, {"eth2", {2, 6000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);
  ASSERT_EQ(rig.oper("eth2"), Oper::Denied);
  rig.sim->inject_overcurrent("eth1");
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::Fault);
  EXPECT_EQ(rig.mgr->port("eth1")->detail, "over-current");
  const auto events = rig.sink.for_port("eth1");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().outcome, Outcome::Failed);
  EXPECT_NE(events.back().detail.find("over-current"), std::string::npos);
  EXPECT_EQ(rig.oper("eth2"), Oper::On) << "the freed power went to the denied port";
  // Clearing the fault brings the port back through detection; at equal priority the higher
  // port number gives way.
  rig.sim->clear_fault("eth1");
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.oper("eth2"), Oper::Shed);
}

TEST(PoeManager, PortWithoutPseIsAStatusNotAFailure) {
  Rig rig({{"eth1"}, {"eth2"}}, 370, {{"eth2", {2, 6300}}});
  rig.sim->set_no_pse("eth1", true);
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::NoPse);
  EXPECT_EQ(rig.mgr->port("eth1")->detail, "no PSE attached");
  EXPECT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_EQ(rig.mgr->negotiate("eth1", 12900), 0u);
}

// voiceedgectl phone power-cycle: off and on again without touching the mode or what is persisted,
// refused where the box does not power the port.
TEST(PoeManager, PowerCycleTakesPowerAwayAndGivesItBackWithoutChangingTheMode) {
  TempDir dir;
  Rig rig({{"eth1"}, {"eth2"}, {"eth3", PoePriority::Low, 15.4, PoeMode::Off}}, 370,
          {{"eth1", {2, 6300}}, {"eth3", {2, 6300}}}, dir.path());
  rig.sim->set_no_pse("eth2", true);
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);
  ASSERT_TRUE(rig.mgr->begin_power_cycle("eth1"));
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  EXPECT_EQ(rig.sim->power_cycles("eth1"), 1);
  EXPECT_FALSE(rig.mgr->port("eth1")->mode_overridden);
  EXPECT_FALSE(rig.mgr->begin_power_cycle("eth1")) << "one cycle at a time";
  // Polls while it is off keep it off.
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  // What is on disk says auto: a daemon restarted now would power the port again.
  std::ifstream in(rig.state_file);
  const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(saved.empty());
  EXPECT_EQ(saved.find("\"override\""), std::string::npos) << saved;
  rig.mgr->end_power_cycle("eth1");
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.sim->power_ons("eth1"), 2);
  EXPECT_EQ(rig.mgr->port("eth1")->mode, PoeMode::Auto);

  auto no_pse = rig.mgr->begin_power_cycle("eth2");
  ASSERT_FALSE(no_pse);
  EXPECT_NE(no_pse.error().find("has no PSE"), std::string::npos) << no_pse.error();
  auto off = rig.mgr->begin_power_cycle("eth3");
  ASSERT_FALSE(off);
  EXPECT_NE(off.error().find("PoE is off"), std::string::npos) << off.error();
  EXPECT_FALSE(rig.mgr->begin_power_cycle("eth9"));
  rig.mgr->end_power_cycle("eth9");  // unknown or not cycling: nothing happens
}

TEST(PoeManager, DriverErrorKeepsTheAllocation) {
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}});
  rig.mgr->start();
  rig.settle();
  rig.sim->fail_next("eth1", DriverError{DriverErrorCode::Busy, "i2c timeout", EBUSY});
  rig.mgr->poll();
  EXPECT_EQ(rig.oper("eth1"), Oper::Error);
  EXPECT_EQ(rig.allocated("eth1"), 7000u);
  rig.mgr->poll();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
}

TEST(PoeManager, RestartAdoptsPoweredPortsWithoutPowerCycling) {
  TempDir dir;
  Rig rig({{"eth1", PoePriority::High}, {"eth2"}, {"eth3"}}, 20,
          {{"eth1", {2, 6300}}, {"eth2", {2, 6300}}, {"eth3", {2, 6300}}}, dir.path());
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.mgr->negotiate("eth1", 12900), 12900u);
  ASSERT_EQ(rig.oper("eth2"), Oper::On);
  ASSERT_EQ(rig.oper("eth3"), Oper::Denied);  // 12.9 + 7 = 19.9 of 20: no room for 7 more
  rig.mgr->set_port_device("eth1", kPhone1);

  // The daemon dies: manager and driver objects are gone; the "hardware" keeps powering.
  rig.mgr.reset();
  rig.sim.reset();
  rig.clock.advance(30s);
  rig.make_driver({{"eth1", {2, 6300}}, {"eth2", {2, 6300}}, {"eth3", {2, 6300}}});
  rig.make_manager();
  rig.sink.clear();
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.allocated("eth1"), 12900u) << "the negotiated allocation is kept";
  EXPECT_EQ(rig.mgr->port("eth1")->device, kPhone1);
  EXPECT_EQ(rig.mgr->available("eth1"), 12900u);
  EXPECT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_EQ(rig.oper("eth3"), Oper::Denied) << "still held off, not re-enabled blindly";
  for (auto p : {"eth1", "eth2"}) {
    EXPECT_EQ(rig.sim->power_cycles(p), 0) << p;
    EXPECT_EQ(rig.sim->power_ons(p), 1) << p;
  }
  for (const auto& e : rig.sink.events) {
    EXPECT_NE(e.outcome, Outcome::Failed) << e.port << ": " << e.detail;
  }
}

TEST(PoeManager, RestartWithoutStateFileStillAdoptsByClass) {
  TempDir dir;
  Rig rig({{"eth1"}}, 370, {{"eth1", {3, 11000}}}, dir.path());
  rig.mgr->start();
  rig.settle();
  rig.mgr.reset();
  std::filesystem::remove(rig.state_file);
  rig.make_manager();
  rig.mgr->start();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.allocated("eth1"), 15400u);
  EXPECT_EQ(rig.sim->power_cycles("eth1"), 0);
}

TEST(PoeManager, ModeChangesOnReload) {
  Rig rig({{"eth1"}, {"eth2"}}, 370, {{"eth1", {2, 6300}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);

  auto next = rig.copy_config();
  next->ports[0].poe.mode = PoeMode::Off;
  next->ports[1].poe.mode = PoeMode::Static;
  next->ports[1].poe.max_watts = 10;
  rig.reload(next);
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  EXPECT_EQ(rig.allocated("eth1"), 0u);
  EXPECT_EQ(rig.sim->status("eth1")->admin, AdminState::Disabled);
  EXPECT_EQ(rig.allocated("eth2"), 10000u) << "static reserves max_watts with no device";
  EXPECT_EQ(rig.sim->status("eth2")->admin, AdminState::Enabled);

  next = rig.copy_config();
  next->ports[0].poe.mode = PoeMode::Auto;
  rig.reload(next);
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  // A reload that changes nothing for a port does not touch it.
  const int cycles = rig.sim->power_cycles("eth1");
  rig.reload(rig.copy_config());
  rig.settle();
  EXPECT_EQ(rig.sim->power_cycles("eth1"), cycles);
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
}

TEST(PoeManager, LoweredMaxWattsCapsTheAllocationOnReload) {
  Rig rig({{"eth1", PoePriority::Low, 30}}, 370, {{"eth1", {4, 20000}}});
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.allocated("eth1"), 30000u);
  auto next = rig.copy_config();
  next->ports[0].poe.max_watts = 25;
  rig.reload(next);
  EXPECT_EQ(rig.allocated("eth1"), 25000u);
  EXPECT_EQ(rig.mgr->port("eth1")->max_mw, 25000u);
}

TEST(PoeManager, RunTimeModeIsPersistedAndDroppedWhenTheSiteFileChangesThePort) {
  TempDir dir;
  Rig rig({{"eth1"}, {"eth2"}}, 370, {{"eth1", {2, 6300}}}, dir.path());
  rig.mgr->start();
  rig.settle();
  ASSERT_TRUE(rig.mgr->set_mode("eth1", PoeMode::Off));
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  EXPECT_TRUE(rig.mgr->port("eth1")->mode_overridden);
  EXPECT_FALSE(rig.mgr->set_mode("eth9", PoeMode::Off));

  // Restart: the port stays off.
  rig.mgr.reset();
  rig.make_manager();
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  EXPECT_EQ(rig.mgr->port("eth1")->mode, PoeMode::Off);

  // A reload that leaves eth1 alone keeps the override; one that edits eth1 drops it.
  rig.reload(rig.copy_config());
  EXPECT_EQ(rig.oper("eth1"), Oper::Off);
  auto next = rig.copy_config();
  next->ports[0].poe.priority = PoePriority::High;
  rig.reload(next);
  rig.settle();
  EXPECT_FALSE(rig.mgr->port("eth1")->mode_overridden);
  EXPECT_EQ(rig.oper("eth1"), Oper::On);

  // Back to auto by command clears the override.
  ASSERT_TRUE(rig.mgr->set_mode("eth1", PoeMode::Off));
  ASSERT_TRUE(rig.mgr->set_mode("eth1", PoeMode::Auto));
  rig.settle();
  EXPECT_FALSE(rig.mgr->port("eth1")->mode_overridden);
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
}

TEST(PoeManager, StateFileIsReadableJson) {
  TempDir dir;
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}}, dir.path());
  rig.mgr->start();
  rig.settle();
  std::ifstream in(rig.state_file);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["ports"]["eth1"]["oper"], "on");
  EXPECT_EQ(j["ports"]["eth1"]["allocated_mw"], 7000);
}

TEST(PoeManager, CorruptStateFileIsIgnored) {
  TempDir dir;
  {
    std::ofstream out(dir.path() / "poe-state.json");
    out << "{not json";
  }
  Rig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}}, dir.path());
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
}

}  // namespace
}  // namespace ve::poe
