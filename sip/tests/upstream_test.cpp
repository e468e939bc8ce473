// SRST: the probe state machine (time passed in, no waiting), the Path flow tokens, and the proxy
// relaying to a cluster with a recording Wire: REGISTER with Path, the copy of accepted bindings,
// requests along the Path to the phone's flow, forged tokens, and survivable mode's 503.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "sip/authenticator.hpp"
#include "sip/digest.hpp"
#include "sip/proxy.hpp"
#include "sip/tests/recording_wire.hpp"
#include "sip/registrar.hpp"
#include "sip/upstream.hpp"
#include "sip/upstream_prober.hpp"

namespace ve::sip {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

config::SipConfig two_upstreams(int interval = 1, int failures = 2, int rehome = 3) {
  config::SipConfig sip;
  sip.upstream.push_back({"hq-1", "10.10.200.1", 5060, "udp"});
  sip.upstream.push_back({"hq-2", "10.10.200.5", 5060, "tcp"});
  sip.survivability = {interval, failures, rehome};
  return sip;
}

struct ModeLog {
  std::vector<std::pair<SipMode, std::string>> changes;
  void attach(UpstreamMonitor& m) {
    m.on_mode_change([this](SipMode, SipMode to, const std::string& why) { changes.emplace_back(to, why); });
  }
};

TEST(UpstreamMonitor, WithoutUpstreamsTheBoxIsLocal) {
  UpstreamMonitor m(config::SipConfig{}, Clock::now());
  EXPECT_EQ(m.mode(), SipMode::Local);
  EXPECT_EQ(m.active(), nullptr);
}

TEST(UpstreamMonitor, StartsSurvivableAndTheFirstAnswerAtStartIsUsedAtOnce) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(), t0);
  ModeLog log;
  log.attach(m);
  EXPECT_EQ(m.mode(), SipMode::Survivable);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Unknown);
  m.probe_sent(0, t0);
  m.answered(0, 200, 7ms, t0 + 7ms);
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  ASSERT_NE(m.active(), nullptr);
  EXPECT_EQ(m.active()->config.name, "hq-1");
  EXPECT_EQ(m.upstreams()[0].rtt, 7ms);
  ASSERT_EQ(log.changes.size(), 1u);
  EXPECT_NE(log.changes[0].second.find("hq-1"), std::string::npos);
}

TEST(UpstreamMonitor, DownAfterProbeFailuresMissesInARowThenSurvivable) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(1, 3, 3), t0);
  m.answered(0, 200, 1ms, t0);
  m.missed(1, t0);
  m.missed(1, t0 + 1s);
  m.missed(1, t0 + 2s);
  EXPECT_EQ(m.upstreams()[1].state, UpstreamState::Down);
  EXPECT_EQ(m.mode(), SipMode::Upstream);  // hq-1 still answers
  m.missed(0, t0 + 1s);
  m.missed(0, t0 + 2s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Up) << "two misses of three: still up";
  EXPECT_TRUE(m.upstreams()[0].usable) << "and the phones stay with it";
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  m.missed(0, t0 + 3s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Down);
  EXPECT_EQ(m.upstreams()[0].since, t0 + 3s);
  EXPECT_EQ(m.mode(), SipMode::Survivable);
  EXPECT_EQ(m.mode_since(), t0 + 3s);
  const auto summary = m.unreachable_summary();
  EXPECT_NE(summary.find("hq-1, hq-2 unreachable since"), std::string::npos) << summary;
}

TEST(UpstreamMonitor, AnAnswerBetweenMissesResetsTheCount) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(1, 2, 0), t0);
  m.answered(0, 200, 1ms, t0);
  m.missed(0, t0 + 1s);
  m.answered(0, 200, 1ms, t0 + 2s);
  m.missed(0, t0 + 3s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Up);
  EXPECT_EQ(m.upstreams()[0].misses, 1);
}

