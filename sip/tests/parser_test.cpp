#include <gtest/gtest.h>

#include "sip/sip.hpp"

namespace ve::sip {
namespace {

// A real Cisco 8851 REGISTER (shared/docs/protocol-notes.md).
constexpr std::string_view kCisco8851 =
    "REGISTER sip:192.168.20.172 SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 192.168.110.240:50057;branch=z9hG4bK0259a19a\r\n"
    "From: <sip:1003@192.168.20.172>;tag=9c57ad12a4e0004563e5c512-44f61251\r\n"
    "To: <sip:1003@192.168.20.172>\r\n"
    "Call-ID: 9c57ad12-a4e00002-7f50d2cf-489bc75f@192.168.110.240\r\n"
    "Max-Forwards: 70\r\n"
    "CSeq: 155 REGISTER\r\n"
    "User-Agent: Cisco-CP8851/12.1.1\r\n"
    "Contact: <sip:f0ae9f65-9fa6-4a32-84ba-4d40048f79c8@192.168.110.240:50057;transport=tcp>;+sip.instance=\"<urn:"
    "uuid:00000000-0000-0000-0000-9c57ad12a4e0>\";+u.sip!devicename.ccm.cisco.com=\"SEP9C57AD12A4E0\";+u.sip!model."
    "ccm.cisco.com=\"684\"\r\n"
    "Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,X-cisco-callinfo,X-cisco-"
    "serviceuri,X-cisco-escapecodes,X-cisco-service-control,X-cisco-srtp-fallback,X-cisco-monrec,X-cisco-config,X-"
    "cisco-sis-7.0.0,X-cisco-xsi-8.5.1\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

TEST(SipParser, ParsesCisco8851Register) {
  auto m = parse_message(kCisco8851);
  ASSERT_TRUE(m) << to_string(m.error());
  EXPECT_TRUE(m->is_request);
  EXPECT_EQ(m->method, Method::Register);
  EXPECT_EQ(m->request_uri, "sip:192.168.20.172");
  EXPECT_EQ(m->headers.size(), 11u);
  EXPECT_EQ(m->value(HeaderType::CallId), "9c57ad12-a4e00002-7f50d2cf-489bc75f@192.168.110.240");
  auto via = parse_via(via_values(*m).at(0));
  ASSERT_TRUE(via);
  EXPECT_EQ(via->transport, "TCP");
  EXPECT_EQ(via->host, "192.168.110.240");
  EXPECT_EQ(via->port, 50057);
  EXPECT_EQ(via->branch(), "z9hG4bK0259a19a");
  auto contact = parse_name_addr(m->value(HeaderType::Contact));
  ASSERT_TRUE(contact);
  EXPECT_EQ(contact->uri, "sip:f0ae9f65-9fa6-4a32-84ba-4d40048f79c8@192.168.110.240:50057;transport=tcp");
  ASSERT_NE(find_param(contact->params, "+sip.instance"), nullptr);
  EXPECT_EQ(find_param(contact->params, "+sip.instance")->value, "<urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>");
  EXPECT_EQ(find_param(contact->params, "+u.sip!devicename.ccm.cisco.com")->value, "SEP9C57AD12A4E0");
  auto uri = parse_uri(contact->uri);
  ASSERT_TRUE(uri);
  EXPECT_EQ(uri->user, "f0ae9f65-9fa6-4a32-84ba-4d40048f79c8");
  EXPECT_EQ(uri->port, 50057);
  EXPECT_EQ(find_param(uri->params, "transport")->value, "tcp");
  auto from = parse_name_addr(m->value(HeaderType::From));
  ASSERT_TRUE(from);
  EXPECT_EQ(from->tag(), "9c57ad12a4e0004563e5c512-44f61251");
  auto cseq = parse_cseq(m->value(HeaderType::CSeq));
  ASSERT_TRUE(cseq);
  EXPECT_EQ(cseq->number, 155u);
  EXPECT_EQ(cseq->method, "REGISTER");
  EXPECT_EQ(*parse_uint(m->value(HeaderType::Expires)), 3600u);
  // Views point into the input buffer: nothing was copied.
  EXPECT_GE(m->value(HeaderType::CallId).data(), kCisco8851.data());
  EXPECT_LT(m->value(HeaderType::CallId).data(), kCisco8851.data() + kCisco8851.size());
}

TEST(SipParser, ClassifiesCompactForms) {
  constexpr std::string_view msg =
      "OPTIONS sip:a@b SIP/2.0\r\n"
      "v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"
      "f: <sip:a@b>;tag=1\r\n"
      "t: sip:a@b\r\n"
      "i: abc\r\n"
      "CSEQ: 1 OPTIONS\r\n"
      "m: <sip:a@10.0.0.1>\r\n"
      "k: path\r\n"
      "l: 0\r\n"
      "X-Unknown: yes\r\n"
      "\r\n";
  auto m = parse_message(msg);
  ASSERT_TRUE(m) << to_string(m.error());
  EXPECT_EQ(m->find(HeaderType::Via)->name, "v");
  EXPECT_EQ(m->value(HeaderType::From), "<sip:a@b>;tag=1");
  EXPECT_EQ(m->value(HeaderType::To), "sip:a@b");
  EXPECT_EQ(m->value(HeaderType::CallId), "abc");
  EXPECT_EQ(m->value(HeaderType::CSeq), "1 OPTIONS");
  EXPECT_EQ(m->value(HeaderType::Contact), "<sip:a@10.0.0.1>");
  EXPECT_EQ(m->value(HeaderType::Supported), "path");
  EXPECT_EQ(m->value(HeaderType::ContentLength), "0");
  EXPECT_EQ(m->find_named("x-unknown")->type, HeaderType::Other);
}

TEST(SipParser, JoinsFoldedLinesAndSplitsMultiValuedHeaders) {
  constexpr std::string_view msg =
      "REGISTER sip:b SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1,\r\n"
      "  SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\n"
      "Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3;rport\r\n"
      "From: <sip:a@b>;tag=1\r\n"
      "To: <sip:a@b>\r\n"
      "Call-ID: abc\r\n"
      "CSeq: 2 REGISTER\r\n"
      "Contact: \"A, B\" <sip:a@10.0.0.1;x=1,2>;expires=60, <sip:a@10.0.0.9>\r\n"
      "Subject: a\r\n\tlong subject\r\n"
      "Content-Length: 0\r\n\r\n";
  auto m = parse_message(msg);
  ASSERT_TRUE(m) << to_string(m.error());
  auto vias = via_values(*m);
  ASSERT_EQ(vias.size(), 3u);
  EXPECT_EQ(parse_via(vias[1])->host, "10.0.0.2");
  EXPECT_EQ(parse_via(vias[2])->branch(), "z9hG4bK3");
  ASSERT_NE(find_param(parse_via(vias[2])->params, "rport"), nullptr);
  EXPECT_FALSE(find_param(parse_via(vias[2])->params, "rport")->has_value);
  auto contacts = split_list(m->value(HeaderType::Contact));
  ASSERT_EQ(contacts.size(), 2u);
  auto c0 = parse_name_addr(contacts[0]);
  ASSERT_TRUE(c0);
  EXPECT_EQ(c0->display, "A, B");
  EXPECT_EQ(c0->uri, "sip:a@10.0.0.1;x=1,2");
  EXPECT_EQ(find_param(c0->params, "expires")->value, "60");
  EXPECT_EQ(collapse_whitespace(m->find_named("Subject")->value), "a long subject");
}

TEST(SipParser, RequestPartsAreWhatEachHeaderParsesTo) {
  const std::string msg =
      "REGISTER sip:b SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport,\r\n"
      "  SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\n"
      "Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3\r\n"
      "From: \"Alice\" <sip:a@b>;tag=1\r\n"
      "To: <sip:a@b>\r\n"
      "Call-ID: abc\r\n"
      "CSeq: 2 REGISTER\r\n"
      "Max-Forwards: 70\r\n"
      "Expires: 120\r\n"
      "Contact: \"A, B\" <sip:a@10.0.0.1;x=1,2>;expires=60, <sip:a@10.0.0.9>\r\n"
      "Contact: <sip:a@10.0.0.10>;+sip.instance=\"<urn:uuid:1>\"\r\n"
      "Content-Length: 0\r\n\r\n";
  auto m = parse_message(msg);
  ASSERT_TRUE(m) << to_string(m.error());
  RequestParts parts;
  ASSERT_FALSE(request_defect(*m, parts));
  EXPECT_EQ(parts.top_via_text, via_values(*m).front());
  EXPECT_EQ(parts.top_via.host, "10.0.0.1");
  EXPECT_EQ(parts.top_via.port, 5060);
  EXPECT_EQ(parts.top_via.branch(), "z9hG4bK1");
  EXPECT_EQ(parts.from.display, "Alice");
  EXPECT_EQ(parts.from.tag(), "1");
  EXPECT_EQ(parts.to.uri, "sip:a@b");
  EXPECT_TRUE(parts.to.tag().empty());
  EXPECT_EQ(parts.cseq.number, 2u);
  EXPECT_EQ(parts.cseq.method, "REGISTER");
  EXPECT_EQ(parts.max_forwards, 70u);
  EXPECT_EQ(parts.expires, 120u);
  std::vector<std::string_view> contact_values;
  for (const auto& h : m->headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value)) contact_values.push_back(v);
  }
  ASSERT_EQ(parts.contacts.size(), 3u);
  ASSERT_EQ(contact_values.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    auto one = parse_name_addr(contact_values[i]);
    ASSERT_TRUE(one);
    EXPECT_EQ(parts.contacts[i].uri, one->uri);
    EXPECT_EQ(parts.contacts[i].params.size(), one->params.size());
  }
  EXPECT_EQ(parts.contacts[0].uri, "sip:a@10.0.0.1;x=1,2");
  EXPECT_EQ(find_param(parts.contacts[2].params, "+sip.instance")->value, "<urn:uuid:1>");
}

