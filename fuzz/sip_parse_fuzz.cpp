// Feeds arbitrary bytes to the SIP parser the way the registrar and the proxy do: whole-message
// parse, the request checks, the lazy typed parsers on every header (the proxy's paths for an
// INVITE and its responses: Via branch and sent-by, From/To tags, Route and Record-Route lists,
// Proxy-Authorization, the Request-URI's user and host), the salvage path for 400s, and the TCP
// framer with the input cut into reads at data-dependent points. Seeds include the RFC 4475
// torture messages.
//
// Differential: request_defect(m, parts) parses every header once and hands the parts to the
// registrar; here it must name the same defect as the per-header checks it replaced (kept below
// as reference_defect(), the header-by-header version), and each part must equal what the typed
// parser gives for that header alone. for_each_list_item must cut lists as the former split_list
// loop did. A difference aborts.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include "sip/sip.hpp"

using namespace ve::sip;

namespace {

// ---- the reference: the checks as they were, one header at a time ----

std::vector<std::string_view> reference_split_list(std::string_view value) {
  std::vector<std::string_view> out;
  bool quoted = false;
  int angle = 0;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
      continue;
    }
    if (c == '"')
      quoted = true;
    else if (c == '<')
      ++angle;
    else if (c == '>' && angle > 0)
      --angle;
    else if (c == ',' && angle == 0) {
      auto item = trim(value.substr(begin, i - begin));
      if (!item.empty()) out.push_back(item);
      begin = i + 1;
    }
  }
  auto item = trim(value.substr(begin));
  if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::string_view> reference_split_via(const Message& m) {
  std::vector<std::string_view> out;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Via) continue;
    for (auto v : reference_split_list(h.value)) out.push_back(v);
  }
  return out;
}

bool has_ws(std::string_view s) { return s.find_first_of(" \t\r\n") != std::string_view::npos; }

// From/To/Contact as RFC 3261 25.1 writes them: an unquoted display name is tokens and spaces
// only, nothing but the URI between < and >, and an addr-spec without <> carries no '?' headers
// or commas (RFC 4475 3.1.2.6, 3.1.2.13 - 3.1.2.15).
bool strict_name_addr(std::string_view value, bool allow_star) {
  const auto s = trim(value);
  auto na = parse_name_addr(s);
  if (!na) return false;
  if (na->star) return allow_star;
  const auto lt = s.find('<');
  if (!s.empty() && s.front() != '"' && lt != std::string_view::npos) {
    for (char c : s.substr(0, lt)) {
      if (c == ' ' || c == '\t') continue;
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("-.!%*_+`'~").find(c) == std::string_view::npos)
        return false;
    }
  }
  if (lt == std::string_view::npos) {
    if (na->uri.find_first_of("?,") != std::string_view::npos) return false;
  } else if (has_ws(na->uri) || na->uri.data() != s.data() + lt + 1 || na->uri.data()[na->uri.size()] != '>') {
    return false;
  }
  if (const Param* e = find_param(na->params, "expires"); e && !parse_uint(e->value)) return false;
  return true;
}

std::optional<std::string_view> reference_defect(const Message& m) {
  if (!m.is_request) return std::nullopt;
  if (m.request_uri.empty() || has_ws(m.request_uri) || m.request_uri.front() == '<') return "Request-URI";
  // A sip: or sips: URI must parse; another scheme is not a syntax error but unsupported (416).
  const auto colon = m.request_uri.find(':');
  if (colon == std::string_view::npos || colon == 0) return "Request-URI";
  const auto scheme = m.request_uri.substr(0, colon);
  if (iequals(scheme, "sip") || iequals(scheme, "sips")) {
    auto ruri = parse_uri(m.request_uri);
    if (!ruri || ruri->host.empty()) return "Request-URI";
  }
  struct Single {
    HeaderType type;
    std::string_view missing;
    std::string_view repeated;
  };
  for (const auto& [type, missing, repeated] :
       {Single{HeaderType::From, "missing From", "repeated From"}, Single{HeaderType::To, "missing To", "repeated To"},
        Single{HeaderType::CallId, "missing Call-ID", "repeated Call-ID"},
        Single{HeaderType::CSeq, "missing CSeq", "repeated CSeq"}}) {
    const auto n = m.count(type);
    if (n == 0) return missing;
    if (n > 1) return repeated;
  }
  if (m.count(HeaderType::MaxForwards) > 1) return "repeated Max-Forwards";
  if (m.count(HeaderType::Expires) > 1) return "repeated Expires";
  for (auto v : reference_split_via(m)) {
    if (!parse_via(v)) return "Via";
  }
  if (!strict_name_addr(m.value(HeaderType::From), false)) return "From";
  if (!strict_name_addr(m.value(HeaderType::To), false)) return "To";
  if (trim(m.value(HeaderType::CallId)).empty() || has_ws(m.value(HeaderType::CallId))) return "Call-ID";
  // RFC 3261 8.1.1.5: the CSeq number is below 2^31.
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  if (!cseq || cseq->number >= (1u << 31)) return "CSeq";
  if (const Header* mf = m.find(HeaderType::MaxForwards)) {
    auto v = parse_uint(mf->value);
    if (!v || *v > 255) return "Max-Forwards";
  }
  if (const Header* e = m.find(HeaderType::Expires); e && !parse_uint(e->value)) return "Expires";
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : reference_split_list(h.value)) {
      if (!strict_name_addr(v, true)) return "Contact";
    }
  }
  return std::nullopt;
}