TEST(UpstreamMonitor, A5xxIsDownAtOnceAnd4xxIsAlive) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(), t0);
  m.answered(0, 405, 1ms, t0);  // OPTIONS not allowed: the SIP stack is alive
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Up);
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  m.answered(0, 503, 1ms, t0 + 1s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Down);
  EXPECT_EQ(m.upstreams()[0].last_status, 503);
  EXPECT_EQ(m.mode(), SipMode::Survivable);
}

TEST(UpstreamMonitor, RehomesOnlyAfterAnsweringForRehomeAfter) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(1, 2, 3), t0);
  ModeLog log;
  log.attach(m);
  m.answered(0, 200, 1ms, t0);
  m.missed(0, t0 + 1s);
  m.missed(0, t0 + 2s);
  ASSERT_EQ(m.mode(), SipMode::Survivable);
  m.answered(0, 200, 1ms, t0 + 10s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Up);
  EXPECT_EQ(m.mode(), SipMode::Survivable) << "answering, but not for rehome_after_s yet";
  m.answered(0, 200, 1ms, t0 + 12s);
  EXPECT_EQ(m.mode(), SipMode::Survivable);
  m.missed(0, t0 + 13s);  // a miss restarts the wait
  m.answered(0, 200, 1ms, t0 + 14s);
  m.tick(t0 + 16s);
  EXPECT_EQ(m.mode(), SipMode::Survivable);
  m.tick(t0 + 17s);
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  EXPECT_EQ(m.mode_since(), t0 + 17s);
  ASSERT_EQ(log.changes.size(), 3u);
  EXPECT_EQ(log.changes.back().first, SipMode::Upstream);
  EXPECT_NE(log.changes.back().second.find("answered for 3 s"), std::string::npos) << log.changes.back().second;
}

TEST(UpstreamMonitor, FailsOverToTheNextInOrderAndBackOnlyAfterRehome) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(1, 1, 5), t0);
  m.answered(0, 200, 1ms, t0);
  m.answered(1, 200, 1ms, t0);
  EXPECT_EQ(m.active()->config.name, "hq-1");
  m.missed(0, t0 + 1s);
  m.answered(1, 200, 1ms, t0 + 1s);
  EXPECT_EQ(m.active()->config.name, "hq-2");
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  m.answered(0, 200, 1ms, t0 + 2s);
  EXPECT_EQ(m.active()->config.name, "hq-2") << "hq-1 answers again, not yet for 5 s";
  m.tick(t0 + 7s);
  EXPECT_EQ(m.active()->config.name, "hq-1");
}

TEST(UpstreamMonitor, ANewSiteFileKeepsTheStateOfUnchangedUpstreams) {
  const auto t0 = Clock::now();
  UpstreamMonitor m(two_upstreams(), t0);
  m.answered(1, 200, 1ms, t0);
  auto sip = two_upstreams();
  sip.upstream[0].port = 5070;  // hq-1 moved: its state starts over
  m.set_config(sip, t0 + 1s);
  EXPECT_EQ(m.upstreams()[0].state, UpstreamState::Unknown);
  EXPECT_EQ(m.upstreams()[1].state, UpstreamState::Up);
  EXPECT_EQ(m.mode(), SipMode::Upstream);
  m.set_config(config::SipConfig{}, t0 + 2s);
  EXPECT_EQ(m.mode(), SipMode::Local);
}

TEST(UpstreamMonitor, ProbeWindowIsTheIntervalAtMostFiveSeconds) {
  EXPECT_EQ(UpstreamMonitor(two_upstreams(1), Clock::now()).probe_timeout(), 1s);
  EXPECT_EQ(UpstreamMonitor(two_upstreams(30), Clock::now()).probe_timeout(), 5s);
}

