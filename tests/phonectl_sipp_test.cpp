// Phone control against sipp phones registered over UDP through the real voiceedged: a reload
// that changes one phone's config reaches that phone only, `voiceedgectl phone restart|reset`
// answer with the phone's response, a phone that never answers is reported after Timer F with
// the retransmissions it was sent, and the refusals (unregistered, unknown, no PoE port).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/sipp.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

std::string site(const std::string& display_1001, const std::string& load_1002, const std::string& desc_1003 = "") {
  return SiteFile{.name = "sipp-phonectl",
                  .provisioning = "  default_load: sip88xx.14-2-1-0001-14\n",
                  .sip = "  realm: voiceedge-test\n",
                  .phones = R"(  - mac: "00:11:22:33:44:01"
    description: "front desk"
    lines: [{ extension: "1001", password: "pw1001", display: ")" +
                            display_1001 + R"(" }]
  - mac: "00:11:22:33:44:02"
    description: "back office"
)" + (load_1002.empty() ? std::string() : "    load: " + load_1002 + "\n") +
                            R"(    lines: [{ extension: "1002", password: "pw1002" }]
  - mac: "00:11:22:33:44:03"
)" + (desc_1003.empty() ? std::string() : "    description: " + desc_1003 + "\n") +
                            R"(    lines: [{ extension: "1003", password: "pw1003" }]
)"}
      .yaml();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

struct SippPhone {
  std::string user;
  std::filesystem::path log;
  std::filesystem::path messages;
  Child child;
};

class PhoneControl : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(sh("command -v sipp").exit_code, 0) << "sipp (package sip-tester) is required";
    daemon_ = std::make_unique<Daemon>(site("Front Desk", ""));
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    auto j = daemon_->ctl_json({"show", "sip", "registrations"});
    ASSERT_TRUE(j.is_object()) << daemon_->log();
    udp_port_ = j["listening"]["udp_port"].get<int>();
    ASSERT_NE(udp_port_, 0);
  }

  static std::string scenario(const std::string& name) { return std::string(VE_SIPP_SCENARIOS) + "/phonectl/" + name; }

  // A phone with line `user` and MAC 00:11:22:33:44:<last> registers over UDP; its out-of-call
  // scenario takes the NOTIFY (`ooc`: notify_answer.xml or notify_ignore.xml).
  SippPhone& start_phone(const std::string& user, const std::string& last, const std::string& ooc) {
    const auto dir = daemon_->dir().path();
    const std::string tag = "phone-" + user;
    std::ofstream(dir / (tag + ".csv")) << "SEQUENTIAL\n"
                                        << "0011223344" << last << ";\n";
    auto& p = phones_.emplace_back();
    p.user = user;
    p.log = dir / (tag + ".log");
    p.messages = dir / (tag + "_messages.log");
    const SippCommand sipp{
        .remote = "127.0.0.1:" + std::to_string(udp_port_),
        .scenario = scenario("register_hold.xml"),
        .local_port = std::to_string(free_port(SOCK_DGRAM)),
        .user = user,
        .password = "pw" + user,
        .more = {"-oocsf", scenario(ooc), "-inf", (dir / (tag + ".csv")).string(), "-trace_msg", "-message_file",
                 p.messages.string(), "-trace_err", "-error_file", (dir / (tag + ".err")).string()}};
    p.child = Child(sipp.argv(), p.log);
    EXPECT_TRUE(eventually([&] { return registered(user); }, std::chrono::seconds(10)))
        << "phone " << user << " did not register\n"
        << read_file(p.log) << read_file(dir / (tag + ".err")) << daemon_->log();
    return p;
  }

  bool registered(const std::string& user) {
    const auto j = daemon_->ctl_json({"show", "sip", "registrations"});
    if (!j.contains("registrations")) return false;
    for (const auto& b : j["registrations"])
      if (b.value("user", "") == user && !b["mac"].is_null()) return true;
    return false;
  }

  std::string journey(const std::string& mac) { return daemon_->ctl_json({"show", "journey", mac}).dump(); }
  static std::string notifies_received(const SippPhone& p) { return read_file(p.messages); }

  std::unique_ptr<Daemon> daemon_;
  int udp_port_ = 0;
  std::deque<SippPhone> phones_;
};

