// The registrar logic driven directly with messages (no sockets), a fake clock and a recording sink.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <sqlite3.h>

#include "sip/digest.hpp"
#include "sip/location_store.hpp"
#include "sip/registrar.hpp"
#include "sip/tests/recording_wire.hpp"

namespace ve::sip {
namespace {

using namespace std::chrono_literals;

using test::RecordingSink;

config::SiteConfigPtr site() {
  auto c = std::make_shared<config::SiteConfig>();
  c->sip.realm = "branch-01";
  c->sip.default_expires_s = 3600;
  c->sip.min_expires_s = 60;
  c->sip.max_expires_s = 7200;
  config::Phone front;
  front.mac = *MacAddress::parse("00:11:22:33:44:55");
  front.lines.push_back(config::Line{1, "1001", "Front desk", "1001", config::Secret("s3cret")});
  config::Phone cisco;
  cisco.mac = *MacAddress::parse("9c:57:ad:12:a4:e0");
  cisco.lines.push_back(config::Line{1, "1003", "Lab", "auth1003", config::Secret("pw1003")});
  c->phones = {front, cisco};
  return c;
}

struct Request {
  std::string method = "REGISTER";
  std::string user = "1001";
  std::string contact = "<sip:1001@10.0.0.5:5060>";
  std::string call_id = "call-1@10.0.0.5";
  int cseq = 1;
  std::optional<int> expires = 3600;
  std::string authorization;
  std::string extra;
  std::string via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-1;rport";

  std::string text() const {
    std::string s = fmt::format(
        "{} sip:branch-01 SIP/2.0\r\nVia: {}\r\nFrom: <sip:{}@branch-01>;tag=ft1\r\nTo: <sip:{}@branch-01>\r\n"
        "Call-ID: {}\r\nCSeq: {} {}\r\nMax-Forwards: 70\r\n",
        method, via, user, user, call_id, cseq, method);
    if (!contact.empty()) s += "Contact: " + contact + "\r\n";
    if (expires) s += fmt::format("Expires: {}\r\n", *expires);
    if (!authorization.empty()) s += "Authorization: " + authorization + "\r\n";
    s += extra;
    s += "Content-Length: 0\r\n\r\n";
    return s;
  }
};

class RegistrarTest : public ::testing::Test {
 protected:
  RegistrarTest() : registrar_(site(), store_, sink_, ServerOptions{}, [this] { return now_; }) {}

  Message reply(const Request& r, Source src = udp_source()) {
    last_ = registrar_.handle(r.text(), src);
    auto m = parse_message(last_.bytes);
    EXPECT_TRUE(m) << last_.bytes;
    return m ? *m : Message{};
  }

  static Source udp_source() {
    Source s;
    s.transport = Transport::Udp;
    s.ip = "10.0.0.5";
    s.port = 5060;
    s.local = "10.0.0.1:5060";
    return s;
  }

  // Answers the challenge in `challenge` for request `r` with `password`.
  static std::string authorize(const Message& challenge, const Request& r, const std::string& username,
                               const std::string& password, const std::string& realm = "branch-01") {
    const auto www = std::string(challenge.value(HeaderType::WwwAuthenticate));
    const auto n0 = www.find("nonce=\"") + 7;
    const auto nonce = www.substr(n0, www.find('"', n0) - n0);
    DigestCredentials c;
    c.username = username;
    c.realm = realm;
    c.nonce = nonce;
    c.uri = "sip:branch-01";
    c.qop = "auth";
    c.nc = "00000001";
    c.cnonce = "abcdef";
    const auto response = digest_response(c, password, r.method);
    return fmt::format(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"sip:branch-01\", response=\"{}\", "
        "algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000001",
        username, realm, nonce, response);
  }

