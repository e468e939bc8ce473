// Phone control in the SIP layer: the service-control NOTIFY as built, the non-INVITE client
// transaction's timers stepped without a clock, and the transaction table on an io_context with a
// recording Wire (what goes out, which responses complete it, which are dropped).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include "sip/phone_control.hpp"
#include "sip/transport.hpp"
#include "sip/uac.hpp"

namespace ve::sip {
namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using Timers = NonInviteClientTimers;

TEST(ServiceControlBody, CiscoLinesInOrder) {
  EXPECT_EQ(service_control_body(ServiceAction::Restart, "abc-123@10.0.0.5", "5f1e0c2a9b7d3e41"),
            "action=restart\r\nRegisterCallId={abc-123@10.0.0.5}\r\nConfigVersionStamp={5f1e0c2a9b7d3e41}\r\n"
            "DialplanVersionStamp={}\r\nSoftkeyVersionStamp={}\r\nFeatureControlVersionStamp={}\r\n");
  EXPECT_TRUE(service_control_body(ServiceAction::Reset, "x", "").starts_with("action=reset\r\n"));
}

ServiceControlNotify sample(Transport t = Transport::Udp) {
  ServiceControlNotify n;
  n.transport = t;
  n.request_uri = "sip:1001@10.0.0.5:5060";
  n.to = "sip:1001@branch-01";
  n.local = "10.0.0.1:5060";
  n.branch = "z9hG4bK-ve-uac-0011223344556677";
  n.call_id = "c0ffee@voiceedge";
  n.from_tag = "f00d";
  n.cseq = 101;
  n.register_call_id = "reg-1@10.0.0.5";
  n.config_version = "0123456789abcdef";
  return n;
}

TEST(ServiceControlNotify, ParsesAsAValidRequestWithEveryHeaderThePhoneNeeds) {
  const auto text = build_service_control_notify(sample());
  auto m = parse_message(text);
  ASSERT_TRUE(m) << text;
  EXPECT_FALSE(request_defect(*m)) << text;
  EXPECT_EQ(m->method, Method::Notify);
  EXPECT_EQ(m->request_uri, "sip:1001@10.0.0.5:5060");
  EXPECT_EQ(m->value(HeaderType::Event), "service-control");
  ASSERT_NE(m->find_named("Subscription-State"), nullptr);
  EXPECT_EQ(m->find_named("Subscription-State")->value, "active");
  EXPECT_EQ(m->value(HeaderType::ContentType), "text/plain");
  EXPECT_EQ(m->value(HeaderType::MaxForwards), "70");
  EXPECT_EQ(m->value(HeaderType::CallId), "c0ffee@voiceedge");
  EXPECT_EQ(m->value(HeaderType::To), "<sip:1001@branch-01>");
  auto from = parse_name_addr(m->value(HeaderType::From));
  ASSERT_TRUE(from);
  EXPECT_EQ(from->tag(), "f00d");
  auto cseq = parse_cseq(m->value(HeaderType::CSeq));
  ASSERT_TRUE(cseq);
  EXPECT_EQ(cseq->number, 101u);
  EXPECT_EQ(cseq->method, "NOTIFY");
  auto via = parse_via(via_values(*m).front());
  ASSERT_TRUE(via);
  EXPECT_EQ(via->transport, "UDP");
  EXPECT_EQ(via->branch(), "z9hG4bK-ve-uac-0011223344556677");
  EXPECT_EQ(m->body, service_control_body(ServiceAction::Restart, "reg-1@10.0.0.5", "0123456789abcdef"));
}

TEST(ServiceControlNotify, TcpSaysSoInViaAndContact) {
  const auto text = build_service_control_notify(sample(Transport::Tcp));
  auto m = parse_message(text);
  ASSERT_TRUE(m);
  EXPECT_EQ(parse_via(via_values(*m).front())->transport, "TCP");
  EXPECT_NE(m->value(HeaderType::Contact).find(";transport=tcp"), std::string_view::npos);
}

TEST(ServiceControlNotify, HostileValuesCannotAddHeaders) {
  // The values come from a REGISTER (Call-ID, Contact) that passed the parser: no CR/LF can be in
  // them. The version stamp is ours. The builder must still count the body right.
  auto n = sample();
  n.config_version = std::string(4000, 'a');
  auto m = parse_message(build_service_control_notify(n));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body.size(), service_control_body(n.action, n.register_call_id, n.config_version).size());
}

