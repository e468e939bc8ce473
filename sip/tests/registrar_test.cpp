// The registrar logic driven directly with messages (no sockets), a fake clock and a recording sink.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "sip/digest.hpp"
#include "sip/location_store.hpp"
#include "sip/registrar.hpp"

namespace ve::sip {
namespace {

using namespace std::chrono_literals;

struct RecordingSink : EventSink {
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
  std::vector<PhoneEvent> events;
};

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
  EXPECT_EQ(sink_.events[0].outcome, Outcome::Failed);
  EXPECT_EQ(sink_.events[0].detail, "403 wrong password for 1001");
  EXPECT_EQ(registrar_.counters().auth_failures, 1u);
}

TEST_F(RegistrarTest, UsesTheLinesAuthUserNotTheExtension) {
  Request r;
  r.user = "1003";
  EXPECT_EQ(register_with_auth(r, "1003", "pw1003").status, 403);
  r.call_id = "other";
  EXPECT_EQ(register_with_auth(r, "auth1003", "pw1003").status, 200);
}

TEST_F(RegistrarTest, UnknownUserIsNotFound) {
  Request r;
  r.user = "1009";
  r.contact = "<sip:x@10.0.0.9>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-aabbccddeeff>\"";
  auto res = reply(r);
  EXPECT_EQ(res.status, 404);
  ASSERT_EQ(sink_.events.size(), 1u);
  EXPECT_EQ(sink_.events[0].detail, "404 unknown user 1009");
  EXPECT_EQ(sink_.events[0].mac, *MacAddress::parse("aa:bb:cc:dd:ee:ff"));
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

}  // namespace
}  // namespace ve::sip