  // Full challenge + authorized REGISTER; returns the final response.
  Message register_with_auth(Request r, const std::string& username, const std::string& password,
                             Source src = udp_source()) {
    r.authorization.clear();
    auto challenge = reply(r, src);
    EXPECT_EQ(challenge.status, 401);
    r.cseq += 1;
    r.authorization = authorize(challenge, r, username, password);
    return reply(r, src);
  }

  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::time_point(1'700'000'000s);
  RecordingSink sink_;
  LocationStore store_;
  Registrar registrar_;
  Reply last_;
};

TEST(SipDigest, MatchesRfc2617Example) {
  DigestCredentials c;
  c.username = "Mufasa";
  c.realm = "testrealm@host.com";
  c.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
  c.uri = "/dir/index.html";
  c.qop = "auth";
  c.nc = "00000001";
  c.cnonce = "0a4f113b";
  EXPECT_EQ(digest_response(c, "Circle Of Life", "GET"), "6629fae49393a05397450978507c4ef1");
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
}

TEST(SipDigest, NoncesExpireAndForgeriesFail) {
  NonceSource source("key");
  const auto t = std::chrono::system_clock::time_point(1'700'000'000s);
  const auto n = source.make(t);
  EXPECT_EQ(source.check(n, t + 10s, 300s), NonceSource::Check::Valid);
  EXPECT_EQ(source.check(n, t + 301s, 300s), NonceSource::Check::Stale);
  EXPECT_EQ(NonceSource("other").check(n, t, 300s), NonceSource::Check::Forged);
  std::string tampered = n;
  tampered[3] = tampered[3] == '0' ? '1' : '0';
  EXPECT_EQ(source.check(tampered, t, 300s), NonceSource::Check::Forged);
  EXPECT_EQ(source.check("short", t, 300s), NonceSource::Check::Forged);
}

TEST_F(RegistrarTest, ChallengesThenRegistersWithDigest) {
  Request r;
  auto challenge = reply(r);
  ASSERT_EQ(challenge.status, 401);
  EXPECT_NE(challenge.value(HeaderType::WwwAuthenticate).find("realm=\"branch-01\""), std::string_view::npos);
  EXPECT_NE(challenge.value(HeaderType::WwwAuthenticate).find("qop=\"auth\""), std::string_view::npos);
  EXPECT_EQ(store_.size(), 0u);

  r.cseq = 2;
  r.authorization = authorize(challenge, r, "1001", "s3cret");
  auto ok = reply(r);
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(ok.value(HeaderType::Contact), "<sip:1001@10.0.0.5:5060>;expires=3600");
  EXPECT_EQ(ok.value(HeaderType::CSeq), "2 REGISTER");
  EXPECT_EQ(ok.value(HeaderType::CallId), "call-1@10.0.0.5");
  EXPECT_FALSE(parse_name_addr(ok.value(HeaderType::To))->tag().empty());
  EXPECT_EQ(ok.value(HeaderType::ContentLength), "0");
  // rport filled, received added (RFC 3581); the reply goes to the source port.
  EXPECT_EQ(ok.value(HeaderType::Via), "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-1;rport=5060;received=10.0.0.5");
  EXPECT_EQ(last_.port, 5060);

  auto regs = registrar_.registrations();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].aor, "sip:1001@branch-01");
  EXPECT_EQ(regs[0].contact, "sip:1001@10.0.0.5:5060");
  EXPECT_EQ(regs[0].source, "10.0.0.5:5060");
  EXPECT_EQ(regs[0].expires_in_s, 3600);
  ASSERT_EQ(sink_.events.size(), 1u);
  EXPECT_EQ(sink_.events[0].step, Step::Register);
  EXPECT_EQ(sink_.events[0].outcome, Outcome::Ok);
  EXPECT_EQ(sink_.events[0].mac, *MacAddress::parse("00:11:22:33:44:55"));  // the line's phone
}

TEST_F(RegistrarTest, WrongPasswordIsForbiddenAndReported) {
  auto res = register_with_auth(Request{}, "1001", "wrong");
  EXPECT_EQ(res.status, 403);
  EXPECT_EQ(store_.size(), 0u);
  ASSERT_EQ(sink_.events.size(), 1u);
  // Not authenticated and no lease names the source: unverified.
  EXPECT_EQ(sink_.events[0].outcome, Outcome::Info);
  EXPECT_FALSE(sink_.events[0].verified);
  EXPECT_EQ(sink_.events[0].detail, "403 wrong password for 1001 (unverified, from 10.0.0.5)");
  EXPECT_EQ(registrar_.counters().auth_failures, 1u);
}

TEST_F(RegistrarTest, UsesTheLinesAuthUserNotTheExtension) {
  Request r;
  r.user = "1003";
  EXPECT_EQ(register_with_auth(r, "1003", "pw1003").status, 403);
  r.call_id = "other";
  EXPECT_EQ(register_with_auth(r, "auth1003", "pw1003").status, 200);
}

TEST_F(RegistrarTest, UnknownUsersAreAnsweredLikeKnownOnes) {
  // Line enumeration: an unknown user must look exactly like a known one with a wrong password.
  Request unknown;
  unknown.user = "1009";
  unknown.contact = "<sip:x@10.0.0.9>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-aabbccddeeff>\"";
  Request known;
  const auto a = reply(unknown);
  const std::string a_reason(a.reason);
  const auto a_www = std::string(a.value(HeaderType::WwwAuthenticate));
  const auto b = reply(known);
  EXPECT_EQ(a.status, 401);
  EXPECT_EQ(b.status, 401);
  EXPECT_EQ(a_reason, b.reason);
  // Same challenge but for the nonce.
  EXPECT_EQ(a_www.substr(0, a_www.find("nonce=")),
            std::string(b.value(HeaderType::WwwAuthenticate)).substr(0, a_www.find("nonce=")));
  EXPECT_EQ(register_with_auth(unknown, "1009", "guess").status, 403);
  EXPECT_EQ(register_with_auth(known, "1001", "guess").status, 403);
  // Nothing names the MAC the unknown request claimed.
  for (const auto& e : sink_.events) EXPECT_NE(e.mac, *MacAddress::parse("aa:bb:cc:dd:ee:ff"));
}

TEST_F(RegistrarTest, ReplayedAuthorizationFromAnotherHostDoesNotRegister) {
  Request r;
  auto challenge = reply(r);
  r.cseq = 2;
  r.authorization = authorize(challenge, r, "1001", "s3cret");
  Request replay = r;  // what an attacker captured, sent with its own Call-ID and Contact
  ASSERT_EQ(reply(r).status, 200);
  replay.call_id = "attacker-call";
  replay.contact = "<sip:1001@10.0.0.66:5060>";
  Source attacker = udp_source();
  attacker.ip = "10.0.0.66";
  auto res = reply(replay, attacker);
  EXPECT_EQ(res.status, 401);
  EXPECT_NE(res.value(HeaderType::WwwAuthenticate).find("stale=true"), std::string_view::npos);
  // Even if it arrives before the phone's own request (or spoofs the phone's address), the nonce
  // was bound to the phone's address and its nc is used up.
  Request first = r;
  first.cseq = 5;
  auto c2 = reply(first);
  first.cseq = 6;
  first.authorization = authorize(c2, first, "1001", "s3cret");
  Request early = first;
  early.call_id = "attacker-2";
  early.contact = "<sip:1001@10.0.0.66:5060>";
  EXPECT_EQ(reply(early, attacker).status, 401);
  ASSERT_EQ(reply(first).status, 200);
  early.contact = "<sip:1001@10.0.0.67:5060>";
  EXPECT_EQ(reply(early).status, 401);  // same nonce, same nc from the phone's own address
  auto regs = registrar_.registrations();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].contact, "sip:1001@10.0.0.5:5060");
  EXPECT_GE(registrar_.counters().auth_replays, 2u);
}