TEST(SipParser, RequestDefectWithPartsNamesTheSameDefect) {
  const std::string base =
      "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
      "To: <sip:a@b>\r\nCall-ID: abc\r\nCSeq: 2 REGISTER\r\n";
  for (const auto& [extra, defect] : std::vector<std::pair<std::string, std::string>>{
           {"Contact: <sip:a@h>, bad <\r\n", "Contact"},
           {"Expires: soon\r\n", "Expires"},
           {"Expires: 1\r\nExpires: 2\r\n", "repeated Expires"},
           {"Max-Forwards: 300\r\n", "Max-Forwards"},
           {"Via: SIP/2.0/UDP\r\n", "Via"},
           {"To: <sip:c@d>\r\n", "repeated To"},
       }) {
    const std::string text = base + extra + "Content-Length: 0\r\n\r\n";  // outlives the views
    auto m = parse_message(text);
    ASSERT_TRUE(m) << extra;
    RequestParts parts;
    const auto with_parts = request_defect(*m, parts);
    ASSERT_TRUE(with_parts) << extra;
    EXPECT_EQ(*with_parts, defect) << extra;
    EXPECT_EQ(request_defect(*m), with_parts) << extra;
  }
}

TEST(SipParser, ForEachListItemMatchesSplitListAndCanStop) {
  const std::string_view value = " a, \"x, y\" <sip:b;p=1,2>;q=3 ,, c ,";
  std::vector<std::string_view> items;
  EXPECT_TRUE(for_each_list_item(value, [&](std::string_view v) { items.push_back(v); }));
  EXPECT_EQ(items, split_list(value));
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1], "\"x, y\" <sip:b;p=1,2>;q=3");
  std::size_t seen = 0;
  EXPECT_FALSE(for_each_list_item(value, [&](std::string_view) { return ++seen < 2; }));
  EXPECT_EQ(seen, 2u);
  EXPECT_TRUE(for_each_list_item("", [&](std::string_view) { return false; }));
}

