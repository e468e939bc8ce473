// The kernel 6.17 PSE model (power domains, per-port priorities, budget enforced by the PSE,
// notifications) in the sim driver, and the manager's two paths over it: observing a PSE that
// budgets by itself, and budgeting itself for a PSE that does not.
#include <poll.h>

#include <gtest/gtest.h>

#include "poe/poe.hpp"
#include "poe/tests/test_support.hpp"

namespace ve::poe {
namespace {

using namespace std::chrono_literals;
using config::PoePriority;
using testing::FakeClock;
using testing::make_config;
using testing::PortSpec;
using testing::RecordingSink;

// Two class 3 phones (15.4 W each) in power domain 0 with a 20 W budget: only one fits.
SimOptions kernel_like(std::uint32_t prio_max = 3) {
  SimOptions o;
  o.phase = 100ms;
  o.prio_max = prio_max;
  o.domains = {{"eth1", 0}, {"eth2", 0}, {"eth3", 1}};
  o.domain_budget_mw = {{0, 20000}, {1, 20000}};
  return o;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

std::optional<PseEvents> events_for(const std::vector<PortEvent>& events, const std::string& port) {
  for (const auto& e : events) {
    if (e.port == port) return e.events;
  }
  return std::nullopt;
}

void settle(SimDriver& sim, FakeClock& clock, const std::vector<std::string>& ports) {
  for (int i = 0; i < 3; ++i) {
    clock.advance(100ms);
    for (const auto& p : ports) (void)sim.status(p);
  }
}

TEST(SimPse, ReportsDomainPriorityAndLimitRanges) {
  FakeClock clock;
  SimDriver sim({"eth1", "eth3"}, {}, clock.fn(), kernel_like());
  auto s = sim.status("eth3");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->power_domain, 1u);
  EXPECT_EQ(s->priority_max, 3u);
  EXPECT_EQ(s->priority, 0u);
  ASSERT_EQ(s->limit_ranges.size(), 1u);
  EXPECT_EQ(s->limit_ranges[0].max_mw, 30000u);
  ASSERT_TRUE(sim.set_priority("eth3", 2));
  EXPECT_EQ(sim.status("eth3")->priority, 2u);
  auto bad = sim.set_priority("eth3", 4);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, DriverErrorCode::Invalid);
}

TEST(SimPse, WithoutPriorityMaxThereIsNoPriorityAndNoShedding) {
  FakeClock clock;
  SimDriver sim({"eth1", "eth2"}, {{"eth1", {3, 10000}}, {"eth2", {3, 10000}}}, clock.fn(), kernel_like(0));
  auto s = sim.status("eth1");
  EXPECT_FALSE(s->priority_max);
  EXPECT_FALSE(s->priority);
  auto r = sim.set_priority("eth1", 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, DriverErrorCode::NotSupported);
  ASSERT_TRUE(sim.set_admin("eth1", true));
  ASSERT_TRUE(sim.set_admin("eth2", true));
  settle(sim, clock, {"eth1", "eth2"});
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  EXPECT_EQ(sim.status("eth2")->detection, Detection::Delivering) << "no PSE-side budget without priorities";
}

TEST(SimPse, MoreImportantPortShedsTheLessImportantOneInItsDomainAndNotifies) {
  FakeClock clock;
  SimDriver sim({"eth1", "eth2", "eth3"}, {{"eth2", {3, 10000}}, {"eth3", {3, 10000}}}, clock.fn(), kernel_like());
  ASSERT_TRUE(sim.set_priority("eth1", 0));
  ASSERT_TRUE(sim.set_priority("eth2", 3));
  for (const char* p : {"eth1", "eth2", "eth3"}) ASSERT_TRUE(sim.set_admin(p, true));
  settle(sim, clock, {"eth1", "eth2", "eth3"});
  ASSERT_EQ(sim.status("eth2")->detection, Detection::Delivering);
  (void)sim.read_notifications();
  EXPECT_FALSE(readable(sim.notification_fd()));

  sim.plug("eth1", SimDevice{3, 10000});
  settle(sim, clock, {"eth1", "eth2", "eth3"});
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  auto shed = sim.status("eth2");
  EXPECT_EQ(shed->admin, AdminState::Enabled) << "the PSE sheds; the admin state stays the user's";
  EXPECT_EQ(shed->detection, Detection::Disabled);
  EXPECT_EQ(shed->ext_state, 8u) << "power not available";
  EXPECT_EQ(sim.power_cycles("eth2"), 1);
  EXPECT_EQ(sim.status("eth3")->detection, Detection::Delivering) << "another domain is not touched";

  ASSERT_TRUE(readable(sim.notification_fd()));
  const auto events = sim.read_notifications();
  auto e2 = events_for(events, "eth2");
  ASSERT_TRUE(e2);
  EXPECT_TRUE(e2->over_budget);
  EXPECT_FALSE(readable(sim.notification_fd())) << "drained";

  // Power frees up: the PSE powers the held port again by itself.
  sim.unplug("eth1");
  auto e1 = events_for(sim.read_notifications(), "eth1");
  ASSERT_TRUE(e1);
  EXPECT_TRUE(e1->disconnection);
  EXPECT_EQ(sim.status("eth2")->detection, Detection::Delivering);
  EXPECT_EQ(sim.power_ons("eth2"), 2);
}

TEST(SimPse, LessImportantNewcomerIsHeldOffNotTheOthers) {
  FakeClock clock;
  SimDriver sim({"eth1", "eth2"}, {{"eth1", {3, 10000}}}, clock.fn(), kernel_like());
  ASSERT_TRUE(sim.set_priority("eth1", 1));
  ASSERT_TRUE(sim.set_priority("eth2", 1));  // equal: the one already powered keeps it
  ASSERT_TRUE(sim.set_admin("eth1", true));
  ASSERT_TRUE(sim.set_admin("eth2", true));
  settle(sim, clock, {"eth1", "eth2"});
  sim.plug("eth2", SimDevice{3, 10000});
  settle(sim, clock, {"eth1", "eth2"});
  EXPECT_EQ(sim.status("eth1")->detection, Detection::Delivering);
  EXPECT_EQ(sim.status("eth2")->detection, Detection::Disabled);
  auto e2 = events_for(sim.read_notifications(), "eth2");
  ASSERT_TRUE(e2);
  EXPECT_TRUE(e2->over_budget);
  EXPECT_EQ(sim.power_ons("eth2"), 0);
}

TEST(SimPse, OverCurrentIsNotified) {
  FakeClock clock;
  SimDriver sim({"eth1"}, {{"eth1", {2, 6300}}}, clock.fn(), kernel_like());
  ASSERT_TRUE(sim.set_admin("eth1", true));
  settle(sim, clock, {"eth1"});
  (void)sim.read_notifications();
  sim.inject_overcurrent("eth1");
  auto e = events_for(sim.read_notifications(), "eth1");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->over_current);
}

