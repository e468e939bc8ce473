// SRST against a real Kamailio 5.6 as the central cluster ("headquarters"), in network namespaces
// the test creates: the box (voiceedged and the sipp phones on its loopback) and hq (Kamailio),
// joined by a veth. Phones register through the box with the cluster (its location table holds
// the binding with the box's Path), call each other through it; Kamailio stops, the box turns
// survivable within probe_interval_s x probe_failures and the phones register and call locally,
// numbers beyond the branch get 503; Kamailio starts again and after rehome_after_s the phones
// register upstream again.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/sipp.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

using namespace std::chrono_literals;

// The branch: SIP on every address of the box, Kamailio at 10.99.0.2 as its cluster over `transport`.
std::string srst_site(const std::string& transport) {
  return SiteFile{.name = "srst-test",
                  .control = R"({ socket: @SOCKET@, http: "127.0.0.1:8089" })",
                  .sip_listen = R"(["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"])",
                  .sip =
                      "  realm: voiceedge-test\n  ring_timeout_s: 5\n  upstream:\n"
                      "    - { name: hq-1, host: 10.99.0.2, port: 5060, transport: " +
                      transport +
                      " }\n"
                      "  survivability: { probe_interval_s: 1, probe_failures: 2, rehome_after_s: 3 }\n",
                  .phones = R"(  - mac: "00:11:22:33:44:01"
    lines: [{ extension: "1001", password: "pw1001" }]
  - mac: "00:11:22:33:44:02"
    lines: [{ extension: "1002", password: "pw1002" }]
)"}
      .yaml();
}