TEST(FlowTokens, RoundTripAndEveryTamperingIsRefused) {
  FlowTokens tokens;
  Destination flow;
  flow.transport = Transport::Tcp;
  flow.ip = "10.10.100.101";
  flow.port = 49152;
  const auto t = tokens.make(flow);
  auto back = tokens.parse(t);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->transport, Transport::Tcp);
  EXPECT_EQ(back->ip, "10.10.100.101");
  EXPECT_EQ(back->port, 49152);
  EXPECT_FALSE(FlowTokens().parse(t)) << "another box's key";
  for (std::size_t i = 3; i < t.size(); ++i) {
    std::string bad = t;
    bad[i] = bad[i] == '0' ? '1' : '0';
    EXPECT_FALSE(tokens.parse(bad)) << "flipped at " << i;
  }
  EXPECT_FALSE(tokens.parse(""));
  EXPECT_FALSE(tokens.parse("ob-"));
  EXPECT_FALSE(tokens.parse(t.substr(0, t.size() - 1)));
  EXPECT_FALSE(tokens.parse(t + "00"));
  EXPECT_FALSE(tokens.parse(std::string("ob-") + std::string(400, 'a')));
  EXPECT_FALSE(tokens.parse("ob-zz" + t.substr(5)));
}

TEST(FlowTokens, PathEntryCarriesTheTokenLrAndOb) {
  const auto e = path_entry("ob-abc", "10.0.0.1:5060", Transport::Udp);
  EXPECT_EQ(e, "<sip:ob-abc@10.0.0.1:5060;lr;ob>");
  EXPECT_EQ(path_token(e), "ob-abc");
  EXPECT_EQ(path_entry("ob-abc", "10.0.0.1:5061", Transport::Tcp), "<sip:ob-abc@10.0.0.1:5061;transport=tcp;lr;ob>");
  EXPECT_EQ(path_token("<sip:10.0.0.1;lr>"), "");
  EXPECT_EQ(path_token("<sip:1001@10.0.0.1;lr>"), "");
  EXPECT_EQ(path_token("garbage<"), "");
}

// ---- the proxy in front of a cluster --------------------------------------------------------

using test::RecordingSink;
using test::RecordingWire;
using test::Sent;

config::SiteConfigPtr site() {
  auto c = std::make_shared<config::SiteConfig>();
  c->sip.realm = "branch-01";
  c->sip.upstream.push_back({"hq-1", "10.10.200.1", 5060, "udp"});
  c->sip.survivability = {1, 2, 3};
  for (auto [mac, ext] : {std::pair{"00:11:22:33:44:01", "1001"}, std::pair{"00:11:22:33:44:02", "1002"}}) {
    config::Phone p;
    p.mac = *MacAddress::parse(mac);
    config::Line l;
    l.extension = ext;
    l.auth_user = ext;
    l.password = config::Secret("pw");
    p.lines.push_back(l);
    c->phones.push_back(p);
  }
  return c;
}

ServerOptions fast() {
  ServerOptions o;
  o.t1 = 10ms;
  o.t2 = 40ms;
  o.t4 = 50ms;
  return o;
}

class UpstreamProxyTest : public ::testing::Test {
 protected:
  UpstreamProxyTest()
      : config_(site()),
        auth_("branch-01"),
        monitor_(config_->sip, Clock::now()),
        proxy_(io_, config_, store_, sink_, fast(), wire_, auth_) {
    proxy_.set_upstream(&monitor_, &tokens_);
    monitor_.answered(0, 200, 1ms, Clock::now());
  }

