// Calls through the real voiceedged's proxy, with sipp as both phones over loopback: each callee
// sipp registers through the box and then waits for the INVITE on the same socket or connection
// (its -cid_str equals the caller's, so sipp maps the INVITE to its call); the caller sipp dials
// with proxy digest. UDP to UDP, TCP to UDP, UDP to TCP; CANCEL, busy, no answer, unknown and
// unregistered numbers, a wrong password, a shared line and forwarding. Call records are read
// back with the real voiceedgectl.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/sipp.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

// Six phones, one line each: 1005 forwards to 1003 when unanswered, 1006 when busy.
SiteFile calls_site() {
  return {.name = "sipp-calls",
          .sip = "  realm: voiceedge-test\n  ring_timeout_s: 2\n",
          .phones = R"(  - mac: "00:11:22:33:44:01"
    lines: [{ extension: "1001", password: "pw1001" }]
  - mac: "00:11:22:33:44:02"
    lines: [{ extension: "1002", password: "pw1002" }]
  - mac: "00:11:22:33:44:03"
    lines: [{ extension: "1003", password: "pw1003" }]
  - mac: "00:11:22:33:44:04"
    lines: [{ extension: "1004", password: "pw1004" }]
  - mac: "00:11:22:33:44:05"
    lines: [{ extension: "1005", password: "pw1005", forward: { no_answer: "1003", no_answer_s: 1 } }]
  - mac: "00:11:22:33:44:06"
    lines: [{ extension: "1006", password: "pw1006", forward: { busy: "1003" } }]
)"};
}

class SippCalls : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(sh("command -v sipp").exit_code, 0) << "sipp (package sip-tester) is required";
    daemon_ = std::make_unique<Daemon>(calls_site().yaml());
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    auto j = daemon_->ctl_json({"show", "sip", "registrations"});
    ASSERT_TRUE(j.is_object()) << daemon_->log();
    udp_port_ = j["listening"]["udp_port"].get<int>();
    tcp_port_ = j["listening"]["tcp_port"].get<int>();
    ASSERT_NE(udp_port_, 0);
    ASSERT_NE(tcp_port_, 0);
    // One Call-ID per test, shared by the caller and its callees (see the file comment).
    cid_ = std::string("ve-") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-%u";
  }

  std::vector<std::string> sipp_args(const std::string& scenario, const std::string& transport, const std::string& user,
                                     const std::string& password, const std::string& tag) {
    const int port = transport == "t1" ? tcp_port_ : udp_port_;
    return SippCommand{.remote = "127.0.0.1:" + std::to_string(port),
                       .scenario = scenario,
                       .transport = transport,
                       .local_port = std::to_string(free_port(transport == "t1" ? SOCK_STREAM : SOCK_DGRAM)),
                       .user = user,
                       .password = password,
                       .more = {"-cid_str", cid_, "-timeout", "20s", "-timeout_error", "-recv_timeout", "8000",
                                "-trace_err", "-error_file", (daemon_->dir() / ("sipp-" + tag + ".err")).string()}}
        .argv();
  }

  static std::string scenario(const std::string& name) { return std::string(VE_SIPP_SCENARIOS) + "/calls/" + name; }

  // A phone on line `user` registers and waits for the call.
  void start_callee(const std::string& name, const std::string& transport, const std::string& user) {
    const std::string tag = "callee" + std::to_string(callees_.size()) + "-" + user;
    callee_logs_.push_back(daemon_->dir() / ("sipp-" + tag + ".log"));
    callee_errs_.push_back(daemon_->dir() / ("sipp-" + tag + ".err"));
    const auto before = bindings(user);
    callees_.emplace_back(sipp_args(scenario(name), transport, user, "pw" + user, tag), callee_logs_.back());
    ASSERT_TRUE(eventually([&] { return bindings(user) > before; }, std::chrono::seconds(10)))
        << "callee " << user << " did not register\n"
        << daemon_->ctl_json({"show", "sip", "registrations"}).dump(2) << "\n"
        << read_file(callee_logs_.back()) << read_file(callee_errs_.back()) << daemon_->log();
  }

  std::size_t bindings(const std::string& user) {
    std::size_t n = 0;
    // Kept in a local: a range-for over a member of a temporary would read a destroyed object.
    const auto j = daemon_->ctl_json({"show", "sip", "registrations"});
    if (!j.contains("registrations")) return 0;
    for (const auto& b : j["registrations"])
      if (b.value("user", "") == user) ++n;
    return n;
  }

  RunResult call(const std::string& name, const std::string& transport, const std::string& callee,
                 const std::string& password = "pw1001", const std::string& expected_code = "") {
    std::string file = scenario(name);
    if (!expected_code.empty()) {
      // caller_fails.xml waits for the code the test names.
      std::string text = read_file(file);
      text.replace(text.find("@CODE@"), 6, expected_code);
      text.replace(text.find("@CODE@"), 6, expected_code);
      file = (daemon_->dir() / ("caller-" + expected_code + ".xml")).string();
      std::ofstream(file) << text;
    }
    auto args = sipp_args(file, transport, "1001", password, "caller");
    // sipp's digest uri defaults to sip:<remote_ip>:<remote_port>; the box checks that the uri is
    // the Request-URI (RFC 3261 22.4), as a phone computes it.
    const int port = transport == "t1" ? tcp_port_ : udp_port_;
    args.insert(args.end(), {"-key", "callee", callee, "-auth_uri", callee + "@127.0.0.1:" + std::to_string(port)});
    auto r = run(args, std::chrono::seconds(40));
    r.err += read_file(daemon_->dir() / "sipp-caller.err");
    return r;
  }

  // Every callee finished its scenario successfully.
  void expect_callees_done() {
    for (std::size_t i = 0; i < callees_.size(); ++i) {
      auto code = callees_[i].wait(std::chrono::seconds(15));
      EXPECT_EQ(code, std::optional<int>(0)) << "callee " << i << "\n"
                                             << read_file(callee_logs_[i]) << read_file(callee_errs_[i]);
    }
  }

  nlohmann::json last_call() {
    auto j = daemon_->ctl_json({"show", "calls"});
    if (!j.is_object() || j["calls"].empty()) return nlohmann::json();
    return j["calls"][0];
  }

  std::unique_ptr<Daemon> daemon_;
  int udp_port_ = 0;
  int tcp_port_ = 0;
  std::string cid_;
  std::vector<Child> callees_;
  std::vector<std::filesystem::path> callee_logs_;
  std::vector<std::filesystem::path> callee_errs_;
};