TEST_F(PhoneControl, RestartIsAnsweredAndReportedWithWhatWasSent) {
  auto& p1 = start_phone("1001", "01", "notify_answer.xml");
  auto& p2 = start_phone("1002", "02", "notify_answer.xml");
  const auto r = daemon_->ctl({"--json", "phone", "restart", "SEP001122334401"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon_->log();
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["action"], "restart");
  EXPECT_EQ(j["phone"], "SEP001122334401");
  EXPECT_TRUE(j["answer"]["answered"].get<bool>()) << j.dump(2);
  EXPECT_EQ(j["answer"]["status"], 200);
  EXPECT_EQ(j["result"], "phone answered 200 OK");
  EXPECT_TRUE(j["sent"]["destination"].get<std::string>().starts_with("udp 127.0.0.1:")) << j.dump(2);
  EXPECT_NE(j["sent"]["body"].get<std::string>().find("action=restart\r\n"), std::string::npos);
  EXPECT_NE(
      j["sent"]["body"].get<std::string>().find("ConfigVersionStamp={" + j["config_version"].get<std::string>() + "}"),
      std::string::npos);
  // The phone's own registration names the NOTIFY's target.
  const auto regs = daemon_->ctl_json({"show", "sip", "registrations"});
  std::string call_id_1001;
  for (const auto& b : regs["registrations"])
    if (b["user"] == "1001") call_id_1001 = b["call_id"];
  EXPECT_EQ(j["sent"]["register_call_id"], call_id_1001);
  EXPECT_NE(j["sent"]["body"].get<std::string>().find("RegisterCallId={" + call_id_1001 + "}"), std::string::npos);
  // Only phone 1 got it; phone 2's sipp saw no NOTIFY.
  EXPECT_GE(count(notifies_received(p1), "NOTIFY sip:"), 1u) << notifies_received(p1);
  EXPECT_EQ(count(notifies_received(p2), "NOTIFY sip:"), 0u) << notifies_received(p2);
  // The timeline has the push and the answer.
  const auto t = journey("SEP001122334401");
  EXPECT_NE(t.find("config pushed (restart) by the administrator over udp 127.0.0.1:"), std::string::npos) << t;
  EXPECT_NE(t.find("config push (restart) by the administrator: phone answered 200 OK"), std::string::npos) << t;
  // The human form says the same.
  const auto text = daemon_->ctl({"phone", "reset", "001122334401"});
  ASSERT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("service-control NOTIFY action=reset"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("phone answered 200 OK"), std::string::npos) << text.out;
}

TEST_F(PhoneControl, ReloadPushesToThePhoneWhoseConfigChangedOnly) {
  auto& p1 = start_phone("1001", "01", "notify_answer.xml");
  auto& p2 = start_phone("1002", "02", "notify_answer.xml");
  daemon_->write_site(site("Reception", ""));  // phone 1's line label only
  const auto r = daemon_->ctl({"reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon_->log();
  ASSERT_TRUE(eventually(
      [&] {
        return journey("SEP001122334401").find("config push (restart) after reload: phone answered 200 OK") !=
               std::string::npos;
      },
      std::chrono::seconds(10)))
      << journey("SEP001122334401") << daemon_->log();
  EXPECT_EQ(count(notifies_received(p1), "NOTIFY sip:"), 1u) << notifies_received(p1);
  EXPECT_NE(read_file(p1.messages).find("action=restart"), std::string::npos);
  // Phone 2's file is byte for byte the same: nothing is sent to it, nothing is in its timeline.
  EXPECT_EQ(count(notifies_received(p2), "NOTIFY sip:"), 0u) << notifies_received(p2);
  EXPECT_EQ(journey("SEP001122334402").find("config push"), std::string::npos) << journey("SEP001122334402");

  // A new load for phone 2 is a reset for phone 2, and nothing for phone 1 (unchanged this time).
  daemon_->write_site(site("Reception", "sip88xx.14-3-1-0001-10", "spare"));
  ASSERT_EQ(daemon_->ctl({"reload"}).exit_code, 0);
  ASSERT_TRUE(eventually(
      [&] {
        return journey("SEP001122334402").find("config push (reset) after reload: phone answered 200 OK") !=
               std::string::npos;
      },
      std::chrono::seconds(10)))
      << journey("SEP001122334402") << daemon_->log();
  EXPECT_NE(read_file(p2.messages).find("action=reset"), std::string::npos);
  EXPECT_EQ(count(notifies_received(p1), "NOTIFY sip:"), 1u) << notifies_received(p1);
  // A changed phone that is not registered is noted, not pushed.
  const auto j3 = journey("SEP001122334403");
  EXPECT_EQ(j3.find("config pushed"), std::string::npos) << j3;
  EXPECT_NE(j3.find("config changed after reload, not pushed: SEP001122334403 is not registered"), std::string::npos)
      << j3;
}

TEST_F(PhoneControl, AHungPhoneGetsTheRetransmissionsAndIsReportedAfterTimerF) {
  auto& p1 = start_phone("1001", "01", "notify_ignore.xml");
  // Daemon::ctl gives up after 30 s; this answer comes after Timer F (32 s).
  const auto r = run({voiceedgectl_path().string(), "--socket", daemon_->socket().string(), "--json", "phone",
                      "restart", "SEP001122334401"},
                     std::chrono::seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon_->log();
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["answer"]["answered"].get<bool>()) << j.dump(2);
  // T1 500 ms: retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s, Timer F at 32 s.
  EXPECT_EQ(j["answer"]["retransmissions"], 10) << j.dump(2);
  EXPECT_TRUE(
      std::regex_match(j["result"].get<std::string>(), std::regex("no answer after 3[2-4] s \\(10 retransmissions\\)")))
      << j["result"];
  // They reached the phone (sipp logs every NOTIFY that arrived, retransmissions included).
  EXPECT_GE(count(notifies_received(p1), "NOTIFY sip:"), 3u) << notifies_received(p1);
  const auto t = journey("SEP001122334401");
  EXPECT_NE(t.find("config push (restart) by the administrator: no answer after"), std::string::npos) << t;
  EXPECT_NE(daemon_->log().find("no answer after"), std::string::npos);
}

TEST_F(PhoneControl, RefusalsAreClear) {
  auto r = daemon_->ctl({"phone", "restart", "SEP001122334403"});  // listed, never registered
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("SEP001122334403 is not registered"), std::string::npos) << r.err;
  r = daemon_->ctl({"phone", "restart", "SEP00112233449F"});  // not in the site file
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not-found"), std::string::npos) << r.err;
  r = daemon_->ctl({"phone", "reset", "not-a-mac"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad-request"), std::string::npos) << r.err;
  // No PoE port for this phone (ports: [] and no CDP): power-cycle is refused, nothing is cut.
  r = daemon_->ctl({"phone", "power-cycle", "SEP001122334401"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no PoE port the box controls"), std::string::npos) << r.err;
  r = daemon_->ctl({"phone", "power-cycle", "SEP001122334401", "--seconds", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--seconds must be 1 to 60"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ve::test