// ---------------------------------------------------------------------------------------------
// The manager

struct PseRig {
  FakeClock clock;
  RecordingSink sink;
  std::shared_ptr<config::SiteConfig> cfg;
  std::unique_ptr<SimDriver> sim;
  std::unique_ptr<Manager> mgr;

  PseRig(std::vector<PortSpec> ports, double budget, std::map<std::string, SimDevice> plugged, SimOptions o) {
    cfg = make_config(ports, budget);
    sim = std::make_unique<SimDriver>(testing::names_of(cfg), std::move(plugged), clock.fn(), o);
    mgr = std::make_unique<Manager>(*sim, sink, cfg, clock.fn());
  }
  // Moves time on; the manager hears the PSE's notifications as the daemon delivers them.
  void settle() {
    for (int i = 0; i < 4; ++i) {
      clock.advance(100ms);
      mgr->poll();
      deliver();
    }
  }
  void deliver() {
    for (const auto& e : sim->read_notifications()) mgr->on_pse_events(e.port, e.events);
  }
  Oper oper(const std::string& port) const { return mgr->port(port)->oper; }
  bool timeline_has(const std::string& port, const std::string& text) const {
    for (const auto& e : sink.for_port(port)) {
      if (e.detail.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

TEST(PoeManagerPse, SitePrioritiesBecomeThePsePriorities) {
  PseRig rig({{"eth1", PoePriority::Critical}, {"eth2", PoePriority::High}, {"eth3", PoePriority::Low}}, 370, {},
             kernel_like(3));
  rig.mgr->start();
  EXPECT_EQ(rig.sim->status("eth1")->priority, 0u);
  EXPECT_EQ(rig.sim->status("eth2")->priority, 1u);
  EXPECT_EQ(rig.sim->status("eth3")->priority, 3u);
  auto v = rig.mgr->port("eth3");
  EXPECT_TRUE(v->budget_by_pse);
  EXPECT_EQ(v->power_domain, 1u);
  EXPECT_EQ(v->pse_priority, 3u);

  // A reload that lowers a port's priority is written to the PSE.
  auto next = std::make_shared<config::SiteConfig>(*rig.cfg);
  next->ports[0].poe.priority = PoePriority::Low;
  rig.mgr->reconfigure(next);
  EXPECT_EQ(rig.sim->status("eth1")->priority, 3u);
}

TEST(PseMapping, PriorityMapsOntoTheRangeTheKernelOffers) {
  EXPECT_EQ(pse_priority_for(PoePriority::Critical, 7), 0u);
  EXPECT_EQ(pse_priority_for(PoePriority::High, 7), 1u);
  EXPECT_EQ(pse_priority_for(PoePriority::Low, 7), 7u);
  EXPECT_EQ(pse_priority_for(PoePriority::High, 1), 1u);
  EXPECT_EQ(pse_priority_for(PoePriority::Low, 1), 1u);
}

TEST(PseMapping, PowerLimitFitsTheReportedRanges) {
  const std::vector<LimitRange> classes{{4000, 4000}, {7000, 7000}, {15400, 15400}, {30000, 30000}};
  EXPECT_EQ(fit_power_limit(7000, classes), 7000u);
  EXPECT_EQ(fit_power_limit(12900, classes), 15400u) << "next step up, never less than wanted";
  EXPECT_EQ(fit_power_limit(45000, classes), 30000u) << "the PSE can do no more";
  EXPECT_EQ(fit_power_limit(100, classes), 4000u);
  const std::vector<LimitRange> continuous{{2000, 30000}};
  EXPECT_EQ(fit_power_limit(12900, continuous), 12900u);
  EXPECT_EQ(fit_power_limit(12900, {}), 12900u);
}

TEST(PoeManagerPse, PseShedsTheLowPriorityPortAndTheManagerOnlyObserves) {
  // The site budget (370 W) is not what limits here; the PSE's domain budget (20 W) is.
  PseRig rig({{"eth1", PoePriority::Critical}, {"eth2", PoePriority::Low}}, 370, {{"eth2", {3, 10000}}}, kernel_like());
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_TRUE(rig.timeline_has("eth2", "PSE budget, domain 0"));

  rig.sim->plug("eth1", SimDevice{3, 10000});
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.oper("eth2"), Oper::Shed);
  EXPECT_EQ(rig.mgr->port("eth2")->detail, "shed by the PSE, domain 0 over budget");
  EXPECT_TRUE(rig.timeline_has("eth2", "port shed by the PSE, domain 0 over budget"));
  EXPECT_EQ(rig.mgr->port("eth2")->allocated_mw, 0u);
  EXPECT_EQ(rig.sim->status("eth2")->admin, AdminState::Enabled) << "the manager never switched it off";

  // The PSE gives the power back by itself; the manager records it.
  rig.sim->unplug("eth1");
  rig.deliver();
  rig.settle();
  EXPECT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_TRUE(rig.timeline_has("eth2", "power restored by the PSE"));
  EXPECT_EQ(rig.sim->power_cycles("eth1"), 0);
}

TEST(PoeManagerPse, SiteBudgetDoesNotDenyPortsThePseBudgets) {
  // 10 W site budget would deny a 15.4 W phone; the PSE (20 W domain) has room, so it is powered.
  PseRig rig({{"eth1"}}, 10, {{"eth1", {3, 10000}}}, kernel_like());
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.mgr->port("eth1")->allocated_mw, 15400u);
}

TEST(PoeManagerPse, WithoutPsePrioritiesTheManagerStillShedsByItself) {
  // The same two phones and a 20 W site budget on a PSE without priority support.
  PseRig rig({{"eth1", PoePriority::Critical}, {"eth2", PoePriority::Low}}, 20, {{"eth2", {3, 10000}}}, kernel_like(0));
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth2"), Oper::On);
  EXPECT_FALSE(rig.mgr->port("eth2")->budget_by_pse);
  rig.sim->plug("eth1", SimDevice{3, 10000});
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.oper("eth2"), Oper::Shed);
  EXPECT_EQ(rig.sim->status("eth2")->admin, AdminState::Disabled) << "the manager switched it off";
  EXPECT_TRUE(rig.timeline_has("eth2", "power shed: budget"));
}

TEST(PoeManagerPse, NotificationsBecomeTimelineEventsAtOnce) {
  PseRig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}}, kernel_like());
  rig.mgr->start();
  rig.settle();
  ASSERT_EQ(rig.oper("eth1"), Oper::On);
  rig.sink.clear();
  rig.sim->inject_overcurrent("eth1");
  rig.deliver();  // no poll: the notification alone
  EXPECT_EQ(rig.oper("eth1"), Oper::Fault);
  EXPECT_TRUE(rig.timeline_has("eth1", "power lost: over-current"));

  // Events the status does not show (over-temperature) still reach the timeline.
  PseEvents hot;
  hot.over_temperature = true;
  rig.mgr->on_pse_events("eth1", hot);
  EXPECT_TRUE(rig.timeline_has("eth1", "PSE reports over-temperature"));
}

