// Digest answers and the Cisco-shaped REGISTER, checked against RFC 2617's own example and
// against the registrar's parser and digest verifier (sip/).
#include <gtest/gtest.h>

#include "phonesim/phonesim.hpp"
#include "sip/digest.hpp"
#include "sip/sip.hpp"

namespace ve::phonesim {
namespace {

TEST(SipClientCodec, Md5OfKnownStrings) {
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
}

// RFC 2617 section 3.5: Mufasa / "Circle Of Life" / testrealm@host.com.
TEST(SipClientCodec, DigestResponseMatchesTheRfc2617Example) {
  auto c = parse_digest_challenge(
      "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", "
      "opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->realm, "testrealm@host.com");
  EXPECT_EQ(c->opaque, "5ccc069c403ebaf9f0171e9517f40e41");
  EXPECT_EQ(c->qop_options, (std::vector<std::string>{"auth", "auth-int"}));
  DigestInput in{"Mufasa", "Circle Of Life", "GET", "/dir/index.html", "0a4f113b", 1};
  EXPECT_EQ(digest_response(*c, in), "6629fae49393a05397450978507c4ef1");
  const std::string auth = authorization_value(*c, in);
  EXPECT_NE(auth.find("response=\"6629fae49393a05397450978507c4ef1\""), std::string::npos) << auth;
  EXPECT_NE(auth.find("nc=00000001"), std::string::npos);
  EXPECT_NE(auth.find("qop=auth"), std::string::npos);
  EXPECT_NE(auth.find("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""), std::string::npos);
}

TEST(SipClientCodec, DigestWithoutQopIsRfc2069) {
  auto c = parse_digest_challenge("Digest realm=\"r\", nonce=\"n\"");
  ASSERT_TRUE(c);
  DigestInput in{"u", "p", "REGISTER", "sip:h", "cn", 1};
  EXPECT_EQ(digest_response(*c, in), md5_hex(md5_hex("u:r:p") + ":n:" + md5_hex("REGISTER:sip:h")));
  EXPECT_EQ(authorization_value(*c, in).find("qop"), std::string::npos);
}

TEST(SipClientCodec, RefusesUnknownAlgorithmsAndBadChallenges) {
  auto sha = parse_digest_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256");
  ASSERT_TRUE(sha);
  EXPECT_EQ(digest_response(*sha, {"u", "p", "REGISTER", "sip:h", "c", 1}), "");
  EXPECT_FALSE(parse_digest_challenge("Basic realm=\"r\""));
  EXPECT_FALSE(parse_digest_challenge("Digest realm=\"r\""));  // no nonce
  EXPECT_FALSE(parse_digest_challenge("Digest realm=\"r, nonce=n"));
  auto stale = parse_digest_challenge("Digest realm=\"r\", nonce=\"n\", stale=TRUE");
  ASSERT_TRUE(stale);
  EXPECT_TRUE(stale->stale);
}

// What the registrar in sip/ would compute for our Authorization header.
TEST(SipClientCodec, RegistrarVerifierAcceptsOurAnswer) {
  // The challenge exactly as sip/registrar.cpp formats it.
  auto c = parse_digest_challenge("Digest realm=\"branch-01\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5");
  ASSERT_TRUE(c);
  DigestInput in{"1001", "s3cret", "REGISTER", "sip:10.10.100.1", "deadbeef", 3};
  const std::string value = authorization_value(*c, in);
  auto cred = sip::parse_digest_credentials(value);
  ASSERT_TRUE(cred) << value;
  EXPECT_EQ(cred->username, "1001");
  EXPECT_EQ(cred->nc, "00000003");
  EXPECT_EQ(sip::digest_response(*cred, "s3cret", "REGISTER"), cred->response);
  EXPECT_NE(sip::digest_response(*cred, "wrong", "REGISTER"), cred->response);
}

RegisterParams sample() {
  RegisterParams p;
  p.registrar_host = "192.168.20.172";
  p.user = "1003";
  p.local_ip = "192.168.110.240";
  p.local_port = 50057;
  p.mac = *MacAddress::parse("9c:57:ad:12:a4:e0");
  p.model = "CP-8851";
  p.model_code = cisco_model_code("CP-8851");
  p.user_agent = user_agent_for("CP-8851", "sip88xx.12-1-1-0001-11");
  p.contact_user = "f0ae9f65-9fa6-4a32-84ba-4d40048f79c8";
  p.call_id = "9c57ad12-a4e00002-7f50d2cf-489bc75f@192.168.110.240";
  p.from_tag = "9c57ad12a4e0004563e5c512-44f61251";
  p.branch = "z9hG4bK0259a19a";
  p.cseq = 155;
  p.active_load = "sip88xx.12-1-1-0001-11";
  p.inactive_load = "sip88xx.11-7-1-0001-3";
  return p;
}

TEST(SipClientCodec, RegisterIsShapedLikeTheReal8851Capture) {
  const std::string text = build_register(sample());
  auto m = sip::parse_message(text);
  ASSERT_TRUE(m) << sip::to_string(m.error()) << "\n" << text;
  EXPECT_TRUE(m->is_request);
  EXPECT_EQ(m->method, sip::Method::Register);
  EXPECT_EQ(m->request_uri, "sip:192.168.20.172");
  EXPECT_EQ(m->value(sip::HeaderType::Via), "SIP/2.0/TCP 192.168.110.240:50057;branch=z9hG4bK0259a19a");
  EXPECT_EQ(m->value(sip::HeaderType::To), "<sip:1003@192.168.20.172>");
  EXPECT_EQ(m->value(sip::HeaderType::CSeq), "155 REGISTER");
  EXPECT_EQ(m->value(sip::HeaderType::UserAgent), "Cisco-CP8851/12.1.1");
  EXPECT_EQ(m->value(sip::HeaderType::Expires), "3600");
  EXPECT_EQ(m->value(sip::HeaderType::ContentLength), "0");
  EXPECT_EQ(m->count(sip::HeaderType::Authorization), 0u);

  auto contact = sip::parse_name_addr(m->value(sip::HeaderType::Contact));
  ASSERT_TRUE(contact);
  EXPECT_EQ(contact->uri, "sip:f0ae9f65-9fa6-4a32-84ba-4d40048f79c8@192.168.110.240:50057;transport=tcp");
  const auto* instance = sip::find_param(contact->params, "+sip.instance");
  ASSERT_NE(instance, nullptr);
  EXPECT_EQ(instance->value, "<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>");
  const auto* device = sip::find_param(contact->params, "+u.sip!devicename.ccm.cisco.com");
  ASSERT_NE(device, nullptr);
  EXPECT_EQ(device->value, "SEP9C57AD12A4E0");
  const auto* model = sip::find_param(contact->params, "+u.sip!model.ccm.cisco.com");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->value, "684");
  EXPECT_EQ(sip::find_param(contact->params, "reg-id"), nullptr);
  const auto reason = m->value(sip::HeaderType::Reason);
  EXPECT_NE(reason.find("Name=SEP9C57AD12A4E0"), std::string::npos);
  EXPECT_NE(reason.find("ActiveLoad=sip88xx.12-1-1-0001-11"), std::string::npos);
  EXPECT_NE(reason.find("InactiveLoad=sip88xx.11-7-1-0001-3"), std::string::npos);
}

TEST(SipClientCodec, RegisterCarriesAuthorizationAndANonDefaultPort) {
  auto p = sample();
  p.registrar_port = 5080;
  p.authorization = "Digest username=\"1003\",realm=\"r\",uri=\"sip:192.168.20.172:5080\",response=\"x\",nonce=\"n\"";
  p.model_code.clear();
  const std::string text = build_register(p);
  auto m = sip::parse_message(text);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->request_uri, "sip:192.168.20.172:5080");
  EXPECT_EQ(m->count(sip::HeaderType::Authorization), 1u);
  EXPECT_EQ(text.find("model.ccm"), std::string::npos);
}

TEST(SipClientCodec, UserAgentFromModelAndLoad) {
  EXPECT_EQ(user_agent_for("CP-7841", "sip78xx.14-2-1-0001-14"), "Cisco-CP7841/14.2.1");
  EXPECT_EQ(user_agent_for("CP-7841", "custom"), "Cisco-CP7841/custom");
}

}  // namespace
}  // namespace ve::phonesim