TEST_F(RegistrarTest, NonceCountMustIncreaseAndNoncesAreShortLived) {
  Request r;
  auto challenge = reply(r);
  // (A reply's views point into the registrar's last answer: copied before the next request.)
  const auto www = std::string(challenge.value(HeaderType::WwwAuthenticate));
  r.cseq = 2;
  r.authorization = authorize(challenge, r, "1001", "s3cret");
  ASSERT_EQ(reply(r).status, 200);
  // The same nonce with the next nc is a legitimate reuse (RFC 7616 3.4).
  r.cseq = 3;
  std::string next = r.authorization;
  const auto n0 = www.find("nonce=\"") + 7;
  DigestCredentials c;
  c.username = "1001";
  c.realm = "branch-01";
  const std::string nonce = www.substr(n0, www.find('"', n0) - n0);
  c.nonce = nonce;
  c.uri = "sip:branch-01";
  c.qop = "auth";
  c.nc = "00000002";
  c.cnonce = "abcdef";
  r.authorization = fmt::format(
      "Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:branch-01\", response=\"{}\", "
      "algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000002",
      nonce, digest_response(c, "s3cret", "REGISTER"));
  EXPECT_EQ(reply(r).status, 200);
  r.cseq = 4;
  EXPECT_EQ(reply(r).status, 401);  // nc 2 again
  // 31 s later the nonce is gone: stale=true.
  r.cseq = 5;
  auto fresh = reply(r);
  now_ += 31s;
  r.cseq = 6;
  r.authorization = authorize(fresh, r, "1001", "s3cret");
  auto res = reply(r);
  EXPECT_EQ(res.status, 401);
  EXPECT_NE(res.value(HeaderType::WwwAuthenticate).find("stale=true"), std::string_view::npos);
}

TEST_F(RegistrarTest, DigestUriMustBeTheRequestUri) {
  Request r;
  auto challenge = reply(r);
  const auto www = std::string(challenge.value(HeaderType::WwwAuthenticate));
  const auto n0 = www.find("nonce=\"") + 7;
  const std::string nonce = www.substr(n0, www.find('"', n0) - n0);
  DigestCredentials c;
  c.username = "1001";
  c.realm = "branch-01";
  c.nonce = nonce;
  c.uri = "sip:elsewhere";
  c.qop = "auth";
  c.nc = "00000001";
  c.cnonce = "abcdef";
  r.cseq = 2;
  r.authorization = fmt::format(
      "Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:elsewhere\", response=\"{}\", "
      "algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000001",
      nonce, digest_response(c, "s3cret", "REGISTER"));
  EXPECT_EQ(reply(r).status, 400);
  EXPECT_EQ(store_.size(), 0u);
}

TEST_F(RegistrarTest, PasswordGuessingBlocksTheSourceAndTheUser) {
  // The phone registers first from its address: a block of its user name must not lock it out.
  ASSERT_EQ(register_with_auth(Request{}, "1001", "s3cret").status, 200);
  Source attacker = udp_source();
  attacker.ip = "10.0.0.66";
  Request guess;
  guess.call_id = "guess";
  for (int i = 0; i < 5; ++i) {
    guess.cseq = 10 + 2 * i;
    EXPECT_EQ(register_with_auth(guess, "1001", fmt::format("guess{}", i), attacker).status, 403);
  }
  // Blocked: nothing is answered, not even a challenge.
  guess.cseq = 40;
  guess.authorization.clear();
  EXPECT_TRUE(registrar_.handle(guess.text(), attacker).bytes.empty());
  EXPECT_GE(registrar_.counters().auth_blocked, 1u);
  EXPECT_EQ(registrar_.counters().auth_blocks, 2u);  // the source and the user name
  // A second host guessing the same user is refused too (after its challenge) ...
  Source other = udp_source();
  other.ip = "10.0.0.77";
  auto c = reply(guess, other);
  ASSERT_EQ(c.status, 401);
  guess.cseq = 41;
  guess.authorization = authorize(c, guess, "1001", "s3cret");
  EXPECT_TRUE(registrar_.handle(guess.text(), other).bytes.empty());
  // ... while the phone, from the address it registered from, still refreshes.
  Request refresh;
  refresh.cseq = 50;
  EXPECT_EQ(register_with_auth(refresh, "1001", "s3cret").status, 200);
  // One summary line, then silence until the next interval.
  now_ += 31s;
  // Blocks end; the second offence of the same source lasts twice as long.
  guess.cseq = 60;
  guess.authorization.clear();
  EXPECT_EQ(reply(guess, attacker).status, 401);
  for (int i = 0; i < 5; ++i) {
    guess.cseq = 70 + 2 * i;
    register_with_auth(guess, "1001", "nope", attacker);
  }
  now_ += 31s;
  guess.cseq = 90;
  guess.authorization.clear();
  EXPECT_TRUE(registrar_.handle(guess.text(), attacker).bytes.empty());
  now_ += 30s;
  EXPECT_EQ(reply(guess, attacker).status, 401);
}

TEST(SipAuthenticator, SummarizesOncePerIntervalAndBoundsItsTables) {
  AuthPolicy policy;
  policy.max_nonces = 64;
  policy.max_nonces_per_source = 4;
  Authenticator auth("r", policy);
  const auto t = std::chrono::system_clock::time_point(1'700'000'000s);
  EXPECT_FALSE(auth.summary(t));  // nothing happened
  for (int i = 0; i < 1000; ++i) auth.challenge(fmt::format("10.0.{}.{}", i / 250, i % 250), false, t);
  EXPECT_LE(auth.nonces(), 64u);
  for (int i = 0; i < 100; ++i) auth.challenge("10.9.9.9", false, t);
  EXPECT_LE(auth.nonces(), 64u);
  const auto lookup = [](std::string_view) -> std::optional<std::string_view> { return std::string_view("pw"); };
  for (int i = 0; i < 3; ++i) {
    const auto www = auth.challenge("10.1.1.1", false, t);
    const auto n0 = www.find("nonce=\"") + 7;
    const auto nonce = www.substr(n0, www.find('"', n0) - n0);
    const auto cred = fmt::format(
        "Digest username=\"u\", realm=\"r\", nonce=\"{}\", uri=\"sip:r\", response=\"00\", qop=auth, nc=1, "
        "cnonce=\"x\"",
        nonce);
    AuthRequest req{{cred}, "REGISTER", "sip:r", "10.1.1.1"};
    EXPECT_EQ(auth.verify(req, lookup, t).outcome, AuthOutcome::WrongPassword);
  }
  auto line = auth.summary(t + 1s);
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("3 failed"), std::string::npos) << *line;
  EXPECT_FALSE(auth.summary(t + 2s));
}

TEST_F(RegistrarTest, UnknownAuthorizationSchemeIsChallenged) {
  Request r;
  r.authorization = "NoOneKnowsThisScheme opaque-data=here";
  EXPECT_EQ(reply(r).status, 401);
}

