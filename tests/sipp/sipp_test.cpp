// The real voiceedged's registrar driven by sipp over loopback, UDP and TCP: digest registration,
// refresh, unregister, wrong password (403), too-brief expiry (423), a Cisco 8851-shaped REGISTER,
// and registrations surviving a daemon restart. Results are read back with the real voiceedgectl.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/sipp.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

// Three phones with digest credentials; expiry between 60 s and 7200 s.
SiteFile registrar_site() {
  return {.name = "sipp-test",
          .sip = "  realm: voiceedge-test\n  default_expires_s: 3600\n  min_expires_s: 60\n  max_expires_s: 7200\n",
          .phones = R"(  - mac: "00:11:22:33:44:55"
    lines:
      - { extension: "1001", auth_user: "1001", password: "s3cret" }
  - mac: "9c:57:ad:12:a4:e0"
    model: CP-8851
    lines:
      - { extension: "1003", auth_user: "1003", password: "pw8851" }
  - mac: "00:11:22:33:20:01"
    model: CP-7841
    lines:
      - { extension: "2001", auth_user: "2001", password: "bs2001" }
)"};
}

class SippRegistrar : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(sh("command -v sipp").exit_code, 0) << "sipp (package sip-tester) is required";
    daemon_ = std::make_unique<Daemon>(registrar_site().yaml());
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
                 const std::string& password, int expires = 600, std::uint16_t local_port = 0,
                 const std::string& local_ip = "127.0.0.1", std::vector<std::string> extra = {},
                 int recv_timeout_ms = 5000) {
    const int port = transport == "t1" ? tcp_port_ : udp_port_;
    if (local_port == 0) local_port = free_port(transport == "t1" ? SOCK_STREAM : SOCK_DGRAM, local_ip);
    const auto errors = daemon_->dir() / ("sipp-" + scenario + ".err");
    SippCommand phone{
        .remote = "127.0.0.1:" + std::to_string(port),
        .scenario = std::string(VE_SIPP_SCENARIOS) + "/" + scenario,
        .transport = transport,
        .local_ip = local_ip,
        .local_port = std::to_string(local_port),
        .user = user,
        .password = password,
        .more = {"-key", "expires", std::to_string(expires), "-timeout", "20s", "-timeout_error", "-recv_timeout",
                 std::to_string(recv_timeout_ms), "-trace_err", "-error_file", errors.string()}};
    phone.more.insert(phone.more.end(), extra.begin(), extra.end());
    auto r = run(phone.argv(), std::chrono::seconds(40));
    r.err += read_file(errors);
    return r;
  }

  std::unique_ptr<Daemon> daemon_;
  int udp_port_ = 0;
  int tcp_port_ = 0;
};

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

TEST_F(SippRegistrar, Rfc4475TortureMessagesGetTheRfcAnswersOverUdpAndTcp) {
  // 505 for SIP/7.0, 416 for an unknown scheme, 401 for an unknown Authorization scheme, 400 for
  // repeated single headers, conflicting Content-Lengths and a malformed INVITE.
  for (const std::string transport : {"u1", "t1"}) {
    auto r = sipp("rfc4475.xml", transport, "1001", "s3cret");
    ASSERT_EQ(r.exit_code, 0) << transport << ": " << describe(r) << daemon_->log();
  }
}

TEST_F(SippRegistrar, UnknownUserIsAnsweredLikeAKnownOne) {
  // 401 then 403, as for a known line with a wrong password (today: 404 at once).
  auto r = sipp("wrong_password.xml", "u1", "7777", "anything");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
}

// The phone's last Authorization header, from sipp's message trace.
std::string last_authorization(const std::filesystem::path& trace) {
  const auto text = read_file(trace);
  const auto at = text.rfind("Authorization: ");
  if (at == std::string::npos) return {};
  const auto end = text.find_first_of("\r\n", at);
  return text.substr(at + 15, end - at - 15);
}

