// The real voiceedged's registrar driven by sipp over loopback, UDP and TCP: digest registration,
// refresh, unregister, wrong password (403), too-brief expiry (423), a Cisco 8851-shaped REGISTER,
// and registrations surviving a daemon restart. Results are read back with the real voiceedgectl.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/support/process.hpp"

namespace ve::test {
namespace {

const std::string kSite = R"(site: { name: sipp-test }
state_dir: @STATE@
control: { socket: @SOCKET@ }
ports: []
dhcp:
  kea: { manage: false, event_socket: "@STATE@/kea.sock" }
provisioning:
  root: "@STATE@/tftp"
  tftp: { listen: "127.0.0.1:0" }
  http: { listen: "127.0.0.1:0" }
sip:
  listen: ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
  realm: voiceedge-test
  default_expires_s: 3600
  min_expires_s: 60
  max_expires_s: 7200
net: { mode: none }
phones:
  - mac: "00:11:22:33:44:55"
    lines:
      - { extension: "1001", auth_user: "1001", password: "s3cret" }
  - mac: "9c:57:ad:12:a4:e0"
    model: CP-8851
    lines:
      - { extension: "1003", auth_user: "1003", password: "pw8851" }
)";

// A free local port for sipp's own socket (so that a refresh and an unregister reuse the Contact).
std::uint16_t free_port(int type) {
  int fd = ::socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class SippRegistrar : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(sh("command -v sipp").exit_code, 0) << "sipp (package sip-tester) is required";
    daemon_ = std::make_unique<Daemon>(kSite);
    start_daemon();
  }

  void start_daemon() {
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    ASSERT_TRUE(daemon_->child().running()) << daemon_->log();
    auto j = registrations_json();
    ASSERT_TRUE(j.is_object()) << daemon_->log();
    ASSERT_EQ(j.value("error", ""), "") << daemon_->log();
    udp_port_ = j["listening"]["udp_port"].get<int>();
    tcp_port_ = j["listening"]["tcp_port"].get<int>();
    ASSERT_NE(udp_port_, 0);
    ASSERT_NE(tcp_port_, 0);
  }

  nlohmann::json registrations_json() const { return daemon_->ctl_json({"show", "sip", "registrations"}); }
  nlohmann::json registrations() const { return registrations_json()["registrations"]; }

  // Runs one sipp call of `scenario`; transport "u1" (UDP) or "t1" (TCP).
  RunResult sipp(const std::string& scenario, const std::string& transport, const std::string& user,
                 const std::string& password, int expires = 600, std::uint16_t local_port = 0) {
    const int port = transport == "t1" ? tcp_port_ : udp_port_;
    if (local_port == 0) local_port = free_port(transport == "t1" ? SOCK_STREAM : SOCK_DGRAM);
    const auto errors = daemon_->dir() / ("sipp-" + scenario + ".err");
    auto r = run({"sipp",
                  "127.0.0.1:" + std::to_string(port),
                  "-sf",
                  std::string(VE_SIPP_SCENARIOS) + "/" + scenario,
                  "-m",
                  "1",
                  "-t",
                  transport,
                  "-i",
                  "127.0.0.1",
                  "-p",
                  std::to_string(local_port),
                  "-s",
                  user,
                  "-au",
                  user,
                  "-ap",
                  password,
                  "-key",
                  "expires",
                  std::to_string(expires),
                  "-timeout",
                  "20s",
                  "-timeout_error",
                  "-recv_timeout",
                  "5000",
                  "-nostdin",
                  "-trace_err",
                  "-error_file",
                  errors.string()},
                 std::chrono::seconds(40));
    r.err += read_file(errors);
    return r;
  }

  std::unique_ptr<Daemon> daemon_;
  int udp_port_ = 0;
  int tcp_port_ = 0;
};

std::string describe(const RunResult& r) {
  return "sipp exit " + std::to_string(r.exit_code) + "\n" + r.out + "\n" + r.err;
}