TEST_F(RegistrarTest, UnauthenticatedRequestsNameNoPhoneExceptAsUnverified) {
  // A victim's MAC in +sip.instance of an unknown line: no event at all.
  Request spoof;
  spoof.user = "7777";
  spoof.contact = "<sip:x@10.0.0.66>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-001122334455>\"";
  Source attacker = udp_source();
  attacker.ip = "10.0.0.66";
  reply(spoof, attacker);
  EXPECT_EQ(register_with_auth(spoof, "7777", "x", attacker).status, 403);
  EXPECT_TRUE(sink_.events.empty());
  // A wrong password for a real line: the line's phone hears of it, unverified, without an IP.
  Request wrong;
  wrong.contact = "<sip:x@10.0.0.66>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>\"";
  wrong.call_id = "w";
  EXPECT_EQ(register_with_auth(wrong, "1001", "x", attacker).status, 403);
  ASSERT_EQ(sink_.events.size(), 1u);
  EXPECT_EQ(sink_.events[0].mac, *MacAddress::parse("00:11:22:33:44:55"));
  EXPECT_FALSE(sink_.events[0].verified);
  EXPECT_EQ(sink_.events[0].outcome, Outcome::Info);
  EXPECT_TRUE(sink_.events[0].ip.empty());
  EXPECT_EQ(registrar_.counters().unverified_events, 1u);
}