  static Source phone(std::uint16_t port = 5060, const char* ip = "10.0.0.5") {
    Source s;
    s.ip = ip;
    s.port = port;
    s.local = "10.0.0.1:5060";
    return s;
  }
  static Source cluster() {
    Source s;
    s.ip = "10.10.200.1";
    s.port = 5060;
    s.local = "10.0.0.1:5060";
    return s;
  }
  std::string register_request(const std::string& extra = {}) const {
    return "REGISTER sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-r1;rport\r\n"
           "From: <sip:1001@10.0.0.1>;tag=r1\r\nTo: <sip:1001@10.0.0.1>\r\nCall-ID: reg-1\r\nCSeq: 2 REGISTER\r\n"
           "Max-Forwards: 70\r\nContact: <sip:1001@10.0.0.5:5060>;expires=3600\r\n" +
           extra + "Content-Length: 0\r\n\r\n";
  }
  void feed(const std::string& bytes, const Source& src) {
    auto m = parse_message(bytes);
    ASSERT_TRUE(m) << bytes;
    proxy_.handle(*m, src);
  }
  // A response to the last request the proxy sent, with its Via list.
  std::string answer_last(int code, const std::string& reason, const std::string& extra = {}) {
    auto req = wire_.sent.back().message();
    std::string out = fmt::format("SIP/2.0 {} {}\r\n", code, reason);
    for (auto v : via_values(req)) out += fmt::format("Via: {}\r\n", v);
    out += fmt::format("From: {}\r\nTo: {};tag=hq\r\nCall-ID: {}\r\nCSeq: {}\r\n{}Content-Length: 0\r\n\r\n",
                       req.value(HeaderType::From), req.value(HeaderType::To), req.value(HeaderType::CallId),
                       req.value(HeaderType::CSeq), extra);
    return out;
  }
  void run() { io_.run_for(5ms); }

  boost::asio::io_context io_;
  config::SiteConfigPtr config_;
  LocationStore store_;
  RecordingSink sink_;
  RecordingWire wire_;
  Authenticator auth_;
  FlowTokens tokens_;
  UpstreamMonitor monitor_;
  Proxy proxy_;
};

TEST_F(UpstreamProxyTest, RegisterGoesToTheClusterWithPathAndSupportedPath) {
  ASSERT_EQ(monitor_.mode(), SipMode::Upstream);
  const auto reg = register_request(
      "Authorization: Digest username=\"1001\", realm=\"branch-01\", nonce=\"n\", "
      "uri=\"sip:10.0.0.1\", response=\"00\"\r\n");
  auto m = parse_message(reg);
  ASSERT_TRUE(m);
  ASSERT_TRUE(proxy_.relays_register(*m));
  feed(reg, phone());
  ASSERT_EQ(wire_.sent.size(), 1u);
  const auto& out = wire_.sent.back();
  EXPECT_EQ(out.to.ip, "10.10.200.1");
  EXPECT_EQ(out.to.port, 5060);
  const auto fwd = out.message();
  EXPECT_EQ(fwd.request_uri, "sip:10.10.200.1:5060");
  const Header* path = fwd.find_named("Path");
  ASSERT_NE(path, nullptr) << out.bytes;
  const auto token = path_token(path->value);
  auto flow = tokens_.parse(token);
  ASSERT_TRUE(flow) << path->value;
  EXPECT_EQ(flow->ip, "10.0.0.5");
  EXPECT_EQ(flow->port, 5060);
  EXPECT_NE(std::string(path->value).find(";lr;ob>"), std::string::npos);
  EXPECT_EQ(fwd.value(HeaderType::Supported), "path");
  EXPECT_NE(fwd.find(HeaderType::Authorization), nullptr) << "the phone's credentials go to the cluster";
  EXPECT_EQ(via_values(fwd).size(), 2u);
}

TEST_F(UpstreamProxyTest, ClusterChallengeIsRelayedAndNothingIsKept) {
  feed(register_request(), phone());
  feed(answer_last(401, "Unauthorized", "WWW-Authenticate: Digest realm=\"hq\", nonce=\"abc\"\r\n"), cluster());
  ASSERT_EQ(wire_.sent.size(), 2u);
  const auto back = wire_.sent.back().message();
  EXPECT_EQ(back.status, 401);
  EXPECT_EQ(wire_.sent.back().to.ip, "10.0.0.5");
  EXPECT_NE(back.find(HeaderType::WwwAuthenticate), nullptr);
  EXPECT_EQ(via_values(back).size(), 1u);
  EXPECT_EQ(store_.size(), 0u);
}