void answered_call(SippCalls& t, const std::string& caller_transport, const std::string& callee_transport) {
  t.start_callee("callee_answer.xml", callee_transport, "1002");
  auto r = t.call("caller_answered.xml", caller_transport, "1002");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << t.daemon_->log();
  t.expect_callees_done();
  ASSERT_TRUE(eventually([&] { return t.last_call().value("state", "") == "ended"; })) << t.last_call().dump(2);
  const auto c = t.last_call();
  EXPECT_EQ(c["from"], "1001");
  EXPECT_EQ(c["to"], "1002");
  EXPECT_EQ(c["answered_by"], "1002");
  EXPECT_EQ(c["final_code"], 200);
  EXPECT_EQ(c["ended_by"], "caller");
  EXPECT_EQ(c["caller_transport"], caller_transport == "t1" ? "tcp" : "udp");
  EXPECT_EQ(c["callee_transport"], callee_transport == "t1" ? "tcp" : "udp");
  EXPECT_FALSE(c["answered_at"].is_null());
  // Both phones' timelines have the call.
  const auto caller = t.daemon_->ctl_json({"show", "journey", "00:11:22:33:44:01"}).dump();
  EXPECT_NE(caller.find("call placed to 1002 answered"), std::string::npos) << caller;
  const auto callee = t.daemon_->ctl_json({"show", "journey", "00:11:22:33:44:02"}).dump();
  EXPECT_NE(callee.find("call received from 1001"), std::string::npos) << callee;
}