TEST(SipRegistrarLease, WrongPasswordFromTheLeasedAddressIsTheLinesPhoneFailing) {
  RecordingSink sink;
  LocationStore store;
  ServerOptions options;
  options.lease_mac = [](const std::string& ip) -> std::optional<MacAddress> {
    if (ip == "10.0.0.5") return *MacAddress::parse("00:11:22:33:44:55");
    return std::nullopt;
  };
  auto now = std::chrono::system_clock::time_point(1'700'000'000s);
  Registrar registrar(site(), store, sink, options, [&] { return now; });
  Request r;
  Source src;
  src.ip = "10.0.0.5";
  src.port = 5060;
  src.local = "10.0.0.1:5060";
  auto challenge = parse_message(registrar.handle(r.text(), src).bytes);
  ASSERT_TRUE(challenge);
  const auto www = std::string(challenge->value(HeaderType::WwwAuthenticate));
  const auto n0 = www.find("nonce=\"") + 7;
  r.cseq = 2;
  r.authorization =
      fmt::format("Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:branch-01\", response=\"0\"",
                  www.substr(n0, www.find('"', n0) - n0));
  EXPECT_EQ(parse_message(registrar.handle(r.text(), src).bytes)->status, 403);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_TRUE(sink.events[0].verified);
  EXPECT_EQ(sink.events[0].outcome, Outcome::Failed);
  EXPECT_EQ(sink.events[0].detail, "403 wrong password for 1001");
  EXPECT_EQ(sink.events[0].ip, "10.0.0.5");
}

TEST_F(RegistrarTest, ASoftphoneOnALineIsTheLinesPhoneNotAPhantom) {
  // baresip sends a random instance UUID; its last group parses as a MAC.
  Request r;
  r.contact = "<sip:1001@10.0.0.5:5060>;+sip.instance=\"<urn:uuid:6f2f4b7e-3c1d-4e2a-9b8c-1a2b3c4d5e6f>\"";
  ASSERT_EQ(register_with_auth(r, "1001", "s3cret").status, 200);
  auto regs = registrar_.registrations();
  ASSERT_EQ(regs.size(), 1u);
  ASSERT_TRUE(regs[0].mac);
  EXPECT_EQ(*regs[0].mac, *MacAddress::parse("00:11:22:33:44:55"));
  for (const auto& e : sink_.events) EXPECT_EQ(e.mac, *MacAddress::parse("00:11:22:33:44:55"));
  // A Cisco phone claiming another phone's line with its own MAC and device name: still the
  // line's phone, and the foreign device name is not recorded.
  Request cisco;
  cisco.call_id = "c";
  cisco.contact =
      "<sip:1001@10.0.0.8:5060>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>\";"
      "+u.sip!devicename.ccm.cisco.com=\"SEP9C57AD12A4E0\"";
  ASSERT_EQ(register_with_auth(cisco, "1001", "s3cret").status, 200);
  for (const auto& b : registrar_.registrations()) {
    EXPECT_EQ(*b.mac, *MacAddress::parse("00:11:22:33:44:55"));
    EXPECT_TRUE(b.device_name.empty());
  }
}

TEST(SipRegistrarAutoRegister, InstanceMacCountsWhenAutoRegistrationIsOn) {
  RecordingSink sink;
  LocationStore store;
  auto cfg = std::make_shared<config::SiteConfig>(*site());
  cfg->provisioning.auto_register = true;
  auto now = std::chrono::system_clock::time_point(1'700'000'000s);
  Registrar registrar(cfg, store, sink, ServerOptions{}, [&] { return now; });
  Request r;
  r.contact = "<sip:1001@10.0.0.8:5060>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-aabbccddeeff>\"";
  Source src;
  src.ip = "10.0.0.8";
  src.port = 5060;
  src.local = "10.0.0.1:5060";
  auto challenge = parse_message(registrar.handle(r.text(), src).bytes);
  ASSERT_TRUE(challenge);
  const auto www = std::string(challenge->value(HeaderType::WwwAuthenticate));
  const auto n0 = www.find("nonce=\"") + 7;
  DigestCredentials c;
  c.username = "1001";
  c.realm = "branch-01";
  const std::string nonce = www.substr(n0, www.find('"', n0) - n0);
  c.nonce = nonce;
  c.uri = "sip:branch-01";
  r.cseq = 2;
  r.authorization =
      fmt::format("Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:branch-01\", response=\"{}\"",
                  nonce, digest_response(c, "s3cret", "REGISTER"));
  ASSERT_EQ(parse_message(registrar.handle(r.text(), src).bytes)->status, 200);
  EXPECT_EQ(*registrar.registrations()[0].mac, *MacAddress::parse("aa:bb:cc:dd:ee:ff"));
}

TEST(SipRegistrarBindings, CapPerLineReplacesTheOldestAndUdpAnswersFitTheMtu) {
  RecordingSink sink;
  LocationStore store;
  auto cfg = std::make_shared<config::SiteConfig>(*site());
  auto now = std::chrono::system_clock::time_point(1'700'000'000s);
  auto run = [&](int cap, int count, Transport transport) {
    cfg->sip.max_bindings_per_line = cap;
    LocationStore fresh;
    Registrar registrar(cfg, fresh, sink, ServerOptions{}, [&] { return now; });
    Source src;
    src.transport = transport;
    src.ip = "10.0.0.5";
    src.port = 5060;
    src.local = "10.0.0.1:5060";
    std::string last;
    for (int i = 0; i < count; ++i) {
      now += 1s;
      Request r;
      r.call_id = fmt::format("c{}", i);
      r.contact = fmt::format("<sip:1001-with-a-long-contact-user-part-{}@10.0.0.5:{};transport=udp>", i, 6000 + i);
      auto challenge = parse_message(registrar.handle(r.text(), src).bytes);
      const auto www = std::string(challenge->value(HeaderType::WwwAuthenticate));
      const auto n0 = www.find("nonce=\"") + 7;
      DigestCredentials c;
      c.username = "1001";
      c.realm = "branch-01";
      const std::string nonce = www.substr(n0, www.find('"', n0) - n0);
      c.nonce = nonce;
      c.uri = "sip:branch-01";
      r.cseq = 2;
      r.authorization = fmt::format(
          "Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:branch-01\", response=\"{}\"", nonce,
          digest_response(c, "s3cret", "REGISTER"));
      last = registrar.handle(r.text(), src).bytes;
    }
    return std::make_tuple(registrar.registrations(), last, registrar.counters());
  };
  {
    auto [regs, last, counters] = run(3, 5, Transport::Udp);
    ASSERT_EQ(regs.size(), 3u);
    EXPECT_EQ(counters.bindings_replaced, 2u);
    for (const auto& b : regs) EXPECT_EQ(b.contact.find("part-0@"), std::string::npos) << "the oldest went first";
    EXPECT_NE(last.find("part-4@"), std::string::npos);
  }
  {
    // 40 bindings of ~100 bytes cannot all go in one datagram: the phone's own one always does.
    auto [regs, last, counters] = run(40, 40, Transport::Udp);
    EXPECT_EQ(regs.size(), 40u);
    EXPECT_LE(last.size(), 1300u);
    EXPECT_NE(last.find("part-39@"), std::string::npos);
    EXPECT_GE(counters.udp_contacts_trimmed, 1u);
    auto parsed = parse_message(last);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->status, 200);
  }
  {
    auto [regs, last, counters] = run(40, 40, Transport::Tcp);
    EXPECT_GT(last.size(), 1300u);
    EXPECT_EQ(parse_message(last)->count(HeaderType::Contact), 40u);
  }
}

TEST_F(RegistrarTest, Rfc4475TortureMessagesGetTheRightAnswer) {
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(VE_SIP_RFC4475)) {
    const auto name = entry.path().filename().string();  // <name>.<status>.sip
    const auto first = name.find('.');
    const int expected = std::stoi(name.substr(first + 1, 3));
    const std::string text = [&] {
      std::ifstream in(entry.path(), std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    auto res = registrar_.handle(text, udp_source());
    auto parsed = parse_message(res.bytes);
    ASSERT_TRUE(parsed) << name << ": no answer";
    EXPECT_EQ(parsed->status, expected) << name << ": " << res.bytes;
    ++n;
  }
  EXPECT_GE(n, 20u);
}

TEST_F(RegistrarTest, TooBriefIntervalGets423WithMinExpires) {
  Request r;
  r.expires = 30;
  auto res = register_with_auth(r, "1001", "s3cret");
  EXPECT_EQ(res.status, 423);
  EXPECT_EQ(res.value(HeaderType::MinExpires), "60");
  EXPECT_EQ(store_.size(), 0u);
}

TEST_F(RegistrarTest, CapsExpiryAndPrefersContactParameter) {
  Request r;
  r.expires = 100000;
  auto res = register_with_auth(r, "1001", "s3cret");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.value(HeaderType::Contact), "<sip:1001@10.0.0.5:5060>;expires=7200");
  r.contact = "<sip:1001@10.0.0.5:5060>;expires=120";
  r.cseq = 10;
  res = register_with_auth(r, "1001", "s3cret");
  EXPECT_EQ(res.value(HeaderType::Contact), "<sip:1001@10.0.0.5:5060>;expires=120");
}

TEST_F(RegistrarTest, ExpiresZeroAndStarRemoveBindings) {
  Request r;
  ASSERT_EQ(register_with_auth(r, "1001", "s3cret").status, 200);
  r.contact = "<sip:1001@10.0.0.6:5060>";
  r.cseq = 3;
  ASSERT_EQ(register_with_auth(r, "1001", "s3cret").status, 200);
  EXPECT_EQ(store_.size(), 2u);
  // Refresh shows remaining time of the other binding.
  now_ += 100s;
  r.expires = 0;
  r.cseq = 5;
  auto res = register_with_auth(r, "1001", "s3cret");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.value(HeaderType::Contact), "<sip:1001@10.0.0.5:5060>;expires=3500");
  EXPECT_EQ(store_.size(), 1u);
  r.contact = "*";
  r.cseq = 7;
  res = register_with_auth(r, "1001", "s3cret");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.find(HeaderType::Contact), nullptr);
  EXPECT_EQ(store_.size(), 0u);
  // Contact: * with a non-zero Expires is invalid.
  r.expires = 60;
  r.cseq = 9;
  r.authorization.clear();
  EXPECT_EQ(reply(r).status, 400);
}

TEST_F(RegistrarTest, OutOfOrderCSeqIsRefused) {
  Request r;
  r.cseq = 10;
  ASSERT_EQ(register_with_auth(r, "1001", "s3cret").status, 200);
  r.cseq = 3;
  EXPECT_EQ(register_with_auth(r, "1001", "s3cret").status, 500);
}