TEST_F(SippRegistrar, CapturedAuthorizationReplayedFromAnotherAddressIsChallenged) {
  const auto trace = daemon_->dir() / "phone-messages.log";
  auto phone = sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600, 0, "127.0.0.1",
                    {"-trace_msg", "-message_file", trace.string()});
  ASSERT_EQ(phone.exit_code, 0) << describe(phone);
  const auto captured = last_authorization(trace);
  ASSERT_NE(captured.find("Digest"), std::string::npos) << read_file(trace);
  // Another host on the VLAN (127.0.0.2) sends it with its own Call-ID and Contact.
  auto replay = sipp("replay.xml", "u1", "1001", "", 3600, 0, "127.0.0.2", {"-key", "replay_auth", captured});
  EXPECT_EQ(replay.exit_code, 0) << "the replay was not challenged: " << describe(replay);
  // So does the phone's own address, with the same nonce count.
  auto again = sipp("replay.xml", "u1", "1001", "", 3600, 0, "127.0.0.1", {"-key", "replay_auth", captured});
  EXPECT_EQ(again.exit_code, 0) << describe(again);
  auto list = registrations();
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["source"].get<std::string>().rfind("127.0.0.1:", 0), 0u) << list.dump(2);
  EXPECT_GE(registrations_json()["counters"]["auth_replays"].get<int>(), 2);
}

TEST_F(SippRegistrar, PasswordGuessesBlockTheGuesserButNotThePhone) {
  ASSERT_EQ(sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600).exit_code, 0);
  for (int i = 0; i < 5; ++i) {
    auto r = sipp("wrong_password.xml", "u1", "1001", "guess" + std::to_string(i), 600, 0, "127.0.0.2");
    ASSERT_EQ(r.exit_code, 0) << i << ": " << describe(r);
  }
  // Blocked: not even a challenge for the guesser ...
  auto blocked = sipp("challenge_only.xml", "u1", "1001", "", 600, 0, "127.0.0.2", {}, 1500);
  EXPECT_NE(blocked.exit_code, 0) << describe(blocked);
  // ... while the phone, from its own address, registers again.
  auto phone = sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600);
  EXPECT_EQ(phone.exit_code, 0) << describe(phone);
  const auto counters = registrations_json()["counters"];
  EXPECT_GE(counters["auth_blocks"].get<int>(), 1) << counters.dump();
  EXPECT_GE(counters["auth_blocked"].get<int>(), 1) << counters.dump();
  EXPECT_GE(counters["auth_failures"].get<int>(), 5) << counters.dump();
  // No log line per guess above debug (the test daemon logs at debug, which names each one):
  // at the default level the flood is summarised once per interval.
  const auto log = daemon_->log();
  std::istringstream in(log);
  std::size_t per_guess = 0, summaries = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" debug ") != std::string::npos) continue;
    if (line.find("wrong password") != std::string::npos) ++per_guess;
    if (line.find("digest: ") != std::string::npos && line.find(" failed, ") != std::string::npos) ++summaries;
  }
  EXPECT_EQ(per_guess, 0u) << log;
  EXPECT_GE(summaries, 1u) << log;
}

TEST_F(SippRegistrar, GarbageStateFileWhileStoppedIsSetAside) {
  ASSERT_EQ(sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600).exit_code, 0);
  ASSERT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
  const auto db = daemon_->dir() / "state" / "sip-registrations.sqlite";
  ASSERT_TRUE(std::filesystem::exists(db));
  { std::ofstream(db, std::ios::binary | std::ios::trunc) << std::string(8192, 'x') << "not a database"; }
  start_daemon();  // asserts the registrar runs (no error)
  auto set_aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(db.parent_path())) {
    if (e.path().filename().string().rfind("sip-registrations.sqlite.corrupt-", 0) == 0) ++set_aside;
  }
  EXPECT_EQ(set_aside, 1) << daemon_->log();
  const auto log = daemon_->log();
  EXPECT_NE(log.find("is not a usable database"), std::string::npos) << log;
  EXPECT_TRUE(registrations().empty());
  EXPECT_EQ(sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600).exit_code, 0) << daemon_->log();
  EXPECT_EQ(registrations().size(), 1u);
}

TEST_F(SippRegistrar, StateFileDamagedWhileRunningLosesNoBinding) {
  ASSERT_EQ(sipp("register_refresh.xml", "u1", "1001", "s3cret", 3600).exit_code, 0);
  const auto db = daemon_->dir() / "state" / "sip-registrations.sqlite";
  { std::ofstream(db, std::ios::binary | std::ios::trunc) << std::string(8192, '\x07'); }
  const auto aside = [&] {
    for (const auto& e : std::filesystem::directory_iterator(db.parent_path())) {
      if (e.path().filename().string().rfind("sip-registrations.sqlite.corrupt-", 0) == 0) return true;
    }
    return false;
  };
  EXPECT_TRUE(eventually(aside, std::chrono::seconds(5))) << daemon_->log();
  EXPECT_EQ(registrations().size(), 1u);
  ASSERT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
  start_daemon();
  auto list = registrations();
  ASSERT_EQ(list.size(), 1u) << daemon_->log();
  EXPECT_EQ(list[0]["aor"], "sip:1001@127.0.0.1");
}

