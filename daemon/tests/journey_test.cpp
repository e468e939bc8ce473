#include "daemon/journey.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

namespace ve::daemon {
namespace {

const MacAddress kMac = *MacAddress::parse("00:11:22:33:44:55");

PhoneEvent ev(Step s, Outcome o, std::string detail) {
  PhoneEvent e;
  e.mac = kMac;
  e.step = s;
  e.outcome = o;
  e.detail = std::move(detail);
  return e;
}

// A database file removed with its WAL side files when the test ends, pass or fail.
struct TempDb {
  std::filesystem::path path;
  explicit TempDb(const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".sqlite")) {
    clean();
  }
  ~TempDb() { clean(); }
  void clean() const {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  }
};

void walk_to_registered(JourneyTracker& t) {
  auto power = ev(Step::Power, Outcome::Ok, "powered 6.3 W");
  power.port = "eth1";
  t.report(power);
  t.report(ev(Step::VoiceVlan, Outcome::Ok, "CDP neighbour SEP001122334455, VLAN 100"));
  auto dhcp = ev(Step::Dhcp, Outcome::Ok, "ack 10.10.100.100");
  dhcp.ip = "10.10.100.100";
  t.report(dhcp);
  t.report(ev(Step::CtlFile, Outcome::Expected, "CTLSEP001122334455.tlv not found (non-secure site)"));
  t.report(ev(Step::ItlFile, Outcome::Expected, "ITLSEP001122334455.tlv not found (non-secure site)"));
  t.report(ev(Step::ConfigFile, Outcome::Ok, "SEP001122334455.cnf.xml"));
  t.report(ev(Step::CallManagerConnect, Outcome::Ok, "TCP to cm1"));
  auto reg = ev(Step::Register, Outcome::Ok, "registered 1001");
  reg.attributes = {{"registered_with", "10.10.100.1"}, {"active_load", "sip78xx.14-2-1-0001-14"}};
  t.report(reg);
}

TEST(JourneyTracker, RegisteredPhoneShowsDeviceStatus) {
  JourneyTracker t({});
  walk_to_registered(t);
  const auto* p = t.find("SEP001122334455");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->registered());
  auto ds = t.device_status(*p);
  EXPECT_EQ(ds["registration"], "Registered with 10.10.100.1");
  EXPECT_EQ(ds["ipv4_address"], "10.10.100.100");
  EXPECT_EQ(ds["active_load_id"], "sip78xx.14-2-1-0001-14");
  EXPECT_EQ(ds["download_status"], "None");
  EXPECT_FALSE(t.diagnose(*p).step.has_value());
}

TEST(JourneyTracker, FindsPhoneByEverySpellingIpAndPort) {
  JourneyTracker t({});
  walk_to_registered(t);
  for (const char* key :
       {"00:11:22:33:44:55", "0011.2233.4455", "001122334455", "SEP001122334455", "10.10.100.100", "eth1"})
    EXPECT_NE(t.find(key), nullptr) << key;
  EXPECT_EQ(t.find("SEP001122334466"), nullptr);
  EXPECT_EQ(t.find("10.9.9.9"), nullptr);
}

TEST(JourneyTracker, FirstFailedStepIsNamedWithItsDetail) {
  JourneyTracker t({});
  walk_to_registered(t);
  t.report(ev(Step::Register, Outcome::Failed, "403 wrong password for 1001"));
  const auto* p = t.find("001122334455");
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(p->registered());
  auto d = t.diagnose(*p);
  ASSERT_TRUE(d.step);
  EXPECT_EQ(*d.step, Step::Register);
  EXPECT_EQ(d.reason, "step 11: 403 wrong password for 1001");
  EXPECT_NE(t.device_status(*p)["registration"].get<std::string>().find("Not registered (step 11: 403"),
            std::string::npos);
}