TEST_F(RegistrarTest, StaleNonceIsChallengedAgainWithStaleTrue) {
  Request r;
  auto challenge = reply(r);
  now_ += 301s;
  r.cseq = 2;
  r.authorization = authorize(challenge, r, "1001", "s3cret");
  auto res = reply(r);
  EXPECT_EQ(res.status, 401);
  EXPECT_NE(res.value(HeaderType::WwwAuthenticate).find("stale=true"), std::string_view::npos);
}

TEST_F(RegistrarTest, CiscoRegisterRecordsDeviceAndReportsTcpConnect) {
  Request r;
  r.user = "1003";
  r.via = "SIP/2.0/TCP 192.168.110.240:50057;branch=z9hG4bK0259a19a";
  r.contact =
      "<sip:f0ae9f65-9fa6-4a32-84ba-4d40048f79c8@192.168.110.240:50057;transport=tcp>;+sip.instance=\"<urn:uuid:"
      "00000000-0000-0000-0000-9c57ad12a4e0>\";+u.sip!devicename.ccm.cisco.com=\"SEP9C57AD12A4E0\";+u.sip!model.ccm."
      "cisco.com=\"684\"";
  r.extra =
      "User-Agent: Cisco-CP8851/12.1.1\r\nReason: SIP;cause=200;text=\"cisco-alarm:14 Name=SEP9C57AD12A4E0 "
      "ActiveLoad=sip88xx.12-1-1-0001-1 InactiveLoad=sip88xx.11-7-1-17 Last=initialized\"\r\n";
  Source tcp;
  tcp.transport = Transport::Tcp;
  tcp.ip = "192.168.110.240";
  tcp.port = 50057;
  tcp.connection = 7;
  tcp.local = "192.168.20.172:5060";
  auto res = register_with_auth(r, "auth1003", "pw1003", tcp);
  ASSERT_EQ(res.status, 200);
  auto regs = registrar_.registrations();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].device_name, "SEP9C57AD12A4E0");
  EXPECT_EQ(regs[0].model, "684");
  EXPECT_EQ(regs[0].user_agent, "Cisco-CP8851/12.1.1");
  EXPECT_EQ(regs[0].active_load, "sip88xx.12-1-1-0001-1");
  EXPECT_EQ(regs[0].inactive_load, "sip88xx.11-7-1-17");
  EXPECT_EQ(regs[0].reason_name, "SEP9C57AD12A4E0");
  EXPECT_EQ(regs[0].transport, Transport::Tcp);
  ASSERT_TRUE(regs[0].mac);
  EXPECT_EQ(regs[0].mac->to_string(), "9c:57:ad:12:a4:e0");
  // Connect reported once per connection, then the registration.
  ASSERT_EQ(sink_.events.size(), 2u);
  EXPECT_EQ(sink_.events[0].step, Step::CallManagerConnect);
  EXPECT_EQ(sink_.events[0].mac.to_string(), "9c:57:ad:12:a4:e0");
  EXPECT_EQ(sink_.events[1].step, Step::Register);
  EXPECT_EQ(sink_.events[1].outcome, Outcome::Ok);
  // No rport and sent-by equals the source address: Via comes back unchanged.
  EXPECT_EQ(res.value(HeaderType::Via), "SIP/2.0/TCP 192.168.110.240:50057;branch=z9hG4bK0259a19a");

  // A refresh over the same connection is not a new event.
  r.cseq = 20;
  ASSERT_EQ(register_with_auth(r, "auth1003", "pw1003", tcp).status, 200);
  EXPECT_EQ(sink_.events.size(), 2u);
}

TEST_F(RegistrarTest, CiscoKeepAliveGetsBare200WithoutTouchingBindings) {
  Request r;
  r.contact = "<sip:x@10.0.0.5:5060>;expires=0;cisco-keep-alive";
  r.expires.reset();
  auto res = reply(r);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.find(HeaderType::Contact), nullptr);
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_TRUE(sink_.events.empty());
}

TEST_F(RegistrarTest, AnswersWhatCiscoPhonesSendAfterRegistering) {
  Request r;
  r.method = "OPTIONS";
  auto res = reply(r);
  EXPECT_EQ(res.status, 200);
  EXPECT_NE(res.value(HeaderType::Allow).find("REGISTER"), std::string_view::npos);
  r.method = "REFER";
  r.extra = "Content-Type: application/x-cisco-alarm+xml\r\n";
  EXPECT_EQ(reply(r).status, 202);
  r.extra.clear();
  EXPECT_EQ(reply(r).status, 405);
  r.method = "SUBSCRIBE";
  r.extra = "Event: presence\r\n";
  EXPECT_EQ(reply(r).status, 489);
  r.method = "PUBLISH";
  EXPECT_EQ(reply(r).status, 489);
  r.method = "NOTIFY";
  EXPECT_EQ(reply(r).status, 481);
  r.method = "FOO";
  EXPECT_EQ(reply(r).status, 501);
  r.method = "ACK";
  EXPECT_TRUE(registrar_.handle(r.text(), udp_source()).bytes.empty());
}

TEST_F(RegistrarTest, RequireOfUnknownExtensionGets420) {
  Request r;
  r.extra = "Require: 100rel\r\n";
  auto res = reply(r);
  EXPECT_EQ(res.status, 420);
  EXPECT_EQ(res.find_named("Unsupported")->value, "100rel");
}

TEST_F(RegistrarTest, MalformedRequestsGet400OrAreDroppedAndCounted) {
  Request r;
  std::string broken = r.text();
  broken.insert(broken.find("Max-Forwards"), "garbage line\r\n");
  last_ = registrar_.handle(broken, udp_source());
  auto res = parse_message(last_.bytes);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(res->value(HeaderType::CallId), "call-1@10.0.0.5");
  EXPECT_EQ(registrar_.counters().malformed_answered, 1u);

  EXPECT_TRUE(registrar_.handle("\x01\x02garbage", udp_source()).bytes.empty());
  EXPECT_TRUE(registrar_.handle("SIP/2.0 200 OK\r\nVia: x\r\n\r\n", udp_source()).bytes.empty());
  EXPECT_EQ(registrar_.counters().malformed_dropped, 1u);
  EXPECT_EQ(registrar_.counters().responses_ignored, 1u);

  r.cseq = 4;
  std::string mismatched = r.text();
  mismatched.replace(mismatched.find("4 REGISTER"), 10, "4 INVITE");
  EXPECT_EQ(parse_message(registrar_.handle(mismatched, udp_source()).bytes)->status, 400);
}