TEST_F(SippRegistrar, UdpRegistrationNamesTheAddressThePhoneUsed) {
  // The daemon listens on 0.0.0.0 (below); the phone sends to 127.0.0.3: that is what Device
  // Status must say, and the answer must come from there.
  auto site = registrar_site();
  site.sip_listen = R"(["udp:0.0.0.0:0", "tcp:127.0.0.1:0"])";
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  daemon_ = std::make_unique<Daemon>(site.yaml());
  start_daemon();
  const std::uint16_t local = free_port(SOCK_DGRAM);
  const SippCommand phone{
      .remote = "127.0.0.3:" + std::to_string(udp_port_),
      .scenario = std::string(VE_SIPP_SCENARIOS) + "/register_refresh.xml",
      .local_port = std::to_string(local),
      .user = "1001",
      .password = "s3cret",
      .more = {"-key", "expires", "600", "-timeout", "20s", "-timeout_error", "-recv_timeout", "5000"}};
  auto r = run(phone.argv(), std::chrono::seconds(40));
  ASSERT_EQ(r.exit_code, 0) << describe(r) << daemon_->log();
  const auto journey = daemon_->ctl_json({"show", "journey", "00:11:22:33:44:55"});
  EXPECT_EQ(journey["phone"].value("registration", ""), "Registered with 127.0.0.3") << journey.dump(2);
  EXPECT_EQ(journey.dump().find("0.0.0.0"), std::string::npos) << journey.dump(2);
}

// baresip (a real non-Cisco softphone) on line 2001: the phone that owns 2001 in the site file
// shows registered, and no SEP<random> phantom appears from its instance UUID.
TEST_F(SippRegistrar, BaresipOnALineIsTheOwningPhoneNotAPhantom) {
  if (sh("command -v baresip").exit_code != 0) GTEST_FAIL() << "baresip is required (scripts/deps)";
  const auto conf = daemon_->dir() / "baresip";
  std::filesystem::create_directories(conf);
  const auto sip_port = free_port(SOCK_DGRAM);
  {
    std::ofstream(conf / "config") << "sip_listen\t\t127.0.0.1:" << sip_port << "\n"
                                   << "module_path\t\t/usr/lib/baresip/modules\n"
                                   << "module\t\t\tuuid.so\n"
                                   << "module\t\t\taccount.so\n"
                                   << "module\t\t\tg711.so\n"
                                   << "audio_player\t\tnone\naudio_source\t\tnone\naudio_alert\t\tnone\n";
    // sipnat=outbound makes baresip send +sip.instance with its random UUID (RFC 5626).
    std::ofstream(conf / "accounts") << "<sip:2001@127.0.0.1:" << udp_port_
                                     << ";transport=udp>;auth_pass=bs2001;regint=600;sipnat=outbound;"
                                        "outbound=\"sip:127.0.0.1:"
                                     << udp_port_ << ";transport=udp\"\n";
    std::ofstream(conf / "uuid") << "6f2f4b7e-3c1d-4e2a-9b8c-1a2b3c4d5e6f";  // read as is: no newline
  }
  Child baresip({"baresip", "-f", conf.string(), "-s", "-t", "30"}, daemon_->dir() / "baresip.log");
  const bool registered = eventually(
      [&] {
        for (const auto& b : registrations())
          if (b["user"] == "2001") return true;
        return false;
      },
      std::chrono::seconds(15));
  ASSERT_TRUE(registered) << read_file(daemon_->dir() / "baresip.log") << daemon_->log();
  const auto reg = [&] {
    for (const auto& b : registrations())
      if (b["user"] == "2001") return b;
    return nlohmann::json();
  }();
  EXPECT_EQ(reg["mac"], "00:11:22:33:20:01") << reg.dump(2);
  EXPECT_NE(reg["user_agent"].get<std::string>().find("baresip"), std::string::npos) << reg.dump(2);
  const auto phones = daemon_->ctl_json({"show", "phones"});
  bool owner_registered = false;
  for (const auto& p : phones) {
    const auto name = p.value("name", "");
    if (p.value("mac", "") == "00:11:22:33:20:01") owner_registered = p.value("registered", false);
    EXPECT_TRUE(name != "SEP1A2B3C4D5E6F" && p.value("mac", "") != "1a:2b:3c:4d:5e:6f") << phones.dump(2);
  }
  EXPECT_TRUE(owner_registered) << phones.dump(2) << read_file(daemon_->dir() / "baresip.log");
  const auto trace = read_file(daemon_->dir() / "baresip.log");
  EXPECT_NE(trace.find("+sip.instance"), std::string::npos) << "baresip sent no instance: the test proves nothing\n"
                                                            << trace;
}