TEST_F(UpstreamProxyTest, AcceptedBindingIsCopiedWithWhereItRegistered) {
  feed(register_request(), phone());
  feed(answer_last(200, "OK", "Contact: <sip:1001@10.0.0.5:5060>;expires=1800\r\n"), cluster());
  EXPECT_EQ(wire_.sent.back().message().status, 200);
  const auto* b = store_.find("1001");
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ(b->front().registered_with, "hq-1");
  EXPECT_EQ(b->front().source, "10.0.0.5:5060");
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(b->front().expires_at - Clock::now()).count();
  EXPECT_GT(left, 1700);
  EXPECT_LE(left, 1800);
  ASSERT_FALSE(sink_.events.empty());
  const auto& e = sink_.events.back();
  EXPECT_EQ(e.step, Step::Register);
  EXPECT_EQ(e.outcome, Outcome::Ok);
  EXPECT_NE(e.detail.find("registered 1001 with hq-1 via the box"), std::string::npos) << e.detail;
  // Unregistering at the cluster removes the copy.
  feed(register_request()
           .replace(register_request().find("expires=3600"), 12, "expires=0000")
           .replace(register_request().find("branch=z9hG4bK-r1"), 17, "branch=z9hG4bK-r2"),
       phone());
  feed(answer_last(200, "OK"), cluster());
  EXPECT_EQ(store_.find("1001"), nullptr);
}

TEST_F(UpstreamProxyTest, InviteFromAPhoneGoesToTheClusterUnchallengedAndRecordRouted) {
  feed(
      "INVITE sip:1002@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-i1;rport\r\n"
      "From: <sip:1001@10.0.0.1>;tag=a\r\nTo: <sip:1002@10.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
      "Max-Forwards: 70\r\nContact: <sip:1001@10.0.0.5:5060>\r\nContent-Length: 0\r\n\r\n",
      phone());
  ASSERT_EQ(wire_.sent.size(), 2u);  // 100 Trying, the INVITE
  EXPECT_EQ(wire_.sent[0].message().status, 100);
  const auto fwd = wire_.sent[1].message();
  EXPECT_EQ(wire_.sent[1].to.ip, "10.10.200.1");
  EXPECT_EQ(fwd.request_uri, "sip:1002@10.10.200.1:5060");
  EXPECT_EQ(fwd.value(HeaderType::RecordRoute), "<sip:10.0.0.1:5060;lr>");
  // The cluster's 407 goes to the phone; the box does not challenge itself.
  feed(answer_last(407, "Proxy Authentication Required", "Proxy-Authenticate: Digest realm=\"hq\", nonce=\"x\"\r\n"),
       cluster());
  EXPECT_EQ(wire_.sent.back().message().status, 407);
  EXPECT_EQ(wire_.sent.back().to.ip, "10.0.0.5");
  EXPECT_EQ(proxy_.counters().auth_challenges, 0u);
}

TEST_F(UpstreamProxyTest, RequestAlongThePathReachesThePhonesFlow) {
  Destination flow;
  flow.ip = "10.0.0.5";
  flow.port = 40000;  // the phone's NATed source port, not its Contact's
  const auto route = path_entry(tokens_.make(flow), "10.0.0.1:5060", Transport::Udp);
  feed(
      "INVITE sip:1001@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.10.200.1:5060;branch=z9hG4bK-k1\r\n"
      "Route: " +
          route +
          "\r\n"
          "From: <sip:1002@hq>;tag=b\r\nTo: <sip:1001@hq>\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\n"
          "Record-Route: <sip:10.10.200.1;lr>\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n",
      cluster());
  ASSERT_EQ(wire_.sent.size(), 2u);
  const auto& out = wire_.sent[1];
  EXPECT_EQ(out.to.ip, "10.0.0.5");
  EXPECT_EQ(out.to.port, 40000);
  const auto fwd = out.message();
  EXPECT_EQ(fwd.request_uri, "sip:1001@10.0.0.5:5060");
  EXPECT_EQ(fwd.find(HeaderType::Route), nullptr) << "our Path entry is consumed";
  EXPECT_EQ(fwd.count(HeaderType::RecordRoute), 2u);
}