TEST_F(RegistrarTest, NoRportRepliesToViaPortAndAddsReceived) {
  Request r;
  r.method = "OPTIONS";
  r.via = "SIP/2.0/UDP phone.local:5070;branch=z9hG4bK-9";
  auto res = reply(r);
  EXPECT_EQ(res.value(HeaderType::Via), "SIP/2.0/UDP phone.local:5070;branch=z9hG4bK-9;received=10.0.0.5");
  EXPECT_EQ(last_.port, 5070);
}

TEST_F(RegistrarTest, SweepRemovesExpiredBindingsAndReports) {
  Request r;
  r.expires = 60;
  ASSERT_EQ(register_with_auth(r, "1001", "s3cret").status, 200);
  now_ += 59s;
  registrar_.sweep();
  EXPECT_EQ(store_.size(), 1u);
  now_ += 2s;
  registrar_.sweep();
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_EQ(sink_.events.back().outcome, Outcome::Info);
  EXPECT_EQ(sink_.events.back().detail, "registration of 1001 expired");
}

TEST_F(RegistrarTest, NewSiteFileAppliesToTheNextRequestAndKeepsBindings) {
  ASSERT_EQ(register_with_auth(Request{}, "1001", "s3cret").status, 200);
  auto changed = std::make_shared<config::SiteConfig>(*site());
  changed->phones[0].lines[0].password = config::Secret("n3w");
  config::Phone added;
  added.mac = *MacAddress::parse("00:11:22:33:44:66");
  added.lines.push_back(config::Line{1, "1005", "", "1005", config::Secret("pw5")});
  changed->phones.push_back(added);
  registrar_.set_config(changed);
  EXPECT_EQ(store_.size(), 1u);
  Request r;
  r.cseq = 10;
  EXPECT_EQ(register_with_auth(r, "1001", "s3cret").status, 403);
  r.cseq = 20;
  EXPECT_EQ(register_with_auth(r, "1001", "n3w").status, 200);
  Request other;
  other.user = "1005";
  other.call_id = "call-5";
  EXPECT_EQ(register_with_auth(other, "1005", "pw5").status, 200);
  EXPECT_EQ(store_.size(), 2u);
}

TEST(SipLocationStore, PersistsAcrossReopen) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-store-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  BindingInfo b;
  b.user = "1003";
  b.aor = "sip:1003@h";
  b.contact = "sip:uuid@10.0.0.7:5060;transport=tcp";
  b.instance = "<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>";
  b.transport = Transport::Tcp;
  b.source = "10.0.0.7:50000";
  b.cseq = 5;
  b.expires_at = std::chrono::system_clock::time_point(1'800'000'000s);
  b.mac = MacAddress::parse("9c:57:ad:12:a4:e0");
  b.device_name = "SEP9C57AD12A4E0";
  b.active_load = "sip88xx.12";
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    EXPECT_TRUE(s.upsert(b));
    EXPECT_FALSE(s.upsert(b));
    BindingInfo other = b;
    other.instance.clear();
    other.contact = "sip:other@10.0.0.8";
    s.upsert(other);
    EXPECT_TRUE(s.remove("1003", "sip:other@10.0.0.8"));
  }
  LocationStore s;
  ASSERT_TRUE(s.open(db));
  auto all = s.all();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].contact, b.contact);
  EXPECT_EQ(all[0].transport, Transport::Tcp);
  EXPECT_EQ(all[0].device_name, "SEP9C57AD12A4E0");
  EXPECT_EQ(all[0].active_load, "sip88xx.12");
  EXPECT_EQ(all[0].mac, b.mac);
  EXPECT_EQ(all[0].expires_at, b.expires_at);
  EXPECT_EQ(s.write_errors(), 0u);
  s.close();
  std::filesystem::remove_all(dir);
}

TEST(SipLocationStore, GarbageFileIsSetAsideAndBadRowsSkipped) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-garbage-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  std::ofstream(db, std::ios::binary) << std::string(4096, 'g');
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));  // today: "file is not a database", registrar not running
    EXPECT_EQ(s.size(), 0u);
    const auto notes = s.take_notes();
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_NE(notes[0].find("moved to"), std::string::npos) << notes[0];
    BindingInfo good;
    good.user = "1001";
    good.contact = "sip:1001@10.0.0.5";
    good.expires_at = std::chrono::system_clock::time_point(1'800'000'000s);
    s.upsert(good);
    s.flush();
  }
  std::size_t aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    aside += e.path().filename().string().rfind("sip.sqlite.corrupt-", 0) == 0 ? 1 : 0;
  EXPECT_EQ(aside, 1u);
  // Rows another program (or a bit flip) wrote: each is skipped, the good one kept.
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    const char* bad =
        "INSERT INTO sip_bindings VALUES ('', 'k', '', 'not a uri', '', 'udp', '', '', 1, 0, 5, '', '', '', '', '', "
        "'', '');"
        "INSERT INTO sip_bindings VALUES ('1002', 'sip:1002@h', '', 'sip:1002@h', '', 'udp', '', '', 'x', 0, 5, '', "
        "'', "
        "'', '', '', '', '');"
        "INSERT INTO sip_bindings VALUES ('1003', 'sip:1003@h', '', 'sip:1003@h', '', 'sctp', '', '', 1, 0, 5, '', '', "
        "'', '', '', '', '');"
        "INSERT INTO sip_bindings VALUES ('1004', 'sip:1004@h', '', 'sip:1004@h', '', 'udp', '', '', 1, 0, 5, "
        "'zz:zz', '', '', '', '', '', '');";
    ASSERT_EQ(sqlite3_exec(h, bad, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(h);
    sqlite3_close(h);
  }
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s.all()[0].user, "1001");
    const auto notes = s.take_notes();
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_NE(notes[0].find("skipped 4"), std::string::npos) << notes[0];
  }
  LocationStore again;
  ASSERT_TRUE(again.open(db));
  EXPECT_TRUE(again.take_notes().empty()) << "bad rows are deleted once skipped";
  again.close();
  std::filesystem::remove_all(dir);
}