TEST_F(SippCalls, UdpToUdpAnsweredAndHungUp) { answered_call(*this, "u1", "u1"); }
TEST_F(SippCalls, TcpToUdpAnsweredAndHungUp) { answered_call(*this, "t1", "u1"); }
// The callee registered over TCP gets the INVITE over the connection it registered on.
TEST_F(SippCalls, UdpToTcpAnsweredAndHungUp) { answered_call(*this, "u1", "t1"); }

TEST_F(SippCalls, CancelBeforeAnswer) {
  start_callee("callee_cancelled.xml", "u1", "1002");
  auto r = call("caller_cancel.xml", "u1", "1002");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
  ASSERT_TRUE(eventually([&] { return last_call().value("state", "") == "ended"; }));
  EXPECT_EQ(last_call()["final_code"], 487);
  EXPECT_EQ(last_call()["ended_by"], "caller");
}

TEST_F(SippCalls, BusyIsPassedThrough) {
  start_callee("callee_busy.xml", "u1", "1002");
  auto r = call("caller_fails.xml", "u1", "1002", "pw1001", "486");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
  ASSERT_TRUE(eventually([&] { return last_call().value("state", "") == "ended"; }));
  EXPECT_EQ(last_call()["final_code"], 486);
  EXPECT_EQ(last_call()["ended_by"], "callee");
  const auto caller = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:01"}).dump();
  EXPECT_NE(caller.find("call placed to 1002 failed: 486"), std::string::npos) << caller;
}

TEST_F(SippCalls, NoAnswerTimesOutWith408AndTheCalleeIsCancelled) {
  start_callee("callee_cancelled.xml", "u1", "1002");
  auto r = call("caller_fails.xml", "u1", "1002", "pw1001", "408");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
  ASSERT_TRUE(eventually([&] { return last_call().value("state", "") == "ended"; }));
  EXPECT_EQ(last_call()["final_code"], 408);
}

TEST_F(SippCalls, UnknownNumberIs404) {
  auto r = call("caller_fails.xml", "u1", "1999", "pw1001", "404");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
}

TEST_F(SippCalls, ListedButUnregisteredIs480) {
  auto r = call("caller_fails.xml", "u1", "1004", "pw1001", "480");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  auto metrics = daemon_->ctl_json({"show", "calls"})["counters"];
  EXPECT_EQ(metrics["unavailable"], 1) << metrics.dump();
}

TEST_F(SippCalls, WrongPasswordIs403) {
  auto r = call("caller_fails.xml", "u1", "1002", "not-the-password", "403");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  const auto caller = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:01"}).dump();
  EXPECT_NE(caller.find("call failed: 403 wrong password for 1001"), std::string::npos) << caller;
}

TEST_F(SippCalls, ScenarioFailsWhenTheAnswerDiffers) {
  // A call to a registered phone that answers is not a 404: sipp notices a proxy that says anything.
  auto r = call("caller_fails.xml", "u1", "1003", "pw1001", "404");
  EXPECT_NE(r.exit_code, 0) << describe(r);
}

TEST_F(SippCalls, SharedLineRingsBothOneAnswersTheOtherIsCancelled) {
  start_callee("callee_answer.xml", "u1", "1002");
  start_callee("callee_cancelled.xml", "t1", "1002");
  auto r = call("caller_answered.xml", "u1", "1002");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
}

TEST_F(SippCalls, ForwardOnBusy) {
  start_callee("callee_busy.xml", "u1", "1006");
  start_callee("callee_answer.xml", "u1", "1003");
  auto r = call("caller_answered.xml", "u1", "1006");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
  ASSERT_TRUE(eventually([&] { return last_call().value("state", "") == "ended"; }));
  EXPECT_EQ(last_call()["to"], "1006");
  EXPECT_EQ(last_call()["answered_by"], "1003");
}

TEST_F(SippCalls, ForwardOnNoAnswer) {
  start_callee("callee_cancelled.xml", "u1", "1005");
  start_callee("callee_answer.xml", "t1", "1003");
  auto r = call("caller_answered.xml", "u1", "1005");
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  expect_callees_done();
  ASSERT_TRUE(eventually([&] { return last_call().value("state", "") == "ended"; }));
  EXPECT_EQ(last_call()["answered_by"], "1003");
}

}  // namespace
}  // namespace ve::test