void register_refresh_unregister(SippRegistrar& t, const std::string& transport, const std::string& expect_transport) {
  const std::uint16_t phone_port = free_port(transport == "t1" ? SOCK_STREAM : SOCK_DGRAM);
  auto reg = t.sipp("register_refresh.xml", transport, "1001", "s3cret", 600, phone_port);
  ASSERT_EQ(reg.exit_code, 0) << describe(reg);
  auto list = t.registrations();
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["aor"], "sip:1001@127.0.0.1");
  EXPECT_EQ(list[0]["contact"],
            "sip:1001@127.0.0.1:" + std::to_string(phone_port) + ";transport=" + (transport == "t1" ? "TCP" : "UDP"));
  EXPECT_EQ(list[0]["transport"], expect_transport);
  EXPECT_EQ(list[0]["user_agent"], "sipp-voiceedge-test");
  EXPECT_EQ(list[0]["mac"], "00:11:22:33:44:55");
  EXPECT_LE(list[0]["expires_in_s"].get<int>(), 600);
  EXPECT_GE(list[0]["expires_in_s"].get<int>(), 590);
  EXPECT_EQ(list[0]["cseq"], 3);  // the refresh updated the same binding

  auto unreg = t.sipp("unregister.xml", transport, "1001", "s3cret", 600, phone_port);
  ASSERT_EQ(unreg.exit_code, 0) << describe(unreg);
  EXPECT_TRUE(t.registrations().empty()) << t.registrations().dump(2);
}

TEST_F(SippRegistrar, RegisterRefreshUnregisterOverUdp) { register_refresh_unregister(*this, "u1", "udp"); }
TEST_F(SippRegistrar, RegisterRefreshUnregisterOverTcp) { register_refresh_unregister(*this, "t1", "tcp"); }

TEST_F(SippRegistrar, WrongPasswordIsForbiddenOverUdpAndTcp) {
  for (const std::string transport : {"u1", "t1"}) {
    auto r = sipp("wrong_password.xml", transport, "1001", "not-the-password");
    ASSERT_EQ(r.exit_code, 0) << transport << ": " << describe(r);
  }
  EXPECT_TRUE(registrations().empty());
  const auto journey = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:55"}).dump();
  EXPECT_NE(journey.find("403 wrong password for 1001"), std::string::npos) << journey;
}

TEST_F(SippRegistrar, TooBriefExpiryGets423OverUdpAndTcp) {
  for (const std::string transport : {"u1", "t1"}) {
    auto r = sipp("too_brief.xml", transport, "1001", "s3cret", 30);
    ASSERT_EQ(r.exit_code, 0) << transport << ": " << describe(r);
  }
  EXPECT_TRUE(registrations().empty());
}

TEST_F(SippRegistrar, ScenarioFailsWhenTheAnswerDiffers) {
  // The right password makes the 403 scenario fail: sipp would notice a registrar that accepts anything.
  auto r = sipp("wrong_password.xml", "u1", "1001", "s3cret");
  EXPECT_NE(r.exit_code, 0) << describe(r);
}

TEST_F(SippRegistrar, Cisco8851RegisterOverTcpShowsDeviceName) {
  auto r = sipp("cisco8851_register.xml", "t1", "1003", "pw8851", 3600);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto list = registrations();
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["device_name"], "SEP9C57AD12A4E0");
  EXPECT_EQ(list[0]["mac"], "9c:57:ad:12:a4:e0");
  EXPECT_EQ(list[0]["transport"], "tcp");
  EXPECT_EQ(list[0]["user_agent"], "Cisco-CP8851/12.1.1");
  EXPECT_EQ(list[0]["active_load"], "sip88xx.12-1-1-0001-1");
  EXPECT_EQ(list[0]["inactive_load"], "sip88xx.11-7-1-17");
  EXPECT_EQ(list[0]["instance"], "<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>");
  // The human table shows the device too.
  auto table = daemon_->ctl({"show", "sip", "registrations"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("SEP9C57AD12A4E0"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("sip:1003@127.0.0.1"), std::string::npos) << table.out;
  // Steps 10 and 11 joined the phone's timeline by MAC.
  const auto journey = daemon_->ctl_json({"show", "journey", "SEP9C57AD12A4E0"}).dump();
  EXPECT_NE(journey.find("callmanager-connect"), std::string::npos) << journey;
  EXPECT_NE(journey.find("registered 1003"), std::string::npos) << journey;
}

TEST_F(SippRegistrar, RegistrationsSurviveARestart) {
  auto r = sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_EQ(registrations().size(), 1u);
  ASSERT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
  start_daemon();
  auto list = registrations();
  ASSERT_EQ(list.size(), 1u) << list.dump(2) << daemon_->log();
  EXPECT_EQ(list[0]["aor"], "sip:1001@127.0.0.1");
  EXPECT_GT(list[0]["expires_in_s"].get<int>(), 3500);
}

}  // namespace
}  // namespace ve::test