TEST(SipParser, BodyFollowsContentLengthAndExtraUdpBytesAreIgnored) {
  std::string msg =
      "REFER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\n"
      "Call-ID: x\r\nCSeq: 1 REFER\r\nContent-Type: application/x-cisco-alarm+xml\r\nContent-Length: 5\r\n\r\n"
      "hello-extra";
  auto m = parse_message(msg);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body, "hello");
  msg.resize(msg.size() - 8);  // "hel"
  EXPECT_EQ(parse_message(msg).error(), ParseError::BodyTruncated);
}

TEST(SipParser, ParsesResponses) {
  auto m = parse_message("SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->is_request);
  EXPECT_EQ(m->status, 401);
  EXPECT_EQ(m->reason, "Unauthorized");
}

TEST(SipParser, RejectsMalformedInput) {
  EXPECT_EQ(parse_message("").error(), ParseError::Empty);
  EXPECT_EQ(parse_message("\r\n\r\n").error(), ParseError::Empty);
  EXPECT_EQ(parse_message("REGISTER sip:a SIP/3.0\r\n\r\n").error(), ParseError::BadVersion);
  EXPECT_EQ(parse_message("REGISTER\r\n\r\n").error(), ParseError::BadStartLine);
  EXPECT_EQ(parse_message("SIP/2.0 99 Low\r\n\r\n").error(), ParseError::BadStatusCode);
  EXPECT_EQ(parse_message("SIP/2.0 2000 X\r\n\r\n").error(), ParseError::BadStatusCode);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nno colon here\r\n\r\n").error(), ParseError::BadHeader);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\n folded-first: x\r\n\r\n").error(), ParseError::BadHeader);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nVia: x\r\n").error(), ParseError::NoHeaderEnd);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n").error(), ParseError::BadContentLength);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n").error(),
            ParseError::BadContentLength);
}