// RFC 3261 17.1.2.2 with T1 500 ms, T2 4 s: retransmissions at 0.5, 1.5, 3.5, 7.5 s, then every
// 4 s until Timer F at 32 s.
TEST(NonInviteClientTimers, UdpRetransmitsDoublingUpToT2ThenTimesOutAt64T1) {
  Timers t(500ms, 4000ms, 5000ms, false);
  std::vector<ms> retransmit_at;
  for (;;) {
    const auto d = t.next_deadline();
    ASSERT_TRUE(d);
    const auto a = t.on_deadline();
    if (a == Timers::Action::Timeout) {
      EXPECT_EQ(*d, 32000ms);
      break;
    }
    ASSERT_EQ(a, Timers::Action::Retransmit);
    retransmit_at.push_back(*d);
  }
  const std::vector<ms> expected{500ms, 1500ms, 3500ms, 7500ms, 11500ms, 15500ms, 19500ms, 23500ms, 27500ms, 31500ms};
  EXPECT_EQ(retransmit_at, expected);
  EXPECT_EQ(t.retransmissions(), 10);
  EXPECT_EQ(t.state(), Timers::State::Terminated);
  EXPECT_FALSE(t.next_deadline());
  EXPECT_EQ(t.on_deadline(), Timers::Action::None);
}

TEST(NonInviteClientTimers, TcpNeverRetransmits) {
  Timers t(500ms, 4000ms, 5000ms, true);
  EXPECT_EQ(t.next_deadline(), 32000ms);
  EXPECT_EQ(t.on_deadline(), Timers::Action::Timeout);
  EXPECT_EQ(t.retransmissions(), 0);
}

TEST(NonInviteClientTimers, ProvisionalMovesTimerEToT2) {
  Timers t(500ms, 4000ms, 5000ms, false);
  EXPECT_EQ(t.on_deadline(), Timers::Action::Retransmit);  // at 500
  EXPECT_FALSE(t.on_response(100));
  EXPECT_EQ(t.state(), Timers::State::Proceeding);
  EXPECT_EQ(t.next_deadline(), 1500ms);  // armed before the 100 came
  EXPECT_EQ(t.on_deadline(), Timers::Action::Retransmit);
  EXPECT_EQ(t.next_deadline(), 5500ms);  // T2 from now on
}

TEST(NonInviteClientTimers, FinalResponseReportsOnceThenTimerKAbsorbsRepeats) {
  Timers t(500ms, 4000ms, 5000ms, false);
  EXPECT_EQ(t.on_deadline(), Timers::Action::Retransmit);
  EXPECT_TRUE(t.on_response(200));
  EXPECT_EQ(t.state(), Timers::State::Completed);
  EXPECT_FALSE(t.on_response(200));  // the phone answered our retransmission too
  EXPECT_FALSE(t.on_response(100));
  EXPECT_EQ(t.next_deadline(), 5500ms);  // T4 after the response
  EXPECT_EQ(t.on_deadline(), Timers::Action::Terminate);
  EXPECT_EQ(t.retransmissions(), 1);
}

TEST(NonInviteClientTimers, ErrorResponseIsFinalToo) {
  Timers t(500ms, 4000ms, 5000ms, true);
  EXPECT_TRUE(t.on_response(481));
  EXPECT_EQ(t.next_deadline(), 0ms);
}

struct RecordingWire : Wire {
  void send(const Destination& to, const std::string& bytes) override { sent.push_back({to, bytes}); }
  std::string local_address(Transport, const std::string&) const override { return "10.0.0.1:5060"; }
  bool is_local(std::string_view, std::uint16_t) const override { return false; }
  std::vector<std::pair<Destination, std::string>> sent;
};

ServerOptions fast() {
  ServerOptions o;
  o.t1 = 2ms;
  o.t2 = 8ms;
  o.t4 = 10ms;
  return o;
}

