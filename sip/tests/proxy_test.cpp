// The proxy driven directly with messages and a recording Wire (no sockets), on a real
// io_context with shortened RFC 3261 timers: routing answers, forwarding rules, the transaction
// layer's retransmissions and timeouts, CANCEL matching and hop-by-hop ACK.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "sip/authenticator.hpp"
#include "sip/digest.hpp"
#include "sip/proxy.hpp"
#include "sip/tests/recording_wire.hpp"

namespace ve::sip {
namespace {

using namespace std::chrono_literals;

using test::RecordingSink;
using test::RecordingWire;
using test::Sent;

config::SiteConfigPtr site() {
  auto c = std::make_shared<config::SiteConfig>();
  c->sip.realm = "branch-01";
  c->sip.ring_timeout_s = 1;
  auto phone = [&](const char* mac, const char* ext, const char* pw) {
    config::Phone p;
    p.mac = *MacAddress::parse(mac);
    config::Line l;
    l.extension = ext;
    l.auth_user = ext;
    l.password = config::Secret(pw);
    p.lines.push_back(l);
    c->phones.push_back(p);
    return &c->phones.back();
  };
  phone("00:11:22:33:44:01", "1001", "pw1001");
  phone("00:11:22:33:44:02", "1002", "pw1002");
  phone("00:11:22:33:44:03", "1003", "pw1003");  // never registers
  c->phones.back().lines.back().forward.busy = "1002";
  return c;
}

ServerOptions fast() {
  ServerOptions o;
  o.t1 = 10ms;
  o.t2 = 40ms;
  o.t4 = 50ms;
  return o;
}

class ProxyTest : public ::testing::Test {
 protected:
  ProxyTest() : config_(site()), auth_("branch-01"), proxy_(io_, config_, store_, sink_, fast(), wire_, auth_) {
    register_phone("1002", "sip:1002@10.0.0.6:5062", "10.0.0.6:5062");
  }

  void register_phone(const std::string& user, const std::string& contact, const std::string& source,
                      Transport t = Transport::Udp) {
    BindingInfo b;
    b.user = user;
    b.aor = "sip:" + user + "@branch-01";
    b.contact = contact;
    b.source = source;
    b.transport = t;
    b.expires_at = std::chrono::system_clock::now() + 1h;
    store_.upsert(b);
  }

  static Source caller() {
    Source s;
    s.ip = "10.0.0.5";
    s.port = 5060;
    s.local = "10.0.0.1:5060";
    return s;
  }
  static Source callee() {
    Source s;
    s.ip = "10.0.0.6";
    s.port = 5062;
    s.local = "10.0.0.1:5060";
    return s;
  }

  std::string invite(const std::string& to, const std::string& auth = {}, int cseq = 1,
                     const std::string& branch = "z9hG4bK-c1", int max_forwards = 70,
                     const std::string& host = "10.0.0.1") const {
    std::string s = fmt::format(
        "INVITE sip:{}@{} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={};rport\r\n"
        "From: <sip:1001@branch-01>;tag=caller1\r\nTo: <sip:{}@branch-01>\r\nCall-ID: call-1\r\n"
        "CSeq: {} INVITE\r\nMax-Forwards: {}\r\nContact: <sip:1001@10.0.0.5:5060>\r\n",
        to, host, branch, to, cseq, max_forwards);
    if (!auth.empty()) s += "Proxy-Authorization: " + auth + "\r\n";
    s += "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";
    return s;
  }

  void feed(const std::string& bytes, const Source& src) {
    auto m = parse_message(bytes);
    ASSERT_TRUE(m) << bytes;
    ASSERT_TRUE(proxy_.wants(*m));
    proxy_.handle(*m, src);
  }

  // Digest credentials for the last 407.
  std::string credentials(const std::string& user, const std::string& password, const std::string& to) {
    std::string nonce;
    for (auto it = wire_.sent.rbegin(); it != wire_.sent.rend(); ++it) {
      auto m = it->message();
      if (m.status != 407) continue;
      const auto v = std::string(m.find_named("Proxy-Authenticate")->value);
      const auto p = v.find("nonce=\"") + 7;
      nonce = v.substr(p, v.find('"', p) - p);
      break;
    }
    EXPECT_FALSE(nonce.empty());
    const std::string uri = "sip:" + to + "@10.0.0.1";
    DigestCredentials c;
    c.username = user;
    c.realm = "branch-01";
    c.nonce = nonce;
    c.uri = uri;
    c.qop = "auth";
    c.nc = "00000001";
    c.cnonce = "abc";
    const auto response = digest_response(c, password, "INVITE");
    return fmt::format(
        "Digest username=\"{}\", realm=\"branch-01\", nonce=\"{}\", uri=\"{}\", response=\"{}\", qop=auth, "
        "nc=00000001, cnonce=\"abc\", algorithm=MD5",
        user, nonce, uri, response);
  }