class Srst : public ::testing::Test {
 public:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root for network namespaces";
    ASSERT_EQ(sh("command -v sipp && command -v kamailio && command -v kamcmd").exit_code, 0)
        << "sipp and kamailio are required (scripts/deps --bench)";
    ASSERT_TRUE(link_.ok()) << link_.error();
    daemon_ = std::make_unique<Daemon>(srst_site(upstream_transport()), box_.exec());
    std::string cfg = read_file(source_dir() / "tests/srst/kamailio.cfg");
    for (std::string::size_type p; (p = cfg.find("HQ_ADDR")) != std::string::npos;) cfg.replace(p, 7, "10.99.0.2");
    for (std::string::size_type p; (p = cfg.find("HQ_CTL")) != std::string::npos;) cfg.replace(p, 6, ctl_socket());
    for (std::string::size_type p; (p = cfg.find("HQ_PWPREFIX")) != std::string::npos;) cfg.replace(p, 11, "pw");
    daemon_->dir().write("kamailio.cfg", cfg);
    start_kamailio();
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
  }

  void TearDown() override {
    stop_kamailio();
    daemon_.reset();
  }

  // The box-cluster leg; the phones use UDP to the box either way.
  virtual std::string upstream_transport() const { return "udp"; }

  std::string ctl_socket() const { return (daemon_->dir() / "kamailio.ctl").string(); }

  void start_kamailio() {
    const auto multiarch = sh("gcc -print-multiarch").out;
    const std::string modules = "/usr/lib/" + multiarch.substr(0, multiarch.find('\n')) + "/kamailio/modules";
    kamailio_ = Child(hq_.exec({"kamailio", "-f", (daemon_->dir() / "kamailio.cfg").string(), "-DD", "-E", "-m", "64",
                                "-M", "8", "-Y", daemon_->dir().path().string(), "-L", modules}),
                      daemon_->dir() / "kamailio.log");
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(ctl_socket()); }, 10s)) << kamailio_log();
  }

  // Kamailio's workers can outlive its main process; every process in the hq namespace is ours.
  void stop_kamailio() {
    kamailio_.stop(SIGTERM, 5s);
    for (int round = 0; round < 50; ++round) {
      const auto pids = run({"ip", "netns", "pids", hq_.name()}).out;
      if (pids.find_first_of("0123456789") == std::string::npos) return;
      std::size_t pos = 0;
      while (pos < pids.size()) {
        const auto end = pids.find('\n', pos);
        const auto line = pids.substr(pos, end - pos);
        if (!line.empty()) ::kill(std::stoi(line), round == 0 ? SIGTERM : SIGKILL);
        if (end == std::string::npos) break;
        pos = end + 1;
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  std::string kamailio_log() const { return read_file(daemon_->dir() / "kamailio.log"); }
  std::string ul_dump() const { return sh("kamcmd -s unix:" + ctl_socket() + " ul.dump").out; }

  std::string mode() {
    const auto j = daemon_->ctl_json({"show", "sip", "upstream"});
    return j.is_object() ? j.value("mode", "") : "";
  }

  std::vector<std::string> sipp(const std::string& scenario, const std::string& user, const std::string& tag) {
    return box_.exec(SippCommand{
        .remote = "127.0.0.1:5060",
        .scenario = std::string(VE_SIPP_SCENARIOS) + "/calls/" + scenario,
        .local_port = std::to_string(next_port_++),
        .user = user,
        .password = "pw" + user,
        .more = {"-cid_str", cid_ + phase_ + "-%u", "-timeout", "20s", "-timeout_error", "-recv_timeout", "15000",
                 "-trace_err", "-error_file", (daemon_->dir() / ("sipp-" + tag + ".err")).string()}}
                         .argv());
  }

  // The binding of `user` the box holds (its copy in upstream mode), null when none.
  nlohmann::json binding(const std::string& user, int port) {
    const auto j = daemon_->ctl_json({"show", "sip", "registrations"});
    if (!j.contains("registrations")) return nlohmann::json::object();
    for (const auto& b : j["registrations"])
      if (b.value("user", "") == user && b.value("contact", "").find(":" + std::to_string(port)) != std::string::npos)
        return b;
    return nlohmann::json::object();
  }

  // Phone 1002 registers (through the box, wherever the box sends it) and waits for a call.
  Child start_callee(const std::string& tag) {
    const int port = next_port_;
    Child c(sipp("callee_answer.xml", "1002", tag), daemon_->dir() / ("sipp-" + tag + ".log"));
    callee_port_ = port;
    return c;
  }

  std::vector<std::string> caller_args(const std::string& scenario, const std::string& callee, const std::string& tag,
                                       const std::string& code = "") {
    std::string file = std::string(VE_SIPP_SCENARIOS) + "/calls/" + scenario;
    auto args = sipp(scenario, "1001", tag);
    if (scenario.find('/') != std::string::npos) args[7] = scenario;
    if (!code.empty()) {
      std::string text = read_file(file);
      for (std::string::size_type p; (p = text.find("@CODE@")) != std::string::npos;) text.replace(p, 6, code);
      const auto written = daemon_->dir() / ("caller-" + code + ".xml");
      std::ofstream(written) << text;
      args[7] = written.string();
    }
    // The box checks the digest uri against the Request-URI (RFC 3261 22.4); Kamailio does not.
    args.insert(args.end(), {"-key", "callee", callee, "-auth_uri", callee + "@127.0.0.1:5060"});
    return args;
  }

  RunResult call(const std::string& scenario, const std::string& callee, const std::string& tag,
                 const std::string& code = "") {
    auto r = run(caller_args(scenario, callee, tag, code), 40s);
    r.err += read_file(daemon_->dir() / ("sipp-" + tag + ".err"));
    return r;
  }

  // The box (voiceedged, the sipp phones on its loopback) and hq (Kamailio), joined by a veth.
  Namespace box_{"ve-srst-box-"}, hq_{"ve-srst-hq-"};
  VethPair link_{{&box_, unique_name("vsb"), "10.99.0.1/24"}, {&hq_, unique_name("vsh"), "10.99.0.2/24"}};
  std::unique_ptr<Daemon> daemon_;
  Child kamailio_;
  int next_port_ = 5071;
  int callee_port_ = 0;
  std::string cid_ = "ve-srst-";
  // The callee's sipp maps the INVITE to its call by Call-ID: caller and callee of one phase
  // share it (a new phase, a new Call-ID: the REGISTERs start again at CSeq 1).
  std::string phase_ = "up";
};

TEST_F(Srst, RegistersAndCallsThroughTheClusterSurvivesItsLossAndRehomes) {
  // ---- upstream mode: the cluster answers the probes.
  ASSERT_TRUE(eventually([&] { return mode() == "upstream"; }, 10s))
      << daemon_->ctl_json({"show", "sip", "upstream"}).dump(2) << kamailio_log() << daemon_->log();
  {
    const auto up = daemon_->ctl_json({"show", "sip", "upstream"});
    ASSERT_EQ(up["upstreams"].size(), 1u);
    EXPECT_EQ(up["upstreams"][0]["name"], "hq-1");
    EXPECT_EQ(up["upstreams"][0]["state"], "up");
    EXPECT_FALSE(up["upstreams"][0]["rtt_ms"].is_null());
    const auto text = daemon_->ctl({"show", "sip", "upstream"});
    EXPECT_NE(text.out.find("Mode: upstream"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("udp:10.99.0.2:5060"), std::string::npos) << text.out;
  }
  auto callee = start_callee("callee-up");
  ASSERT_TRUE(eventually([&] { return binding("1002", callee_port_).value("registered_with", "") == "hq-1"; }, 10s))
      << daemon_->ctl_json({"show", "sip", "registrations"}).dump(2) << kamailio_log() << daemon_->log();
  const auto dump = ul_dump();
  EXPECT_NE(dump.find("1002"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Path: <sip:ob-"), std::string::npos) << "the cluster keeps the box's Path\n" << dump;
  EXPECT_NE(dump.find("@10.99.0.1:5060;lr;ob>"), std::string::npos) << dump;
  auto r = call("caller_answered.xml", "1002", "caller-up");
  EXPECT_EQ(r.exit_code, 0) << describe(r) << kamailio_log() << daemon_->log();
  EXPECT_EQ(callee.wait(15s), std::optional<int>(0))
      << read_file(daemon_->dir() / "sipp-callee-up.log") << read_file(daemon_->dir() / "sipp-callee-up.err");
  EXPECT_NE(kamailio_log().find("INVITE 1001 -> 1002"), std::string::npos) << "the call went through the cluster";
  const auto journey = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:02"}).dump();
  EXPECT_NE(journey.find("registered 1002 with hq-1 via the box"), std::string::npos) << journey;

  // ---- the cluster goes away: survivable within probe_interval_s x probe_failures (+ one window).
  const auto stopped = std::chrono::steady_clock::now();
  stop_kamailio();
  ASSERT_TRUE(eventually([&] { return mode() == "survivable"; }, 6s)) << daemon_->log();
  const auto noticed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - stopped);
  EXPECT_LE(noticed, 4s) << "2 probes of 1 s: about 2-3 s";
  std::cout << "srst: survivable " << noticed.count() << " ms after Kamailio stopped\n";
  {
    const auto up = daemon_->ctl_json({"show", "sip", "upstream"});
    EXPECT_EQ(up["upstreams"][0]["state"], "down");
  }
  phase_ = "local";
  auto local_callee = start_callee("callee-local");
  ASSERT_TRUE(eventually(
      [&] {
        const auto b = binding("1002", callee_port_);
        return !b.empty() && b.value("registered_with", "x").empty();
      },
      10s))
      << daemon_->ctl_json({"show", "sip", "registrations"}).dump(2) << daemon_->log();
  EXPECT_LE(binding("1002", callee_port_).value("expires_in_s", 9999), 60) << "survivable mode's short expiry";
  r = call("caller_answered.xml", "1002", "caller-local");
  EXPECT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  EXPECT_EQ(local_callee.wait(15s), std::optional<int>(0)) << read_file(daemon_->dir() / "sipp-callee-local.log");
  const auto calls = daemon_->ctl_json({"show", "calls"});
  ASSERT_FALSE(calls["calls"].empty());
  EXPECT_EQ(calls["calls"][0]["answered_by"], "1002") << "the box itself routed this call";
  phase_ = "503";
  r = call("caller_fails.xml", "5551234", "caller-503", "503");
  EXPECT_EQ(r.exit_code, 0) << "a number beyond the branch: 503\n" << describe(r) << daemon_->log();
  const auto survivable_journey = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:02"}).dump();
  EXPECT_NE(survivable_journey.find("with the box in survivable mode: hq-1 unreachable since"), std::string::npos)
      << survivable_journey;

  // ---- the cluster is back: upstream again only after it has answered for rehome_after_s. A
  // call the box set up in survivable mode goes on across the change and ends normally.
  phase_ = "span";
  auto span_callee = start_callee("callee-span");
  ASSERT_TRUE(eventually([&] { return !binding("1002", callee_port_).empty(); }, 10s)) << daemon_->log();
  Child span_caller(caller_args(source_dir().string() + "/tests/srst/caller_held.xml", "1002", "caller-span"),
                    daemon_->dir() / "sipp-caller-span.log");
  ASSERT_TRUE(eventually(
      [&] {
        const auto j = daemon_->ctl_json({"show", "calls"});
        return j.contains("calls") && !j["calls"].empty() && j["calls"][0].value("state", "") == "answered";
      },
      10s))
      << daemon_->ctl_json({"show", "calls"}).dump(2) << daemon_->log();
  const auto restarted = std::chrono::steady_clock::now();
  start_kamailio();
  ASSERT_TRUE(eventually([&] { return mode() == "upstream"; }, 10s)) << daemon_->log();
  const auto rehomed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - restarted);
  EXPECT_GE(rehomed, 3s) << "not before rehome_after_s";
  std::cout << "srst: upstream again " << rehomed.count() << " ms after Kamailio started again\n";
  EXPECT_EQ(span_caller.wait(15s), std::optional<int>(0))
      << "the call from survivable mode ended normally after the change\n"
      << read_file(daemon_->dir() / "sipp-caller-span.log") << read_file(daemon_->dir() / "sipp-caller-span.err");
  EXPECT_EQ(span_callee.wait(15s), std::optional<int>(0)) << read_file(daemon_->dir() / "sipp-callee-span.log");
  {
    const auto j = daemon_->ctl_json({"show", "calls"});
    ASSERT_FALSE(j["calls"].empty());
    EXPECT_EQ(j["calls"][0]["state"], "ended");
    EXPECT_EQ(j["calls"][0]["ended_by"], "caller") << j["calls"][0].dump(2);
  }
  const auto changes = daemon_->ctl_json({"show", "sip", "upstream"})["changes"];
  ASSERT_FALSE(changes.empty());
  EXPECT_NE(changes.back().value("why", "").find("has answered for 3 s"), std::string::npos) << changes.dump(2);
  phase_ = "back";
  auto back = start_callee("callee-back");
  ASSERT_TRUE(eventually([&] { return binding("1002", callee_port_).value("registered_with", "") == "hq-1"; }, 10s))
      << daemon_->ctl_json({"show", "sip", "registrations"}).dump(2) << kamailio_log() << daemon_->log();
  EXPECT_NE(ul_dump().find("1002"), std::string::npos) << "registered with the restarted cluster";
  r = call("caller_answered.xml", "1002", "caller-back");
  EXPECT_EQ(r.exit_code, 0) << describe(r) << kamailio_log() << daemon_->log();
  EXPECT_EQ(back.wait(15s), std::optional<int>(0));
  const auto metrics = box_.run({"curl", "-sf", "http://127.0.0.1:8089/metrics"}).out;
  EXPECT_NE(metrics.find("voiceedge_sip_mode{mode=\"upstream\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("voiceedge_sip_upstream_up{upstream=\"hq-1\",address=\"udp:10.99.0.2:5060\"} 1"),
            std::string::npos)
      << metrics;
}

// The same cluster over TCP: the box probes and relays over its own connection to Kamailio, and
// requests along the Path come back over that connection.
class SrstTcp : public Srst {
 public:
  std::string upstream_transport() const override { return "tcp"; }
};

TEST_F(SrstTcp, RegistersAndCallsThroughTheClusterOverTcpAndNoticesItsLoss) {
  ASSERT_TRUE(eventually([&] { return mode() == "upstream"; }, 10s))
      << daemon_->ctl_json({"show", "sip", "upstream"}).dump(2) << kamailio_log() << daemon_->log();
  EXPECT_EQ(daemon_->ctl_json({"show", "sip", "upstream"})["upstreams"][0]["address"], "tcp:10.99.0.2:5060");
  auto callee = start_callee("callee-tcp");
  ASSERT_TRUE(eventually([&] { return binding("1002", callee_port_).value("registered_with", "") == "hq-1"; }, 10s))
      << daemon_->ctl_json({"show", "sip", "registrations"}).dump(2) << kamailio_log() << daemon_->log();
  const auto dump = ul_dump();
  EXPECT_NE(dump.find("transport=tcp;lr;ob>"), std::string::npos) << dump;
  auto r = call("caller_answered.xml", "1002", "caller-tcp");
  EXPECT_EQ(r.exit_code, 0) << describe(r) << kamailio_log() << daemon_->log();
  EXPECT_EQ(callee.wait(15s), std::optional<int>(0)) << read_file(daemon_->dir() / "sipp-callee-tcp.log");
  EXPECT_NE(kamailio_log().find("INVITE 1001 -> 1002"), std::string::npos);
  stop_kamailio();
  EXPECT_TRUE(eventually([&] { return mode() == "survivable"; }, 6s)) << daemon_->log();
}

}  // namespace
}  // namespace ve::test