TEST(PoeManagerPse, DisconnectionNotificationReleasesAtOnce) {
  PseRig rig({{"eth1"}}, 370, {{"eth1", {2, 6300}}}, kernel_like());
  rig.mgr->start();
  rig.settle();
  rig.sim->unplug("eth1");
  rig.deliver();
  EXPECT_EQ(rig.oper("eth1"), Oper::Searching);
  EXPECT_EQ(rig.mgr->port("eth1")->allocated_mw, 0u);
  EXPECT_TRUE(rig.timeline_has("eth1", "power removed: device disconnected"));
}

TEST(PoeManagerPse, NegotiatedLimitFitsTheRangesAndNeverGoesBelowTheDraw) {
  PseRig rig({{"eth1", PoePriority::High, 30}}, 370, {{"eth1", {2, 6300}}}, kernel_like());
  rig.mgr->start();
  rig.settle();
  EXPECT_EQ(rig.mgr->negotiate("eth1", 12900), 12900u);
  EXPECT_EQ(rig.sim->status("eth1")->limit_mw, 12900u);
  EXPECT_EQ(rig.mgr->port("eth1")->limit_mw, 12900u);
  // A spoofed 0.1 W request: refused, counted, the phone keeps its power.
  EXPECT_EQ(rig.mgr->negotiate("eth1", 100), 12900u);
  EXPECT_EQ(rig.mgr->port("eth1")->refused_requests, 1u);
  EXPECT_EQ(rig.sim->status("eth1")->limit_mw, 12900u);
  rig.settle();
  EXPECT_EQ(rig.oper("eth1"), Oper::On);
  EXPECT_EQ(rig.sim->power_cycles("eth1"), 0);
}

}  // namespace
}  // namespace ve::poe