  // INVITE, 407, ACK, INVITE with credentials: returns the index of the first message sent after.
  std::size_t authenticated_invite(const std::string& to, const std::string& password = "pw1001") {
    feed(invite(to), caller());
    const std::string ack = "ACK sip:" + to +
                            "@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c1;rport\r\n"
                            "From: <sip:1001@branch-01>;tag=caller1\r\nTo: <sip:" +
                            to +
                            "@branch-01>;tag=x\r\nCall-ID: call-1\r\n"
                            "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    feed(ack, caller());
    const auto auth = credentials("1001", password, to);
    const std::size_t from = wire_.sent.size();
    feed(invite(to, auth, 2, "z9hG4bK-c2"), caller());
    return from;
  }

  std::vector<Sent> sent_to(const std::string& ip, std::size_t from = 0) const {
    std::vector<Sent> out;
    for (std::size_t i = from; i < wire_.sent.size(); ++i)
      if (wire_.sent[i].to.ip == ip) out.push_back(wire_.sent[i]);
    return out;
  }
  std::vector<int> statuses_to_caller(std::size_t from = 0) const {
    std::vector<int> out;
    for (const auto& s : sent_to("10.0.0.5", from)) out.push_back(s.message().status);
    return out;
  }

  void run_for(std::chrono::milliseconds d) {
    io_.restart();
    io_.run_for(d);
  }

  // The response the callee sends to the forwarded `req`.
  static std::string response_to(const Message& req, int code, const std::string& reason,
                                 const std::string& to_tag = "callee1") {
    std::string s = fmt::format("SIP/2.0 {} {}\r\n", code, reason);
    for (auto v : via_values(req)) s += fmt::format("Via: {}\r\n", v);
    s += fmt::format("From: {}\r\nTo: {}", req.value(HeaderType::From), req.value(HeaderType::To));
    if (code > 100) s += ";tag=" + to_tag;
    s += fmt::format("\r\nCall-ID: {}\r\nCSeq: {}\r\n", req.value(HeaderType::CallId), req.value(HeaderType::CSeq));
    if (const auto* rr = req.find(HeaderType::RecordRoute)) s += fmt::format("Record-Route: {}\r\n", rr->value);
    s += "Contact: <sip:1002@10.0.0.6:5062>\r\nContent-Length: 0\r\n\r\n";
    return s;
  }