TEST_F(UpstreamProxyTest, ForgedOrMisplacedFlowTokensReachNobody) {
  Destination flow;
  flow.ip = "10.0.0.6";
  flow.port = 5060;
  const std::string good = tokens_.make(flow);
  std::string forged = good;
  forged[5] = forged[5] == 'a' ? 'b' : 'a';
  auto invite = [](const std::string& route, const char* branch) {
    return fmt::format(
        "INVITE sip:1002@10.0.0.6 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={}\r\nRoute: {}\r\n"
        "From: <sip:1001@hq>;tag=b\r\nTo: <sip:1002@hq>\r\nCall-ID: c3\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        branch, route);
  };
  // From the voice VLAN with a valid token (sniffed): refused, it is not an upstream.
  feed(invite(path_entry(good, "10.0.0.1:5060", Transport::Udp), "z9hG4bK-f1"), phone());
  // From the cluster's address with a forged token: refused.
  feed(invite(path_entry(forged, "10.0.0.1:5060", Transport::Udp), "z9hG4bK-f2"), cluster());
  for (const auto& s : wire_.sent) {
    EXPECT_NE(s.to.ip, "10.0.0.6") << "nothing went to the named phone: " << s.bytes;
    const auto m = s.message();
    if (m.status >= 200) {
      EXPECT_EQ(m.status, 403);
    }
  }
  EXPECT_EQ(proxy_.counters().relay_denied, 2u);
}

TEST_F(UpstreamProxyTest, InDialogRequestGoesOnToTheClusterNamedInTheRouteSet) {
  feed(
      "BYE sip:1002@10.0.0.6:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-b1;rport\r\n"
      "Route: <sip:10.0.0.1:5060;lr>, <sip:10.10.200.1;lr>, <sip:10.0.0.1:5060;lr>\r\n"
      "From: <sip:1001@hq>;tag=a\r\nTo: <sip:1002@hq>;tag=b\r\nCall-ID: c4\r\nCSeq: 2 BYE\r\n"
      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
      phone());
  ASSERT_EQ(wire_.sent.size(), 1u);
  EXPECT_EQ(wire_.sent[0].to.ip, "10.10.200.1");
  EXPECT_EQ(wire_.sent[0].message().value(HeaderType::Route), "<sip:10.10.200.1;lr>, <sip:10.0.0.1:5060;lr>");
  // Not an upstream after ours: still refused as before.
  feed(
      "BYE sip:1002@10.0.0.6:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-b2;rport\r\n"
      "Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.9;lr>\r\n"
      "From: <sip:1001@hq>;tag=a\r\nTo: <sip:1002@hq>;tag=b\r\nCall-ID: c5\r\nCSeq: 2 BYE\r\n"
      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
      phone());
  EXPECT_EQ(wire_.sent.back().message().status, 403);
}

TEST_F(UpstreamProxyTest, SurvivableModeAnswersUnknownNumbers503WithAReason) {
  monitor_.missed(0, Clock::now());
  monitor_.missed(0, Clock::now());
  ASSERT_EQ(monitor_.mode(), SipMode::Survivable);
  auto reg = parse_message(register_request());
  EXPECT_FALSE(proxy_.relays_register(*reg)) << "the box registers phones itself";
  // The caller authenticates with the box now (the lines' credentials from the site file).
  feed(
      "INVITE sip:5551234@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-s1;rport\r\n"
      "From: <sip:1001@10.0.0.1>;tag=a\r\nTo: <sip:5551234@10.0.0.1>\r\nCall-ID: c6\r\nCSeq: 1 INVITE\r\n"
      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
      phone());
  const auto challenge = wire_.sent.back().message();
  ASSERT_EQ(challenge.status, 407);
  const std::string v(challenge.find_named("Proxy-Authenticate")->value);
  const auto p = v.find("nonce=\"") + 7;
  const std::string nonce = v.substr(p, v.find('"', p) - p);
  DigestCredentials c;
  c.username = "1001";
  c.realm = "branch-01";
  c.nonce = nonce;
  c.uri = "sip:5551234@10.0.0.1";
  const auto response = digest_response(c, "pw", "INVITE");
  feed(fmt::format("INVITE sip:5551234@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-s2;rport\r\n"
                   "From: <sip:1001@10.0.0.1>;tag=a\r\nTo: <sip:5551234@10.0.0.1>\r\nCall-ID: c6\r\nCSeq: 2 INVITE\r\n"
                   "Proxy-Authorization: Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", "
                   "uri=\"sip:5551234@10.0.0.1\", response=\"{}\"\r\n"
                   "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                   nonce, response),
       phone());
  const auto refused = wire_.sent.back().message();
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.value(HeaderType::Reason), "SIP;cause=503;text=\"upstream cluster unreachable\"");
  for (const auto& s : wire_.sent) EXPECT_NE(s.to.ip, "10.10.200.1") << "nothing goes to the dead cluster";
}

TEST(SurvivableRegistrar, GrantsAShortExpiryAndSaysWhyInTheTimeline) {
  auto config = site();
  LocationStore store;
  RecordingSink sink;
  Registrar registrar(config, store, sink, ServerOptions{});
  const auto t0 = Clock::now();
  UpstreamMonitor monitor(config->sip, t0);
  monitor.missed(0, t0);
  monitor.missed(0, t0);
  ASSERT_EQ(monitor.mode(), SipMode::Survivable);
  registrar.set_upstream(&monitor);
  Source src;
  src.ip = "10.0.0.5";
  src.port = 5060;
  src.local = "10.0.0.1:5060";
  auto reg = [](int cseq, const std::string& auth) {
    return fmt::format(
        "REGISTER sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-s{};rport\r\n"
        "From: <sip:1001@10.0.0.1>;tag=r1\r\nTo: <sip:1001@10.0.0.1>\r\nCall-ID: reg-s\r\nCSeq: {} REGISTER\r\n"
        "Max-Forwards: 70\r\nContact: <sip:1001@10.0.0.5:5060>;expires=3600\r\n{}Content-Length: 0\r\n\r\n",
        cseq, cseq, auth);
  };
  auto challenge = parse_message(registrar.handle(reg(1, {}), src).bytes);
  ASSERT_TRUE(challenge);
  ASSERT_EQ(challenge->status, 401);
  const std::string v(challenge->value(HeaderType::WwwAuthenticate));
  const auto p = v.find("nonce=\"") + 7;
  DigestCredentials c;
  c.username = "1001";
  c.realm = "branch-01";
  const std::string nonce = v.substr(p, v.find('"', p) - p);
  c.nonce = nonce;
  c.uri = "sip:10.0.0.1";
  const auto auth = fmt::format(
      "Authorization: Digest username=\"1001\", realm=\"branch-01\", nonce=\"{}\", uri=\"sip:10.0.0.1\", "
      "response=\"{}\"\r\n",
      nonce, digest_response(c, "pw", "REGISTER"));
  const auto reply = registrar.handle(reg(2, auth), src);
  auto ok = parse_message(reply.bytes);
  ASSERT_TRUE(ok) << reply.bytes;
  ASSERT_EQ(ok->status, 200) << reply.bytes;
  EXPECT_NE(std::string(ok->value(HeaderType::Contact)).find("expires=60"), std::string::npos) << reply.bytes;
  ASSERT_FALSE(sink.events.empty());
  const auto& e = sink.events.back();
  EXPECT_NE(e.detail.find("registered 1001 with the box in survivable mode: hq-1 unreachable since"), std::string::npos)
      << e.detail;
  bool fact = false;
  for (const auto& [k, val] : e.attributes)
    if (k == Fact::RegisteredWith) fact = val.find("survivable mode") != std::string::npos;
  EXPECT_TRUE(fact);
}

// The prober on a real io_context with a recording Wire: what it sends, which answers count.
TEST(UpstreamProber, ProbesEveryUpstreamAndOnlyTheProbedAddressCanAnswer) {
  boost::asio::io_context io;
  RecordingWire wire;
  auto sip = two_upstreams(1, 2, 3);
  UpstreamMonitor monitor(sip, Clock::now());
  auto prober = std::make_shared<UpstreamProber>(io, monitor, wire, 10ms);
  prober->start();
  ASSERT_EQ(wire.sent.size(), 2u) << "one OPTIONS per upstream at once";
  const auto udp = wire.sent[0].message();
  EXPECT_EQ(udp.method, Method::Options);
  EXPECT_EQ(udp.request_uri, "sip:10.10.200.1:5060");
  EXPECT_EQ(wire.sent[0].to.transport, Transport::Udp);
  const auto tcp = wire.sent[1].message();
  EXPECT_EQ(tcp.request_uri, "sip:10.10.200.5:5060;transport=tcp");
  EXPECT_EQ(wire.sent[1].to.transport, Transport::Tcp);
  EXPECT_EQ(wire.sent[1].to.contact_ip, "10.10.200.5") << "TCP: connect to the member when no connection is open";
  auto answer = [](const Message& req, int code) {
    std::string out = fmt::format("SIP/2.0 {} X\r\n", code);
    for (auto v : via_values(req)) out += fmt::format("Via: {}\r\n", v);
    out += fmt::format("From: {}\r\nTo: {};tag=x\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                       req.value(HeaderType::From), req.value(HeaderType::To), req.value(HeaderType::CallId),
                       req.value(HeaderType::CSeq));
    return out;
  };
  Source forger;
  forger.ip = "10.10.100.50";  // a phone on the voice VLAN
  auto forged_bytes = answer(udp, 200);
  auto forged = parse_message(forged_bytes);
  ASSERT_TRUE(forged);
  EXPECT_TRUE(prober->on_response(*forged, forger)) << "ours (the branch), so consumed";
  EXPECT_EQ(monitor.upstreams()[0].state, UpstreamState::Unknown) << "but it does not count";
  Source hq;
  hq.ip = "10.10.200.1";
  EXPECT_TRUE(prober->on_response(*forged, hq));
  EXPECT_EQ(monitor.upstreams()[0].state, UpstreamState::Up);
  EXPECT_EQ(monitor.mode(), SipMode::Upstream);
  // Not a probe's branch: left to the proxy.
  auto other_bytes = answer(udp, 200);
  other_bytes.replace(other_bytes.find("z9hG4bK-vp-"), 11, "z9hG4bK-xx-");
  auto other = parse_message(other_bytes);
  ASSERT_TRUE(other);
  EXPECT_FALSE(prober->on_response(*other, hq));
  // hq-2 never answers: its window (the 1 s interval) passes, UDP hq-1 was retransmitted only
  // until answered, and two rounds of silence make hq-2 down.
  ASSERT_TRUE([&] {
    for (int i = 0; i < 400 && monitor.upstreams()[1].state != UpstreamState::Down; ++i) io.run_for(10ms);
    return monitor.upstreams()[1].state == UpstreamState::Down;
  }());
  EXPECT_GE(monitor.upstreams()[1].misses, 2);
  std::size_t tcp_sent = 0;
  for (const auto& s : wire.sent)
    if (s.to.transport == Transport::Tcp) ++tcp_sent;
  EXPECT_GE(tcp_sent, 2u) << "a probe per interval";
  prober->stop();
  const auto before = wire.sent.size();
  io.run_for(50ms);
  EXPECT_EQ(wire.sent.size(), before) << "stopped: nothing more is sent";
}

}  // namespace
}  // namespace ve::sip