TEST(SipParser, EnforcesLimits) {
  Limits small;
  small.max_message_bytes = 100;
  small.max_headers = 2;
  small.max_line_bytes = 40;
  EXPECT_EQ(parse_message(std::string(101, 'a'), small).error(), ParseError::TooLarge);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small).error(),
            ParseError::TooManyHeaders);
  EXPECT_EQ(parse_message("OPTIONS sip:a SIP/2.0\r\nA: " + std::string(50, 'x') + "\r\n\r\n", small).error(),
            ParseError::LineTooLong);
}

TEST(SipParser, ParsesUris) {
  auto u = parse_uri("sip:alice:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=x");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "pw");
  EXPECT_EQ(u->host, "[2001:db8::1]");
  EXPECT_EQ(u->port, 5070);
  EXPECT_EQ(u->params.size(), 2u);
  EXPECT_FALSE(find_param(u->params, "lr")->has_value);
  EXPECT_EQ(u->headers, "subject=x");
  EXPECT_FALSE(parse_uri("sip:"));
  EXPECT_FALSE(parse_uri("sip:a@h:99999"));
  EXPECT_FALSE(parse_uri("sip:a@h:0"));
  EXPECT_FALSE(parse_uri("nocolon"));
  EXPECT_TRUE(parse_uri("tel:+4930123"));
}

TEST(SipParser, ParsesNameAddrForms) {
  auto star = parse_name_addr(" * ");
  ASSERT_TRUE(star);
  EXPECT_TRUE(star->star);
  auto spec = parse_name_addr("sip:a@b;expires=0");
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->uri, "sip:a@b");  // addr-spec: the parameter belongs to the header
  EXPECT_EQ(find_param(spec->params, "expires")->value, "0");
  auto tokens = parse_name_addr("Front Desk <sip:1001@h>;tag=abc");
  ASSERT_TRUE(tokens);
  EXPECT_EQ(tokens->display, "Front Desk");
  EXPECT_EQ(tokens->tag(), "abc");
  EXPECT_FALSE(parse_name_addr("<sip:a@b"));
  EXPECT_FALSE(parse_name_addr("\"unterminated <sip:a@b>"));
  EXPECT_FALSE(parse_name_addr("<sip:a@b> junk"));
  EXPECT_FALSE(parse_name_addr(""));
}