// Three network namespaces: the box (voiceedged on 0.0.0.0:5060), the phone (10.231.1.2) and an
// attacker on another link (10.231.2.2) that has sniffed the phone's REGISTER and replays its
// Authorization to the same Request-URI with its own Call-ID and Contact.
TEST(SippNetns, CapturedAuthorizationReplayedFromAnotherHostDoesNotRegister) {
  if (!is_root()) GTEST_SKIP() << "needs root for network namespaces";
  ASSERT_EQ(sh("command -v sipp").exit_code, 0) << "sipp (package sip-tester) is required";
  Namespace box("ve-sipsec-box"), phone("ve-sipsec-ph"), attacker("ve-sipsec-at");
  VethPair phone_link{{&box, "vssp0", "10.231.1.1/24"}, {&phone, "vssp1", "10.231.1.2/24"}};
  VethPair attacker_link{{&box, "vssa0", "10.231.2.1/24"}, {&attacker, "vssa1", "10.231.2.2/24"}};
  ASSERT_TRUE(phone_link.ok()) << phone_link.error();
  ASSERT_TRUE(attacker_link.ok()) << attacker_link.error();
  const auto route = attacker.ip({"route", "add", "default", "via", "10.231.2.1"});
  ASSERT_EQ(route.exit_code, 0) << route.err;
  auto site = registrar_site();
  site.sip_listen = R"(["udp:0.0.0.0:5060"])";
  Daemon daemon(site.yaml(), box.exec());
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const auto sipp_in = [&](const Namespace& netns, const std::string& local_ip, const std::string& scenario,
                           std::vector<std::string> extra) {
    SippCommand sipp{.remote = "10.231.1.1:5060",
                     .scenario = std::string(VE_SIPP_SCENARIOS) + "/" + scenario,
                     .local_ip = local_ip,
                     .local_port = "5070",
                     .user = "1001",
                     .password = "s3cret",
                     .more = {"-key", "expires", "3600", "-timeout", "20s", "-timeout_error", "-recv_timeout", "5000"}};
    sipp.more.insert(sipp.more.end(), extra.begin(), extra.end());
    return netns.run(sipp.argv(), std::chrono::seconds(40));
  };
  const auto trace = daemon.dir() / "netns-phone-messages.log";
  auto reg = sipp_in(phone, "10.231.1.2", "register_refresh.xml", {"-trace_msg", "-message_file", trace.string()});
  ASSERT_EQ(reg.exit_code, 0) << describe(reg) << daemon.log();
  const auto captured = last_authorization(trace);
  ASSERT_NE(captured.find("uri=\"sip:10.231.1.1:5060\""), std::string::npos) << captured;
  auto replay = sipp_in(attacker, "10.231.2.2", "replay.xml", {"-key", "replay_auth", captured});
  EXPECT_EQ(replay.exit_code, 0) << "the replay was not challenged: " << describe(replay) << daemon.log();
  const auto list = daemon.ctl_json({"show", "sip", "registrations"})["registrations"];
  ASSERT_EQ(list.size(), 1u) << list.dump(2);
  EXPECT_EQ(list[0]["source"], "10.231.1.2:5070") << list.dump(2);
  // And the phone's Device Status names the address it registered with, not 0.0.0.0.
  const auto journey = daemon.ctl_json({"show", "journey", "00:11:22:33:44:55"});
  EXPECT_EQ(journey["phone"].value("registration", ""), "Registered with 10.231.1.1") << journey.dump(2);
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << daemon.log();
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