TEST(JourneyTracker, EarliestFailureWinsOverLaterOnes) {
  JourneyTracker t({});
  t.report(ev(Step::ConfigFile, Outcome::Failed, "SEP001122334455.cnf.xml not found — phone not in site file"));
  t.report(ev(Step::Register, Outcome::Failed, "404 unknown user"));
  auto d = t.diagnose(*t.find("SEP001122334455"));
  EXPECT_EQ(d.reason, "step 7: SEP001122334455.cnf.xml not found — phone not in site file");
}

TEST(JourneyTracker, MissingStepIsNamedWhenALaterOneWasSeen) {
  JourneyTracker t({});
  t.report(ev(Step::VoiceVlan, Outcome::Ok, "CDP"));
  t.report(ev(Step::ConfigFile, Outcome::Ok, "SEP001122334455.cnf.xml"));
  auto d = t.diagnose(*t.find("SEP001122334455"));
  ASSERT_TRUE(d.step);
  EXPECT_EQ(*d.step, Step::Dhcp);
  EXPECT_NE(d.reason.find("step 4: skipped"), std::string::npos) << d.reason;
}

TEST(JourneyTracker, NextStepDueIsNamedWhenNothingFailed) {
  JourneyTracker t({});
  t.report(ev(Step::VoiceVlan, Outcome::Ok, "CDP"));
  auto d = t.diagnose(*t.find("SEP001122334455"));
  ASSERT_TRUE(d.step);
  EXPECT_EQ(*d.step, Step::Dhcp);
  EXPECT_NE(d.reason.find("step 4: not reached — no DHCP lease"), std::string::npos) << d.reason;
}

TEST(JourneyTracker, FirmwareBootIsInferredAndSaysSo) {
  JourneyTracker t({});
  t.report(ev(Step::VoiceVlan, Outcome::Ok, "CDP"));
  const auto& s = t.find("SEP001122334455")->step(Step::Firmware);
  EXPECT_TRUE(s.seen);
  EXPECT_EQ(s.outcome, Outcome::Ok);
  EXPECT_NE(s.detail.find("inferred"), std::string::npos);
}

TEST(JourneyTracker, FirmwareDownloadNotNeededWhenLoadMatches) {
  auto cfg = std::make_shared<config::SiteConfig>();
  cfg->provisioning.default_load = "sip78xx.14-2-1-0001-14";
  JourneyTracker t({});
  t.set_config(cfg);
  walk_to_registered(t);
  const auto& s = t.find("SEP001122334455")->step(Step::FirmwareLoad);
  EXPECT_TRUE(s.seen);
  EXPECT_EQ(s.detail, "not needed: already running sip78xx.14-2-1-0001-14");
  JourneyTracker other({});
  auto cfg2 = std::make_shared<config::SiteConfig>();
  cfg2->provisioning.default_load = "sip78xx.15-0-1";
  other.set_config(cfg2);
  walk_to_registered(other);
  EXPECT_FALSE(other.find("SEP001122334455")->step(Step::FirmwareLoad).seen);
}

TEST(JourneyTracker, UnlistedPhoneIsToldToBeAddedToTheSiteFile) {
  auto cfg = std::make_shared<config::SiteConfig>();
  JourneyTracker t({});
  t.set_config(cfg);
  t.report(ev(Step::ConfigFile, Outcome::Ok, "XMLDefault.cnf.xml"));
  auto d = t.diagnose(*t.find("SEP001122334455"));
  ASSERT_TRUE(d.step);
  EXPECT_EQ(*d.step, Step::Register);
  EXPECT_NE(d.reason.find("SEP001122334455 is not in the site file"), std::string::npos) << d.reason;
}

TEST(JourneyTracker, HistoryIsBounded) {
  JourneyTracker t({});
  for (std::size_t i = 0; i < JourneyTracker::kHistoryPerPhone + 50; ++i)
    t.report(ev(Step::Register, Outcome::Ok, "refresh"));
  EXPECT_EQ(t.find("SEP001122334455")->history.size(), JourneyTracker::kHistoryPerPhone);
}