Destination phone_udp() {
  Destination d;
  d.transport = Transport::Udp;
  d.ip = "10.0.0.5";
  d.port = 5060;
  return d;
}

Source from(const std::string& ip, std::uint16_t port = 5060, Transport t = Transport::Udp) {
  Source s;
  s.transport = t;
  s.ip = ip;
  s.port = port;
  s.local = "10.0.0.1:5060";
  return s;
}

std::string response_to(const std::string& request, int status, const std::string& reason) {
  auto m = parse_message(request);
  EXPECT_TRUE(m);
  return fmt::format(
      "SIP/2.0 {} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=p1\r\nCall-ID: {}\r\nCSeq: {}\r\n"
      "Content-Length: 0\r\n\r\n",
      status, reason, via_values(*m).front(), m->value(HeaderType::From), m->value(HeaderType::To),
      m->value(HeaderType::CallId), m->value(HeaderType::CSeq));
}

class ClientTransactionsTest : public ::testing::Test {
 protected:
  ClientTransactionsTest() : uac_(io_, wire_, fast()) {}
  std::string start(const Destination& to) {
    auto n = sample();
    n.branch = ClientTransactions::new_branch();
    const auto text = build_service_control_notify(n);
    uac_.start(n.branch, "NOTIFY", to, text, [this](const ClientOutcome& o) { outcomes_.push_back(o); });
    return text;
  }
  // Runs the loop until the table is empty (every transaction reported and terminated).
  void run_out() {
    while (uac_.size() > 0 && io_.run_one() > 0) {
    }
  }
  boost::asio::io_context io_;
  RecordingWire wire_;
  ClientTransactions uac_;
  std::vector<ClientOutcome> outcomes_;
};

TEST_F(ClientTransactionsTest, BranchesAreFreshAndCarryTheMagicCookie) {
  const auto a = ClientTransactions::new_branch();
  const auto b = ClientTransactions::new_branch();
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.starts_with("z9hG4bK"));
  EXPECT_GE(a.size(), 7u + 16u);
}

TEST_F(ClientTransactionsTest, NothingIsSentOrReportedInsideStart) {
  start(phone_udp());
  EXPECT_TRUE(wire_.sent.empty());
  EXPECT_TRUE(outcomes_.empty());
  io_.poll();
  ASSERT_EQ(wire_.sent.size(), 1u);
  EXPECT_EQ(wire_.sent[0].first.ip, "10.0.0.5");
}

TEST_F(ClientTransactionsTest, SilentPhoneOverUdpGetsEveryRetransmissionThenATimeoutOnce) {
  start(phone_udp());
  run_out();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_FALSE(outcomes_[0].answered);
  // 64*T1 = 128 ms of schedule with T1 2, T2 8: 2,6,14,22,...,126 -> 17 retransmissions; the count
  // follows from the schedule, not from how fast this machine is.
  Timers reference(2ms, 8ms, 10ms, false);
  while (reference.on_deadline() == Timers::Action::Retransmit) {
  }
  EXPECT_EQ(outcomes_[0].retransmissions, reference.retransmissions());
  EXPECT_EQ(static_cast<int>(wire_.sent.size()), 1 + reference.retransmissions());
  for (const auto& [to, bytes] : wire_.sent) EXPECT_EQ(bytes, wire_.sent[0].second);
}

TEST_F(ClientTransactionsTest, AnswerFromThePhoneCompletesIt) {
  const auto text = start(phone_udp());
  io_.poll();
  auto resp = response_to(text, 200, "OK");
  auto m = parse_message(resp);
  ASSERT_TRUE(m);
  EXPECT_TRUE(uac_.on_response(*m, from("10.0.0.5")));
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_TRUE(outcomes_[0].answered);
  EXPECT_EQ(outcomes_[0].status, 200);
  EXPECT_EQ(outcomes_[0].reason, "OK");
  // The phone answers our retransmission as well: absorbed, not reported again.
  EXPECT_TRUE(uac_.on_response(*m, from("10.0.0.5")));
  run_out();
  EXPECT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(uac_.size(), 0u);
}