void check(bool ok) {
  if (!ok) std::abort();
}

bool same_params(const Params& a, const Params& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].value != b[i].value || a[i].has_value != b[i].has_value) return false;
  }
  return true;
}

bool same_name_addr(const NameAddr& a, const NameAddr& b) {
  return a.display == b.display && a.uri == b.uri && a.star == b.star && same_params(a.params, b.params);
}

void check_parts(const Message& m) {
  for (const auto& h : m.headers) {
    std::vector<std::string_view> items;
    for_each_list_item(h.value, [&](std::string_view v) { items.push_back(v); });
    check(items == reference_split_list(h.value));
  }
  check(!reference_split_via(m).empty() == has_via_value(m));
  RequestParts parts;
  const auto defect = request_defect(m, parts);
  check(defect == reference_defect(m));
  check(request_defect(m) == defect);
  if (defect || !m.is_request) return;
  const auto vias = reference_split_via(m);
  if (!vias.empty()) {
    auto top = parse_via(vias.front());
    check(top.has_value() && parts.top_via_text == vias.front());
    check(top->protocol == parts.top_via.protocol && top->transport == parts.top_via.transport &&
          top->host == parts.top_via.host && top->port == parts.top_via.port &&
          same_params(top->params, parts.top_via.params));
  }
  auto from = parse_name_addr(m.value(HeaderType::From));
  auto to = parse_name_addr(m.value(HeaderType::To));
  check(from && to && same_name_addr(*from, parts.from) && same_name_addr(*to, parts.to));
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  check(cseq && cseq->number == parts.cseq.number && cseq->method == parts.cseq.method);
  if (const Header* e = m.find(HeaderType::Expires)) {
    check(parts.expires == parse_uint(e->value).value());
  } else {
    check(!parts.expires);
  }
  if (const Header* mf = m.find(HeaderType::MaxForwards)) {
    check(parts.max_forwards == parse_uint(mf->value).value());
  } else {
    check(!parts.max_forwards);
  }
  std::size_t i = 0;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : reference_split_list(h.value)) {
      auto c = parse_name_addr(v);
      check(c && i < parts.contacts.size() && same_name_addr(*c, parts.contacts[i]));
      ++i;
    }
  }
  check(i == parts.contacts.size());
}

void touch_headers(const Message& m) {
  for (const auto& h : m.headers) {
    switch (h.type) {
      case HeaderType::Via:
        for (auto v : split_list(h.value)) {
          if (auto via = parse_via(v)) (void)via->branch();
        }
        break;
      case HeaderType::From:
      case HeaderType::To:
      case HeaderType::Contact:
      case HeaderType::Route:
      case HeaderType::RecordRoute:
        for (auto v : split_list(h.value)) {
          if (auto na = parse_name_addr(v); na && !na->star) {
            (void)na->tag();
            if (auto u = parse_uri(na->uri)) (void)find_param(u->params, "lr");
          }
        }
        break;
      case HeaderType::CSeq: (void)parse_cseq(h.value); break;
      case HeaderType::Expires:
      case HeaderType::ContentLength:
      case HeaderType::MaxForwards: (void)parse_uint(h.value); break;
      case HeaderType::Authorization:
      case HeaderType::ProxyAuthorization: (void)parse_digest_credentials(h.value); break;
      default: (void)collapse_whitespace(h.value); break;
    }
  }
  if (m.is_request) {
    (void)parse_uri(m.request_uri);
    check_parts(m);  // the registrar's checks before method dispatch, against the reference
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Limits limits;
  if (auto m = parse_message(bytes, limits)) {
    touch_headers(*m);
  } else if (auto s = salvage_request(bytes, limits)) {
    touch_headers(*s);
  }

  StreamFramer framer(limits);
  std::size_t pos = 0;
  std::size_t step = size == 0 ? 1 : 1 + data[0] % 64;
  while (pos < size) {
    const auto n = std::min(step, size - pos);
    framer.append(bytes.substr(pos, n));
    pos += n;
    while (true) {
      auto f = framer.next();
      if (!f) return 0;  // the stream would be closed
      if (!*f) break;
      if ((*f)->kind == StreamFramer::Frame::Kind::Message) {
        if (auto m = parse_message((*f)->bytes, limits)) touch_headers(*m);
      }
      framer.consume();
    }
  }
  return 0;
}