TEST(JourneyTracker, ZeroMacIsIgnored) {
  JourneyTracker t({});
  PhoneEvent e;
  t.report(e);
  EXPECT_TRUE(t.phones().empty());
}

TEST(JourneyTracker, SurvivesRestartThroughSqlite) {
  const TempDb temp("ve-journey");
  const auto& db = temp.path;
  {
    JourneyTracker t(db);
    walk_to_registered(t);
    t.flush();
    EXPECT_GE(t.persisted_events(), 8u);  // every step change is written through
  }
  {
    JourneyTracker t(db);
    const auto* p = t.find("SEP001122334455");
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(p->registered());
    EXPECT_EQ(p->step(Step::CtlFile).outcome, Outcome::Expected);
    EXPECT_EQ(p->history.size(), 9u);  // 8 reported + step 2 inferred
    EXPECT_EQ(t.device_status(*p)["ipv4_address"], "10.10.100.100");
  }
}

TEST(JourneyTracker, EveryFlushIsPersistedNotOnlyTheFirst) {
  const TempDb temp("ve-journey2");
  const auto& db = temp.path;
  {
    JourneyTracker t(db);
    t.report(ev(Step::VoiceVlan, Outcome::Ok, "CDP"));
    t.flush();
    walk_to_registered(t);
    t.flush();
    auto other = ev(Step::VoiceVlan, Outcome::Ok, "CDP");
    other.mac = *MacAddress::parse("00:11:22:33:44:66");
    t.report(other);
    t.flush();
  }
  JourneyTracker t(db);
  ASSERT_NE(t.find("SEP001122334455"), nullptr);
  EXPECT_TRUE(t.find("SEP001122334455")->registered());
  EXPECT_NE(t.find("SEP001122334466"), nullptr);
}

TEST(JourneyTracker, JourneyJsonListsAllFourteenSteps) {
  JourneyTracker t({});
  walk_to_registered(t);
  auto j = t.journey_json(*t.find("eth1"));
  ASSERT_EQ(j["steps"].size(), 14u);
  EXPECT_EQ(j["steps"][4]["outcome"], "expected");
  EXPECT_EQ(j["steps"][1]["seen"], true);   // inferred
  EXPECT_EQ(j["steps"][8]["seen"], false);  // no dial rules fetched
  EXPECT_TRUE(j["failed_step"].is_null());
}

// issue 12: a refused request for the phone's config from another host is a notice in its
// history; on main the same event set step 7 to failed and the phone's IP to the requester's.
TEST(JourneyTracker, HistoryOnlyNoticeChangesNeitherStepsNorFacts) {
  TempDb db("journey-history-only");
  {
    JourneyTracker t(db.path);
    walk_to_registered(t);
    auto notice = ev(Step::ConfigFile, Outcome::Failed, "refused tftp SEP001122334455.cnf.xml to 10.10.100.66");
    notice.history_only = true;
    t.report(notice);
    const auto* p = t.find("SEP001122334455");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->step(Step::ConfigFile).outcome, Outcome::Ok);
    EXPECT_EQ(p->step(Step::ConfigFile).detail, "SEP001122334455.cnf.xml");
    EXPECT_EQ(p->facts.at("ip"), "10.10.100.100");
    EXPECT_TRUE(p->registered());
    EXPECT_FALSE(t.diagnose(*p).step.has_value());
    ASSERT_FALSE(p->history.empty());
    EXPECT_EQ(p->history.back().detail, notice.detail);
    t.flush();
  }
  JourneyTracker again(db.path);
  const auto* p = again.find("SEP001122334455");
  ASSERT_NE(p, nullptr);
  ASSERT_FALSE(p->history.empty());
  EXPECT_TRUE(p->history.back().history_only) << "kept as a notice across a restart";
  EXPECT_EQ(p->step(Step::ConfigFile).outcome, Outcome::Ok);
}

}  // namespace
}  // namespace ve::daemon