TEST_F(ClientTransactionsTest, AnswerFromAnotherHostIsDroppedAndTheTransactionGoesOn) {
  const auto text = start(phone_udp());
  io_.poll();
  auto resp = response_to(text, 200, "OK");
  auto m = parse_message(resp);
  ASSERT_TRUE(m);
  EXPECT_TRUE(uac_.on_response(*m, from("10.0.0.66")));                       // forged by a neighbour
  EXPECT_TRUE(uac_.on_response(*m, from("10.0.0.5", 5060, Transport::Tcp)));  // not the flow it went over
  EXPECT_TRUE(outcomes_.empty());
  EXPECT_EQ(uac_.foreign_responses(), 2u);
  run_out();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_FALSE(outcomes_[0].answered);
}

TEST_F(ClientTransactionsTest, ResponsesWithAnotherBranchOrMethodAreNotOurs) {
  const auto text = start(phone_udp());
  io_.poll();
  auto resp = response_to(text, 200, "OK");
  auto other_branch = resp;
  other_branch.replace(other_branch.find("z9hG4bK-ve-uac-"), 15, "z9hG4bK-ve-xyz-");
  auto m = parse_message(other_branch);
  ASSERT_TRUE(m);
  EXPECT_FALSE(uac_.on_response(*m, from("10.0.0.5")));
  auto other_method = resp;
  other_method.replace(other_method.find("101 NOTIFY"), 10, "101 INVITE");
  auto m2 = parse_message(other_method);
  ASSERT_TRUE(m2);
  EXPECT_FALSE(uac_.on_response(*m2, from("10.0.0.5")));
  EXPECT_TRUE(outcomes_.empty());
  uac_.clear();
}

TEST_F(ClientTransactionsTest, ProvisionalDoesNotReport) {
  const auto text = start(phone_udp());
  io_.poll();
  auto m = parse_message(response_to(text, 100, "Trying"));
  ASSERT_TRUE(m);
  EXPECT_TRUE(uac_.on_response(*m, from("10.0.0.5")));
  EXPECT_TRUE(outcomes_.empty());
  uac_.clear();
}

TEST_F(ClientTransactionsTest, ClearEndsEverythingWithoutCallbacks) {
  start(phone_udp());
  start(phone_udp());
  EXPECT_EQ(uac_.size(), 2u);
  uac_.clear();
  io_.run();
  EXPECT_EQ(uac_.size(), 0u);
  EXPECT_TRUE(outcomes_.empty());
}

// The Core picks the registration of the phone's first line and refuses a phone with none.
TEST(CoreServiceControl, PicksTheFirstLinesBindingAndRefusesUnregisteredPhones) {
  boost::asio::io_context io;
  NullEventSink sink;
  auto config = std::make_shared<config::SiteConfig>();
  config->sip.realm = "branch-01";
  auto options = fast();
  options.persist = false;
  Core core(io, config, sink, options);
  const auto mac = *MacAddress::parse("00:11:22:33:44:01");
  for (const auto* user : {"1002", "1001"}) {
    BindingInfo b;
    b.user = user;
    b.aor = std::string("sip:") + user + "@branch-01";
    b.contact = std::string("sip:") + user + "@10.0.0.5:5060";
    b.source = "10.0.0.5:5060";
    b.call_id = std::string("reg-") + user;
    b.mac = mac;
    b.expires_at = std::chrono::system_clock::now() + 1h;
    core.store.upsert(b);
  }
  ServiceControlRequest req;
  req.mac = mac;
  req.line_user = "1001";
  req.config_version = "abc";
  auto sent = core.service_control(req, nullptr);
  ASSERT_TRUE(sent) << sent.error();
  EXPECT_EQ(sent->binding.user, "1001");
  EXPECT_EQ(sent->destination, "udp 10.0.0.5:5060");
  EXPECT_NE(sent->body.find("RegisterCallId={reg-1001}"), std::string::npos);
  EXPECT_NE(sent->body.find("ConfigVersionStamp={abc}"), std::string::npos);
  EXPECT_EQ(core.uac.size(), 1u);

  req.mac = *MacAddress::parse("00:11:22:33:44:99");
  auto none = core.service_control(req, nullptr);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().find("SEP001122334499 is not registered"), std::string::npos);
  core.uac.clear();
}

}  // namespace
}  // namespace ve::sip