  boost::asio::io_context io_;
  config::SiteConfigPtr config_;
  LocationStore store_;
  RecordingSink sink_;
  RecordingWire wire_;
  Authenticator auth_;
  Proxy proxy_;
};

TEST_F(ProxyTest, InviteWithoutCredentialsGets100Then407) {
  feed(invite("1002"), caller());
  EXPECT_EQ(statuses_to_caller(), (std::vector<int>{100, 407}));
  auto m = wire_.sent.back().message();
  EXPECT_NE(m.find_named("Proxy-Authenticate")->value.find("realm=\"branch-01\""), std::string_view::npos);
  EXPECT_TRUE(sent_to("10.0.0.6").empty());  // nothing reached the callee
}

TEST_F(ProxyTest, AuthenticatedInviteIsForwardedWithViaRecordRouteAndOneHopLess) {
  const auto from = authenticated_invite("1002");
  auto out = sent_to("10.0.0.6", from);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to.port, 5062);
  auto m = out[0].message();
  EXPECT_EQ(m.request_uri, "sip:1002@10.0.0.6:5062");
  const auto vias = via_values(m);
  ASSERT_EQ(vias.size(), 2u);
  EXPECT_EQ(vias[0].substr(0, 32), "SIP/2.0/UDP 10.0.0.1:5060;branch");
  EXPECT_EQ(m.value(HeaderType::RecordRoute), "<sip:10.0.0.1:5060;lr>");
  EXPECT_EQ(m.value(HeaderType::MaxForwards), "69");
  EXPECT_EQ(m.find(HeaderType::ProxyAuthorization), nullptr);  // our credentials stop here
  EXPECT_EQ(m.body, "v=0\n");
}

TEST_F(ProxyTest, WrongPasswordIs403) {
  const auto from = authenticated_invite("1002", "wrong");
  EXPECT_EQ(statuses_to_caller(from), (std::vector<int>{100, 403}));
  EXPECT_EQ(proxy_.counters().auth_failures, 1u);
}

TEST_F(ProxyTest, SpoofedFromIs403) {
  feed(invite("1002"), caller());
  // Credentials of 1002 on a request From 1001.
  const auto auth = credentials("1002", "pw1002", "1002");
  const auto from = wire_.sent.size();
  feed(invite("1002", auth, 2, "z9hG4bK-c2"), caller());
  EXPECT_EQ(statuses_to_caller(from), (std::vector<int>{100, 403}));
}

TEST_F(ProxyTest, UnknownNumberIs404) {
  auto from = authenticated_invite("1999");
  EXPECT_EQ(statuses_to_caller(from), (std::vector<int>{100, 404}));
}

TEST_F(ProxyTest, ListedLineWithoutRegistrationIs480) {
  const auto from = authenticated_invite("1003");
  EXPECT_EQ(statuses_to_caller(from), (std::vector<int>{100, 480}));
  EXPECT_EQ(proxy_.counters().unavailable, 1u);
}

TEST_F(ProxyTest, MaxForwardsZeroIs483) {
  feed(invite("1002", {}, 1, "z9hG4bK-mf", 0), caller());
  EXPECT_EQ(statuses_to_caller(), (std::vector<int>{100, 483}));
}

TEST_F(ProxyTest, OtherDomainIsRefusedWithoutUpstream) {
  feed(invite("1002", {}, 1, "z9hG4bK-od", 70, "sip.example.com"), caller());
  EXPECT_EQ(statuses_to_caller(), (std::vector<int>{100, 403}));
  EXPECT_EQ(proxy_.counters().relay_denied, 1u);
}

TEST_F(ProxyTest, OwnViaWithThisRequestsHashIsALoop) {
  // The same request coming back through us: our branch (with this request's hash) is in a Via.
  const auto from = authenticated_invite("1002");
  std::string looped = sent_to("10.0.0.6", from).at(0).bytes;
  // Send the forwarded request back to the box with the original Request-URI.
  looped.replace(looped.find("sip:1002@10.0.0.6:5062"), 22, "sip:1002@10.0.0.1");
  const auto before = wire_.sent.size();
  feed(looped, callee());
  ASSERT_GE(wire_.sent.size(), before + 2);
  EXPECT_EQ(wire_.sent.back().message().status, 482);
}

TEST_F(ProxyTest, InviteIsRetransmittedOverUdpUntilAProvisional) {
  const auto from = authenticated_invite("1002");
  run_for(80ms);  // Timer A: 10, 20, 40 ms -> retransmissions at 10, 30 and 70 ms
  const auto invites = sent_to("10.0.0.6", from).size();
  EXPECT_GE(invites, 3u);
  const std::string first = sent_to("10.0.0.6", from).at(0).bytes;
  feed(response_to(*parse_message(first), 180, "Ringing"), callee());
  run_for(100ms);
  EXPECT_LE(sent_to("10.0.0.6", from).size(), invites + 1);  // A stopped at the 180
  auto to_caller = statuses_to_caller(from);
  EXPECT_NE(std::find(to_caller.begin(), to_caller.end(), 180), to_caller.end());
}

TEST_F(ProxyTest, NoResponseAtAllIs408AfterTimerB) {
  const auto from = authenticated_invite("1002");
  run_for(64 * 10ms + 150ms);
  auto to_caller = statuses_to_caller(from);
  ASSERT_FALSE(to_caller.empty());
  EXPECT_EQ(to_caller.back(), 408);
}

TEST_F(ProxyTest, BusyIsForwardedAckedHopByHopAndRetransmittedUntilTheCallersAck) {
  const auto from = authenticated_invite("1002");
  const std::string forwarded = sent_to("10.0.0.6", from).at(0).bytes;
  auto fwd = *parse_message(forwarded);
  feed(response_to(fwd, 486, "Busy Here"), callee());
  // The callee got our ACK (same branch as our INVITE).
  auto to_callee = sent_to("10.0.0.6", from);
  auto ack = to_callee.back().message();
  EXPECT_EQ(ack.method, Method::Ack);
  EXPECT_EQ(parse_via(via_values(ack)[0])->branch(), parse_via(via_values(fwd)[0])->branch());
  EXPECT_EQ(statuses_to_caller(from).back(), 486);
  // Timer G: the 486 is repeated until the caller ACKs.
  run_for(35ms);
  const auto repeats = statuses_to_caller(from).size();
  EXPECT_GE(repeats, 4u);  // 100, 486, and at least two retransmissions
  const std::string caller_ack =
      "ACK sip:1002@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c2;rport\r\n"
      "From: <sip:1001@branch-01>;tag=caller1\r\nTo: <sip:1002@branch-01>;tag=callee1\r\nCall-ID: call-1\r\n"
      "CSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n";
  const auto callee_before = sent_to("10.0.0.6").size();
  feed(caller_ack, caller());
  EXPECT_EQ(sent_to("10.0.0.6").size(), callee_before);  // absorbed: not forwarded
  run_for(100ms);
  EXPECT_LE(statuses_to_caller(from).size(), repeats + 1);
  // Timer I then ends the transaction; Timer D ends the client side.
  run_for(64 * 10ms + 100ms);
  EXPECT_EQ(proxy_.transactions(), 0u);
}

TEST_F(ProxyTest, CancelIsAnsweredAndPassedOnThen487) {
  const auto from = authenticated_invite("1002");
  const std::string fwd_text = sent_to("10.0.0.6", from).at(0).bytes;
  auto f = *parse_message(fwd_text);
  feed(response_to(f, 180, "Ringing"), callee());
  const std::string cancel =
      "CANCEL sip:1002@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-c2;rport\r\n"
      "From: <sip:1001@branch-01>;tag=caller1\r\nTo: <sip:1002@branch-01>\r\nCall-ID: call-1\r\n"
      "CSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n";
  feed(cancel, caller());
  const auto cancels = sent_to("10.0.0.6", from);
  auto last_to_callee = cancels.back().message();
  EXPECT_EQ(last_to_callee.method, Method::Cancel);
  EXPECT_EQ(parse_via(via_values(last_to_callee)[0])->branch(), parse_via(via_values(f)[0])->branch());
  EXPECT_EQ(statuses_to_caller(from).back(), 200);  // the CANCEL's own 200
  feed(response_to(f, 487, "Request Terminated"), callee());
  EXPECT_EQ(statuses_to_caller(from).back(), 487);
  ASSERT_FALSE(proxy_.calls().empty());
  EXPECT_EQ(proxy_.calls().front().final_code, 487);
  EXPECT_EQ(proxy_.calls().front().ended_by, "caller");
  EXPECT_EQ(proxy_.counters().cancelled, 1u);
}

TEST_F(ProxyTest, CancelForNoTransactionIs481) {
  const std::string cancel =
      "CANCEL sip:1002@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-none;rport\r\n"
      "From: <sip:1001@branch-01>;tag=caller1\r\nTo: <sip:1002@branch-01>\r\nCall-ID: call-9\r\n"
      "CSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n";
  feed(cancel, caller());
  EXPECT_EQ(statuses_to_caller(), (std::vector<int>{481}));
}

TEST_F(ProxyTest, RingTimeoutCancelsTheBranchAndAnswers408) {
  const auto from = authenticated_invite("1002");
  const std::string fwd_text = sent_to("10.0.0.6", from).at(0).bytes;
  auto f = *parse_message(fwd_text);
  feed(response_to(f, 180, "Ringing"), callee());
  run_for(1100ms);  // ring_timeout_s: 1
  const auto after = sent_to("10.0.0.6", from);
  auto last = after.back().message();
  ASSERT_EQ(last.method, Method::Cancel);
  feed(response_to(f, 487, "Request Terminated"), callee());
  EXPECT_EQ(statuses_to_caller(from).back(), 408);
  EXPECT_EQ(proxy_.counters().no_answer, 1u);
}

TEST_F(ProxyTest, AnsweredCallRoutesAckAndByeAlongTheDialogAndEndsTheCall) {
  const auto from = authenticated_invite("1002");
  const std::string fwd_text = sent_to("10.0.0.6", from).at(0).bytes;
  auto f = *parse_message(fwd_text);
  feed(response_to(f, 200, "OK"), callee());
  const auto upstream = sent_to("10.0.0.5", from);
  auto ok = upstream.back().message();
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(via_values(ok).size(), 1u);  // our Via was removed
  EXPECT_EQ(ok.value(HeaderType::RecordRoute), "<sip:10.0.0.1:5060;lr>");
  const std::string in_dialog =
      "{} sip:1002@10.0.0.6:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={};rport\r\n"
      "Route: <sip:10.0.0.1:5060;lr>\r\nFrom: <sip:1001@branch-01>;tag=caller1\r\n"
      "To: <sip:1002@branch-01>;tag=callee1\r\nCall-ID: call-1\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n";
  const auto before = sent_to("10.0.0.6").size();
  feed(fmt::format(fmt::runtime(in_dialog), "ACK", "z9hG4bK-a", 2, "ACK"), caller());
  auto acks = sent_to("10.0.0.6");
  ASSERT_EQ(acks.size(), before + 1);
  auto ack = acks.back().message();
  EXPECT_EQ(ack.method, Method::Ack);
  EXPECT_EQ(ack.find(HeaderType::Route), nullptr);  // our Route was consumed
  feed(fmt::format(fmt::runtime(in_dialog), "BYE", "z9hG4bK-b", 3, "BYE"), caller());
  auto bye_text = std::string(sent_to("10.0.0.6").back().bytes);
  auto bye = *parse_message(bye_text);
  EXPECT_EQ(bye.method, Method::Bye);
  feed(response_to(bye, 200, "OK"), callee());
  EXPECT_EQ(statuses_to_caller().back(), 200);
  ASSERT_FALSE(proxy_.calls().empty());
  EXPECT_EQ(proxy_.calls().front().state, "ended");
  EXPECT_EQ(proxy_.calls().front().ended_by, "caller");
  EXPECT_EQ(proxy_.counters().answered, 1u);
}

TEST_F(ProxyTest, InDialogRequestForAnUnknownDialogIs481AndAForeignRouteIs403) {
  const std::string bye =
      "BYE sip:9999@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-x;rport\r\n"
      "Route: <sip:10.0.0.1:5060;lr>\r\nFrom: <sip:1001@branch-01>;tag=a\r\nTo: <sip:9999@x>;tag=b\r\n"
      "Call-ID: nope\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n";
  feed(bye, caller());
  EXPECT_EQ(statuses_to_caller(), (std::vector<int>{481}));
  std::string relay = bye;
  relay.replace(relay.find("<sip:10.0.0.1:5060;lr>"), 22, "<sip:198.51.100.7;lr>");
  relay.replace(relay.find("z9hG4bK-x"), 9, "z9hG4bK-y");
  feed(relay, caller());
  EXPECT_EQ(statuses_to_caller().back(), 403);
  EXPECT_TRUE(sent_to("198.51.100.7").empty());
}

TEST_F(ProxyTest, SharedLineForksAndTheFirst2xxCancelsTheOther) {
  register_phone("1002", "sip:1002@10.0.0.7:5070;transport=tcp", "10.0.0.7:40000", Transport::Tcp);
  const auto from = authenticated_invite("1002");
  auto a = sent_to("10.0.0.6", from);
  auto b = sent_to("10.0.0.7", from);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].to.transport, Transport::Tcp);
  EXPECT_EQ(b[0].to.port, 40000);  // the flow it registered on
  EXPECT_EQ(b[0].to.contact_port, 5070);
  // UDP caller, TCP callee: two Record-Routes (RFC 5658).
  auto bm = b[0].message();
  EXPECT_EQ(bm.value(HeaderType::RecordRoute), "<sip:10.0.0.1:5061;transport=tcp;lr>, <sip:10.0.0.1:5060;lr>");
  std::string btext(b[0].bytes);
  auto bf = *parse_message(btext);
  feed(response_to(bf, 180, "Ringing", "b"), callee());
  std::string atext(a[0].bytes);
  auto af = *parse_message(atext);
  feed(response_to(af, 200, "OK", "a"), callee());
  auto to_b = sent_to("10.0.0.7", from);
  EXPECT_EQ(to_b.back().message().method, Method::Cancel);
  EXPECT_EQ(statuses_to_caller(from).back(), 200);
}

TEST_F(ProxyTest, BusyLineForwardsToItsBusyTarget) {
  register_phone("1003", "sip:1003@10.0.0.8:5060", "10.0.0.8:5060");
  const auto from = authenticated_invite("1003");
  auto first = sent_to("10.0.0.8", from);
  ASSERT_EQ(first.size(), 1u);
  std::string t(first[0].bytes);
  auto f = *parse_message(t);
  feed(response_to(f, 486, "Busy Here"), callee());
  auto to_1002 = sent_to("10.0.0.6", from);
  ASSERT_EQ(to_1002.size(), 1u);
  EXPECT_EQ(to_1002[0].message().request_uri, "sip:1002@10.0.0.6:5062");
  auto statuses = statuses_to_caller(from);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 486), 0);  // the caller never saw the busy
  EXPECT_EQ(proxy_.counters().forwarded, 1u);
}

TEST_F(ProxyTest, RetransmittedInviteGetsTheLastResponseAgain) {
  feed(invite("1002"), caller());
  const auto n = wire_.sent.size();
  feed(invite("1002"), caller());
  ASSERT_EQ(wire_.sent.size(), n + 1);
  EXPECT_EQ(wire_.sent.back().message().status, 407);
}

}  // namespace
}  // namespace ve::sip
