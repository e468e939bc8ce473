// The requests a simulated phone sends in a call and the answers it gives, read back with the
// box's own parser (sip/) and the proxy's digest check, as the box will read them.
#include <gtest/gtest.h>

#include "phonesim/phonesim.hpp"
#include "sip/digest.hpp"
#include "sip/sip.hpp"

namespace ve::phonesim {
namespace {

RequestParams invite_params() {
  RequestParams p;
  p.method = "INVITE";
  p.request_uri = "sip:1002@10.10.100.1";
  p.local_ip = "10.10.100.101";
  p.local_port = 40001;
  p.branch = "z9hG4bKabc";
  p.from = "<sip:1001@10.10.100.1>;tag=caller1";
  p.to = "<sip:1002@10.10.100.1>";
  p.call_id = "c1@10.10.100.101";
  p.cseq = 2;
  p.contact = "sip:uuid-1@10.10.100.101:40001;transport=tcp";
  p.user_agent = "Cisco-CP7841/14.2.1";
  p.sdp = build_sdp("phonesim", "10.10.100.101", 16400, 7);
  return p;
}

TEST(SipCallCodec, InviteParsesCleanlyWithItsSdpAndAProxyDigestTheBoxAccepts) {
  auto p = invite_params();
  auto challenge = parse_digest_challenge("Digest realm=\"lab\", nonce=\"n1\", qop=\"auth\", algorithm=MD5");
  ASSERT_TRUE(challenge);
  p.proxy_authorization =
      authorization_value(*challenge, DigestInput{"1001", "pw-1001", "INVITE", p.request_uri, "cn", 1});
  const std::string text = build_request(p);
  auto m = sip::parse_message(text);
  ASSERT_TRUE(m) << text;
  EXPECT_FALSE(sip::request_defect(*m)) << *sip::request_defect(*m);
  EXPECT_EQ(m->method, sip::Method::Invite);
  EXPECT_EQ(m->request_uri, "sip:1002@10.10.100.1");
  EXPECT_EQ(m->value(sip::HeaderType::CSeq), "2 INVITE");
  EXPECT_EQ(m->value(sip::HeaderType::ContentType), "application/sdp");
  EXPECT_EQ(m->body, p.sdp);
  EXPECT_NE(m->body.find("m=audio 16400 RTP/AVP 0"), std::string_view::npos);
  EXPECT_NE(m->body.find("c=IN IP4 10.10.100.101"), std::string_view::npos);
  EXPECT_EQ(m->value(sip::HeaderType::Contact), "<sip:uuid-1@10.10.100.101:40001;transport=tcp>");
  EXPECT_EQ(m->find(sip::HeaderType::Route), nullptr);
  auto via = sip::parse_via(m->value(sip::HeaderType::Via));
  ASSERT_TRUE(via);
  EXPECT_EQ(via->transport, "TCP");
  EXPECT_EQ(via->branch(), "z9hG4bKabc");
  auto cred = sip::parse_digest_credentials(m->value(sip::HeaderType::ProxyAuthorization));
  ASSERT_TRUE(cred);
  EXPECT_EQ(cred->uri, m->request_uri);  // the box checks the digest uri against the Request-URI
  EXPECT_EQ(sip::digest_response(*cred, "pw-1001", "INVITE"), cred->response);
  EXPECT_NE(sip::digest_response(*cred, "pw-1001", "REGISTER"), cred->response);
  EXPECT_EQ(m->find(sip::HeaderType::Authorization), nullptr);
}

TEST(SipCallCodec, AckAndByeCarryTheRouteSetInOrderAndNoBody) {
  auto p = invite_params();
  p.method = "BYE";
  p.cseq = 3;
  p.request_uri = "sip:uuid-2@10.10.100.102:40002;transport=tcp";
  p.to = "<sip:1002@10.10.100.1>;tag=callee2";
  p.route = {"<sip:10.10.100.1;transport=tcp;lr>", "<sip:10.10.100.1;lr>"};
  p.sdp.clear();
  const std::string text = build_request(p);
  auto m = sip::parse_message(text);
  ASSERT_TRUE(m) << text;
  EXPECT_FALSE(sip::request_defect(*m));
  EXPECT_EQ(m->method, sip::Method::Bye);
  EXPECT_EQ(m->request_uri, "sip:uuid-2@10.10.100.102:40002;transport=tcp");
  std::vector<std::string_view> routes;
  for (const auto& h : m->headers)
    if (h.type == sip::HeaderType::Route) routes.push_back(h.value);
  EXPECT_EQ(routes, (std::vector<std::string_view>{"<sip:10.10.100.1;transport=tcp;lr>", "<sip:10.10.100.1;lr>"}));
  EXPECT_EQ(m->value(sip::HeaderType::CSeq), "3 BYE");
  EXPECT_EQ(m->value(sip::HeaderType::ContentLength), "0");
  EXPECT_TRUE(m->body.empty());
  EXPECT_EQ(m->find(sip::HeaderType::ContentType), nullptr);
  EXPECT_EQ(m->find_named("Allow"), nullptr);  // only the INVITE advertises what we take
}

// An INVITE as the proxy forwards it: its Via on top of the caller's, two Record-Routes
// (transport bridging), a To without a tag.
constexpr std::string_view kForwardedInvite =
    "INVITE sip:uuid-2@10.10.100.102:40002;transport=tcp SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 10.10.100.1:5060;branch=z9hG4bKproxy1\r\n"
    "Via: SIP/2.0/UDP 10.10.100.101:5060;branch=z9hG4bKcaller;rport=5060\r\n"
    "Record-Route: <sip:10.10.100.1;transport=tcp;lr>, <sip:10.10.100.1;lr>\r\n"
    "From: \"Desk 1\" <sip:1001@10.10.100.1>;tag=caller1\r\n"
    "To: <sip:1002@10.10.100.1>\r\n"
    "Call-ID: c1@10.10.100.101\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:1001@10.10.100.101:5060>\r\n"
    "Max-Forwards: 69\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 0\r\n\r\n";

TEST(SipCallCodec, AnswerCopiesViasRecordRouteAndAddsTheToTag) {
  auto invite = sip::parse_message(kForwardedInvite);
  ASSERT_TRUE(invite);
  ResponseParams p;
  p.status = 200;
  p.reason = "OK";
  p.to_tag = "callee2";
  p.contact = "sip:uuid-2@10.10.100.102:40002;transport=tcp";
  p.record_route = true;
  p.sdp = build_sdp("phonesim", "10.10.100.102", 16500, 9);
  const std::string text = build_response(*invite, p);
  auto m = sip::parse_message(text);
  ASSERT_TRUE(m) << text;
  EXPECT_FALSE(m->is_request);
  EXPECT_EQ(m->status, 200);
  const auto vias = sip::via_values(*m);
  ASSERT_EQ(vias.size(), 2u);
  EXPECT_EQ(sip::parse_via(vias[0])->branch(), "z9hG4bKproxy1");
  EXPECT_EQ(sip::parse_via(vias[1])->branch(), "z9hG4bKcaller");
  EXPECT_EQ(m->value(sip::HeaderType::From), "\"Desk 1\" <sip:1001@10.10.100.1>;tag=caller1");
  auto to = sip::parse_name_addr(m->value(sip::HeaderType::To));
  ASSERT_TRUE(to);
  EXPECT_EQ(to->tag(), "callee2");
  EXPECT_EQ(m->value(sip::HeaderType::CSeq), "2 INVITE");
  EXPECT_EQ(m->value(sip::HeaderType::CallId), "c1@10.10.100.101");
  EXPECT_EQ(contact_uri_of(*m), "sip:uuid-2@10.10.100.102:40002;transport=tcp");
  EXPECT_EQ(m->body, p.sdp);
  // The caller's view of the route set is the reverse; the callee's keeps the order.
  EXPECT_EQ(route_set_of(*m, true),
            (std::vector<std::string>{"<sip:10.10.100.1;lr>", "<sip:10.10.100.1;transport=tcp;lr>"}));
  EXPECT_EQ(route_set_of(*invite, false),
            (std::vector<std::string>{"<sip:10.10.100.1;transport=tcp;lr>", "<sip:10.10.100.1;lr>"}));
  EXPECT_EQ(user_of(m->value(sip::HeaderType::From)), "1001");

  // Without record_route (a 487, a 200 to BYE) nothing is copied; a To with a tag keeps it alone.
  p.record_route = false;
  p.sdp.clear();
  p.contact.clear();
  p.status = 487;
  p.reason = "Request Terminated";
  auto failed = sip::parse_message(build_response(*invite, p));
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->find(sip::HeaderType::RecordRoute), nullptr);
  EXPECT_TRUE(route_set_of(*failed, true).empty());
  EXPECT_TRUE(contact_uri_of(*failed).empty());
}

TEST(SipCallCodec, ResponseInADialogDoesNotAddASecondTag) {
  constexpr std::string_view bye =
      "BYE sip:uuid-2@10.10.100.102:40002;transport=tcp SIP/2.0\r\n"
      "Via: SIP/2.0/TCP 10.10.100.1:5060;branch=z9hG4bKp2\r\n"
      "From: <sip:1001@10.10.100.1>;tag=caller1\r\n"
      "To: <sip:1002@10.10.100.1>;tag=callee2\r\n"
      "Call-ID: c1@10.10.100.101\r\n"
      "CSeq: 3 BYE\r\n"
      "Content-Length: 0\r\n\r\n";
  auto m = sip::parse_message(bye);
  ASSERT_TRUE(m);
  ResponseParams p;
  p.to_tag = "another";
  const std::string text = build_response(*m, p);
  auto r = sip::parse_message(text);
  ASSERT_TRUE(r) << text;
  EXPECT_EQ(r->value(sip::HeaderType::To), "<sip:1002@10.10.100.1>;tag=callee2");
  EXPECT_EQ(r->value(sip::HeaderType::CSeq), "3 BYE");
  EXPECT_EQ(r->status, 200);
}

TEST(SipCallCodec, HelpersOnOddInput) {
  EXPECT_EQ(user_of("not a name-addr <"), "");
  EXPECT_EQ(user_of("<sip:10.10.100.1>"), "");
  EXPECT_EQ(user_of("sip:1003@h;tag=x"), "1003");
  constexpr std::string_view star =
      "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\n"
      "Call-ID: x\r\nCSeq: 1 REGISTER\r\nContact: *\r\nContent-Length: 0\r\n\r\n";
  auto m = sip::parse_message(star);
  ASSERT_TRUE(m);
  EXPECT_EQ(contact_uri_of(*m), "");
}

}  // namespace
}  // namespace ve::phonesim
