// The phone's side of SIP registration: digest answers (RFC 2617) and a REGISTER shaped like the
// real 8851 capture in protocol-notes.md. Pure.
#include <algorithm>
#include <array>
#include <cctype>
#include <memory>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "phonesim/phonesim.hpp"
#include "sip/sip.hpp"

namespace ve::phonesim {

namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Version from a load name: sip78xx.14-2-1-0001-14 -> 14.2.1.
std::string version_of_load(std::string_view load) {
  const auto dot = load.find('.');
  if (dot == std::string_view::npos) return std::string(load);
  std::string v(load.substr(dot + 1));
  int dashes = 0;
  std::string out;
  for (char c : v) {
    if (c == '-') {
      if (++dashes == 3) break;
      out.push_back('.');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string md5_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

Result<DigestChallenge, std::string> parse_digest_challenge(std::string_view value) {
  const auto s = sip::trim(value);
  std::size_t i = 0;
  while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
  if (!sip::iequals(s.substr(0, i), "Digest")) return unexpected(std::string("not a Digest challenge"));
  DigestChallenge c;
  for (auto item : sip::split_list(s.substr(i))) {
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) return unexpected(std::string("challenge parameter without '='"));
    const auto name = sip::trim(item.substr(0, eq));
    auto v = sip::trim(item.substr(eq + 1));
    if (!v.empty() && v.front() == '"') {
      if (v.size() < 2 || v.back() != '"') return unexpected(std::string("unterminated quoted value"));
      v = v.substr(1, v.size() - 2);
    }
    if (sip::iequals(name, "realm"))
      c.realm = std::string(v);
    else if (sip::iequals(name, "nonce"))
      c.nonce = std::string(v);
    else if (sip::iequals(name, "opaque"))
      c.opaque = std::string(v);
    else if (sip::iequals(name, "algorithm"))
      c.algorithm = std::string(v);
    else if (sip::iequals(name, "stale"))
      c.stale = sip::iequals(v, "true");
    else if (sip::iequals(name, "qop")) {
      std::size_t start = 0;
      while (start <= v.size()) {
        auto comma = v.find(',', start);
        if (comma == std::string_view::npos) comma = v.size();
        auto token = sip::trim(v.substr(start, comma - start));
        if (!token.empty()) c.qop_options.push_back(lower(token));
        start = comma + 1;
      }
    }
  }
  if (c.nonce.empty()) return unexpected(std::string("challenge without a nonce"));
  return c;
}

namespace {
bool offers_auth(const DigestChallenge& c) {
  for (const auto& q : c.qop_options) {
    if (q == "auth") return true;
  }
  return false;
}
}  // namespace

std::string digest_response(const DigestChallenge& c, const DigestInput& in) {
  if (!c.algorithm.empty() && !sip::iequals(c.algorithm, "MD5")) return {};
  const std::string ha1 = md5_hex(in.username + ":" + c.realm + ":" + in.password);
  const std::string ha2 = md5_hex(in.method + ":" + in.uri);
  if (offers_auth(c)) {
    return md5_hex(fmt::format("{}:{}:{:08x}:{}:auth:{}", ha1, c.nonce, in.nonce_count, in.cnonce, ha2));
  }
  return md5_hex(ha1 + ":" + c.nonce + ":" + ha2);
}

std::string authorization_value(const DigestChallenge& c, const DigestInput& in) {
  std::string v = fmt::format("Digest username=\"{}\",realm=\"{}\",uri=\"{}\",response=\"{}\",nonce=\"{}\"",
                              in.username, c.realm, in.uri, digest_response(c, in), c.nonce);
  if (!c.opaque.empty()) v += fmt::format(",opaque=\"{}\"", c.opaque);
  v += ",algorithm=MD5";
  if (offers_auth(c)) v += fmt::format(",cnonce=\"{}\",qop=auth,nc={:08x}", in.cnonce, in.nonce_count);
  return v;
}

std::string cisco_model_code(std::string_view model) {
  // Only codes seen in real captures; others are left out rather than guessed.
  if (model == "CP-8851") return "684";
  return {};
}

std::string build_register(const RegisterParams& p) {
  const std::string mac_lower = lower(p.mac.to_hex_upper());
  const std::string host =
      p.registrar_port == 5060 ? p.registrar_host : fmt::format("{}:{}", p.registrar_host, p.registrar_port);
  std::string m;
  m.reserve(1400);
  fmt::format_to(std::back_inserter(m), "REGISTER sip:{} SIP/2.0\r\n", host);
  fmt::format_to(std::back_inserter(m), "Via: SIP/2.0/TCP {}:{};branch={}\r\n", p.local_ip, p.local_port, p.branch);
  fmt::format_to(std::back_inserter(m), "From: <sip:{}@{}>;tag={}\r\n", p.user, p.registrar_host, p.from_tag);
  fmt::format_to(std::back_inserter(m), "To: <sip:{}@{}>\r\n", p.user, p.registrar_host);
  fmt::format_to(std::back_inserter(m), "Call-ID: {}\r\n", p.call_id);
  m += "Max-Forwards: 70\r\n";
  fmt::format_to(std::back_inserter(m), "CSeq: {} REGISTER\r\n", p.cseq);
  fmt::format_to(std::back_inserter(m), "User-Agent: {}\r\n", p.user_agent);
  fmt::format_to(std::back_inserter(m),
                 "Contact: <sip:{}@{}:{};transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-{}>\";"
                 "+u.sip!devicename.ccm.cisco.com=\"{}\"",
                 p.contact_user, p.local_ip, p.local_port, mac_lower, p.mac.sep_name());
  if (!p.model_code.empty()) fmt::format_to(std::back_inserter(m), ";+u.sip!model.ccm.cisco.com=\"{}\"", p.model_code);
  m += "\r\n";
  m += "Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,X-cisco-callinfo,"
       "X-cisco-serviceuri,X-cisco-escapecodes,X-cisco-service-control,X-cisco-srtp-fallback,X-cisco-monrec,"
       "X-cisco-config,X-cisco-sis-7.0.0,X-cisco-xsi-8.5.1\r\n";
  fmt::format_to(
      std::back_inserter(m),
      "Reason: SIP;cause=200;text=\"cisco-alarm:14 Name={} ActiveLoad={} InactiveLoad={} Last=initialized\"\r\n",
      p.mac.sep_name(), p.active_load.empty() ? "unknown" : p.active_load,
      p.inactive_load.empty() ? "unknown" : p.inactive_load);
  if (!p.authorization.empty()) fmt::format_to(std::back_inserter(m), "Authorization: {}\r\n", p.authorization);
  fmt::format_to(std::back_inserter(m), "Expires: {}\r\n", p.expires_s);
  m += "Content-Length: 0\r\n\r\n";
  return m;
}

std::string build_sdp(std::string_view user, std::string_view ip, std::uint16_t rtp_port, std::uint64_t session_id) {
  return fmt::format(
      "v=0\r\no={} {} 1 IN IP4 {}\r\ns=-\r\nc=IN IP4 {}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n"
      "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n",
      user, session_id, ip, ip, rtp_port);
}

std::string build_request(const RequestParams& p) {
  std::string m;
  m.reserve(900 + p.sdp.size());
  auto out = std::back_inserter(m);
  fmt::format_to(out, "{} {} SIP/2.0\r\n", p.method, p.request_uri);
  fmt::format_to(out, "Via: SIP/2.0/TCP {}:{};branch={}\r\n", p.local_ip, p.local_port, p.branch);
  for (const auto& r : p.route) fmt::format_to(out, "Route: {}\r\n", r);
  fmt::format_to(out, "From: {}\r\n", p.from);
  fmt::format_to(out, "To: {}\r\n", p.to);
  fmt::format_to(out, "Call-ID: {}\r\n", p.call_id);
  m += "Max-Forwards: 70\r\n";
  fmt::format_to(out, "CSeq: {} {}\r\n", p.cseq, p.method);
  if (!p.contact.empty()) fmt::format_to(out, "Contact: <{}>\r\n", p.contact);
  if (!p.user_agent.empty()) fmt::format_to(out, "User-Agent: {}\r\n", p.user_agent);
  if (!p.authorization.empty()) fmt::format_to(out, "Authorization: {}\r\n", p.authorization);
  if (!p.proxy_authorization.empty()) fmt::format_to(out, "Proxy-Authorization: {}\r\n", p.proxy_authorization);
  if (p.method == "INVITE") {
    m += "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY\r\n";
  }
  if (!p.sdp.empty()) m += "Content-Type: application/sdp\r\n";
  fmt::format_to(out, "Content-Length: {}\r\n\r\n", p.sdp.size());
  m += p.sdp;
  return m;
}

std::string build_response(const sip::Message& request, const ResponseParams& p) {
  std::string m;
  m.reserve(900 + p.sdp.size());
  auto out = std::back_inserter(m);
  fmt::format_to(out, "SIP/2.0 {} {}\r\n", p.status, p.reason);
  for (const auto& h : request.headers) {
    if (h.type == sip::HeaderType::Via) fmt::format_to(out, "Via: {}\r\n", sip::collapse_whitespace(h.value));
  }
  if (p.record_route) {
    for (const auto& h : request.headers) {
      if (h.type == sip::HeaderType::RecordRoute)
        fmt::format_to(out, "Record-Route: {}\r\n", sip::collapse_whitespace(h.value));
    }
  }
  fmt::format_to(out, "From: {}\r\n", sip::collapse_whitespace(request.value(sip::HeaderType::From)));
  const std::string to = sip::collapse_whitespace(request.value(sip::HeaderType::To));
  const auto to_na = sip::parse_name_addr(to);
  if (!p.to_tag.empty() && to_na && to_na->tag().empty()) {
    fmt::format_to(out, "To: {};tag={}\r\n", to, p.to_tag);
  } else {
    fmt::format_to(out, "To: {}\r\n", to);
  }
  fmt::format_to(out, "Call-ID: {}\r\n", sip::collapse_whitespace(request.value(sip::HeaderType::CallId)));
  fmt::format_to(out, "CSeq: {}\r\n", sip::collapse_whitespace(request.value(sip::HeaderType::CSeq)));
  if (!p.contact.empty()) fmt::format_to(out, "Contact: <{}>\r\n", p.contact);
  if (!p.user_agent.empty()) fmt::format_to(out, "Server: {}\r\n", p.user_agent);
  m += p.extra_headers;
  if (!p.sdp.empty()) m += "Content-Type: application/sdp\r\n";
  fmt::format_to(out, "Content-Length: {}\r\n\r\n", p.sdp.size());
  m += p.sdp;
  return m;
}

std::vector<std::string> route_set_of(const sip::Message& m, bool uac) {
  std::vector<std::string> routes;
  for (const auto& h : m.headers) {
    if (h.type != sip::HeaderType::RecordRoute) continue;
    for (auto v : sip::split_list(h.value)) routes.push_back(sip::collapse_whitespace(v));
  }
  if (uac) std::reverse(routes.begin(), routes.end());
  return routes;
}

std::string contact_uri_of(const sip::Message& m) {
  const auto* h = m.find(sip::HeaderType::Contact);
  if (!h) return {};
  const auto values = sip::split_list(h->value);
  if (values.empty()) return {};
  auto na = sip::parse_name_addr(values.front());
  if (!na || na->star) return {};
  return std::string(na->uri);
}

std::string user_of(std::string_view name_addr) {
  auto na = sip::parse_name_addr(name_addr);
  if (!na) return {};
  auto uri = sip::parse_uri(na->uri);
  if (!uri) return {};
  return std::string(uri->user);
}

std::string user_agent_for(std::string_view model, std::string_view load) {
  std::string compact;
  for (char c : model) {
    if (c != '-') compact.push_back(c);
  }
  return fmt::format("Cisco-{}/{}", compact, version_of_load(load));
}

}  // namespace ve::phonesim