TEST(SipLocationStore, FileDamagedWhileOpenIsRewrittenFromMemory) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-damage-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  BindingInfo b;
  b.user = "1001";
  b.contact = "sip:1001@10.0.0.5";
  b.expires_at = std::chrono::system_clock::time_point(1'800'000'000s);
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    s.upsert(b);
    s.flush();
    std::ofstream(db, std::ios::binary | std::ios::trunc) << std::string(8192, '\x07');
    s.flush();  // the server flushes every second
    const auto notes = s.take_notes();
    ASSERT_FALSE(notes.empty());
    EXPECT_NE(notes[0].find("moved to"), std::string::npos) << notes[0];
    EXPECT_EQ(s.size(), 1u);
  }
  LocationStore reopened;
  ASSERT_TRUE(reopened.open(db));
  EXPECT_TRUE(reopened.take_notes().empty());
  ASSERT_EQ(reopened.size(), 1u);
  EXPECT_EQ(reopened.all()[0].contact, "sip:1001@10.0.0.5");
  reopened.close();
  std::filesystem::remove_all(dir);
}

TEST(SipLocationStore, QueuesWritesUntilFlush) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-flush-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  LocationStore writer;
  ASSERT_TRUE(writer.open(db));
  BindingInfo b;
  b.user = "1001";
  b.contact = "sip:1001@10.0.0.5";
  b.expires_at = std::chrono::system_clock::time_point(1'800'000'000s);
  writer.upsert(b);
  b.cseq = 2;
  writer.upsert(b);  // same binding: one queued write
  EXPECT_EQ(writer.pending_writes(), 1u);
  {
    LocationStore reader;
    ASSERT_TRUE(reader.open(db));
    EXPECT_EQ(reader.size(), 0u);  // not on disk yet
  }
  writer.flush();
  EXPECT_EQ(writer.pending_writes(), 0u);
  {
    LocationStore reader;
    ASSERT_TRUE(reader.open(db));
    ASSERT_EQ(reader.size(), 1u);
    EXPECT_EQ(reader.all()[0].cseq, 2u);
  }
  writer.remove("1001", "sip:1001@10.0.0.5");
  writer.close();  // flushes the removal
  LocationStore reader;
  ASSERT_TRUE(reader.open(db));
  EXPECT_EQ(reader.size(), 0u);
  reader.close();
  std::filesystem::remove_all(dir);
}

TEST(SipLocationStore, ARefreshIsWrittenAndSurvivesReopen) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-refresh-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  BindingInfo b;
  b.user = "1001";
  b.aor = "sip:1001@h";
  b.contact = "sip:1001@10.0.0.5";
  b.call_id = "first-call-id";
  b.cseq = 1;
  b.source = "10.0.0.5:5060";
  b.device_name = "SEP0011223344AA";
  b.registered_at = std::chrono::system_clock::time_point(1'700'000'000s);
  b.expires_at = std::chrono::system_clock::time_point(1'700'003'600s);
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    EXPECT_FALSE(s.refresh("1001", "sip:1001@10.0.0.5", "x", 2, b.expires_at)) << "no such binding yet";
    s.upsert(b);
    s.flush();
    const auto later = std::chrono::system_clock::time_point(1'700'007'200s);
    ASSERT_TRUE(s.refresh("1001", "sip:1001@10.0.0.5", "second-call-id-longer-than-sso", 7, later));
    EXPECT_EQ(s.pending_writes(), 1u);
    const auto* held = s.find("1001", "sip:1001@10.0.0.5");
    ASSERT_NE(held, nullptr);
    EXPECT_EQ(held->call_id, "second-call-id-longer-than-sso");
    EXPECT_EQ(held->cseq, 7u);
    EXPECT_EQ(held->expires_at, later);
    EXPECT_FALSE(s.refresh("1001", "sip:other@10.0.0.5", "x", 2, later));
  }  // closing flushes
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    ASSERT_EQ(s.size(), 1u);
    const auto got = s.all()[0];
    EXPECT_EQ(got.call_id, "second-call-id-longer-than-sso");
    EXPECT_EQ(got.cseq, 7u);
    EXPECT_EQ(got.expires_at, std::chrono::system_clock::time_point(1'700'007'200s));
    // The rest of the row is as first written.
    EXPECT_EQ(got.registered_at, b.registered_at);
    EXPECT_EQ(got.device_name, "SEP0011223344AA");
    EXPECT_EQ(got.source, "10.0.0.5:5060");
    EXPECT_EQ(s.write_errors(), 0u);
  }
  std::filesystem::remove_all(dir);
}

TEST(SipLocationStore, ARefreshBeforeTheRowIsOnDiskWritesTheWholeRow) {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("ve-sip-refresh2-{}-{}", ::getpid(), std::random_device{}());
  std::filesystem::create_directories(dir);
  const auto db = dir / "sip.sqlite";
  BindingInfo b;
  b.user = "1001";
  b.contact = "sip:1001@10.0.0.5";
  b.model = "CP-8851";
  b.expires_at = std::chrono::system_clock::time_point(1'800'000'000s);
  {
    LocationStore s;
    ASSERT_TRUE(s.open(db));
    s.upsert(b);  // queued, not flushed
    ASSERT_TRUE(s.refresh("1001", "sip:1001@10.0.0.5", "c", 3, b.expires_at));
    s.flush();
    // The row went away on disk (another writer): the next refresh's UPDATE finds nothing and
    // the whole row is written again.
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(h, "DELETE FROM sip_bindings", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(h);
    ASSERT_TRUE(s.refresh("1001", "sip:1001@10.0.0.5", "d", 4, b.expires_at));
    s.flush();
  }
  LocationStore s;
  ASSERT_TRUE(s.open(db));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s.all()[0].model, "CP-8851");
  EXPECT_EQ(s.all()[0].cseq, 4u);
  EXPECT_EQ(s.all()[0].call_id, "d");
  s.close();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ve::sip