TEST(SipParser, ParsesDigestCredentials) {
  auto c = parse_digest_credentials(
      "Digest username=\"1001\", realm=\"branch-01\", nonce=\"abc\", uri=\"sip:10.0.0.1\", response=\"0123\", "
      "algorithm=MD5, cnonce=\"c1\", qop=auth, nc=00000001");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "1001");
  EXPECT_EQ(c->realm, "branch-01");
  EXPECT_EQ(c->uri, "sip:10.0.0.1");
  EXPECT_EQ(c->qop, "auth");
  EXPECT_EQ(c->nc, "00000001");
  EXPECT_FALSE(parse_digest_credentials("Basic abc"));
  EXPECT_FALSE(parse_digest_credentials("Digest username=\"x\""));
}

TEST(SipParser, RejectsBadViaAndCSeq) {
  EXPECT_FALSE(parse_via("SIP/2.0/UDP"));
  EXPECT_FALSE(parse_via("SIP/3.0/UDP h"));
  EXPECT_FALSE(parse_via("SIP/2.0/UDP h:70000"));
  EXPECT_TRUE(parse_via("SIP / 2.0 / UDP h ; branch = z9hG4bK1"));
  EXPECT_FALSE(parse_cseq("REGISTER"));
  EXPECT_FALSE(parse_cseq("1"));
  EXPECT_FALSE(parse_cseq("3000000000 REGISTER"));
  EXPECT_FALSE(parse_cseq("1 REG ISTER"));
}

TEST(SipParser, SalvagesEnoughFor400) {
  constexpr std::string_view bad =
      "REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
      "Call-ID: x\r\nCSeq: 1 REGISTER\r\nthis line is broken\r\nContent-Length: 0\r\n\r\n";
  EXPECT_FALSE(parse_message(bad));
  auto s = salvage_request(bad);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->value(HeaderType::CallId), "x");
  EXPECT_FALSE(salvage_request("garbage"));
  EXPECT_FALSE(salvage_request("SIP/2.0 200 OK\r\nVia: x\r\n\r\n"));
}

std::string options_message(int n, std::string_view body = "") {
  return "OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK" + std::to_string(n) +
         "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: " + std::to_string(n) +
         " OPTIONS\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

TEST(SipStreamFramer, CutsSeveralMessagesFromOneRead) {
  StreamFramer f;
  const std::string a = options_message(1, "body1");
  const std::string b = options_message(2);
  f.append(a + b);
  auto first = f.next();
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((*first)->bytes, a);
  f.consume();
  auto second = f.next();
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->bytes, b);
  f.consume();
  auto none = f.next();
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  EXPECT_EQ(f.buffered(), 0u);
}

TEST(SipStreamFramer, WaitsForAMessageSpanningReadsByteByByte) {
  StreamFramer f;
  const std::string a = options_message(7, "0123456789");
  for (std::size_t i = 0; i + 1 < a.size(); ++i) {
    f.append(a.substr(i, 1));
    auto r = f.next();
    ASSERT_TRUE(r);
    ASSERT_FALSE(*r) << "complete too early at byte " << i;
  }
  f.append(a.substr(a.size() - 1));
  auto r = f.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->bytes, a);
  EXPECT_TRUE(parse_message((*r)->bytes));
}

TEST(SipStreamFramer, ReportsKeepAlivePingsAndSkipsPongs) {
  StreamFramer f;
  f.append("\r\n\r\n");
  auto r = f.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->kind, StreamFramer::Frame::Kind::Ping);
  f.consume();
  f.append("\r\n" + options_message(1));
  r = f.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->kind, StreamFramer::Frame::Kind::Message);
}

TEST(SipStreamFramer, FailsOnOversizeAndBadLength) {
  Limits small;
  small.max_message_bytes = 300;
  StreamFramer f(small);
  f.append("OPTIONS sip:a SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
  auto r = f.next();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), StreamFramer::Error::TooLarge);
  StreamFramer g;
  g.append("OPTIONS sip:a SIP/2.0\r\nl: x\r\n\r\n");
  auto s = g.next();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), StreamFramer::Error::BadContentLength);
  StreamFramer h(small);
  h.append(std::string(400, 'a'));
  auto t = h.next();
  ASSERT_FALSE(t);
}

}  // namespace
}  // namespace ve::sip
