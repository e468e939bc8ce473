// Typed parsing of header values, done only when someone asks (Via for a response, Contact and
// Authorization for a REGISTER). Pure functions over string_views; results point into the input.
#include <cctype>

#include "sip/sip.hpp"

namespace ve::sip {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// One of a few stop characters; a plain loop, not memchr per character scanned.
bool is_stop(std::string_view stop, char c) {
  for (char x : stop)
    if (x == c) return true;
  return false;
}

void skip_ws(std::string_view s, std::size_t& i) {
  while (i < s.size() && is_ws(s[i])) ++i;
}

// A quoted string starting at s[i] == '"'. On success `value` is the inside (escapes kept) and i
// is past the closing quote.
bool read_quoted(std::string_view s, std::size_t& i, std::string_view& value) {
  const std::size_t begin = i + 1;
  for (std::size_t j = begin; j < s.size(); ++j) {
    if (s[j] == '\\') {
      ++j;
      continue;
    }
    if (s[j] == '"') {
      value = s.substr(begin, j - begin);
      i = j + 1;
      return true;
    }
  }
  return false;
}

// ;name[=value] pairs from s[i]. Stops at the first character that is not ';' (after
// whitespace). `stop` lists characters that end a bare value besides ';' and whitespace.
bool read_params(std::string_view s, std::size_t& i, Params& out, std::string_view stop) {
  while (true) {
    std::size_t j = i;
    skip_ws(s, j);
    if (j >= s.size() || s[j] != ';') {
      i = j;
      return true;
    }
    ++j;
    skip_ws(s, j);
    const std::size_t name_begin = j;
    while (j < s.size() && s[j] != '=' && s[j] != ';' && !is_ws(s[j]) && !is_stop(stop, s[j])) ++j;
    Param p;
    p.name = s.substr(name_begin, j - name_begin);
    if (p.name.empty()) return false;
    std::size_t k = j;
    skip_ws(s, k);
    if (k < s.size() && s[k] == '=') {
      ++k;
      skip_ws(s, k);
      p.has_value = true;
      if (k < s.size() && s[k] == '"') {
        if (!read_quoted(s, k, p.value)) return false;
      } else {
        const std::size_t vb = k;
        while (k < s.size() && s[k] != ';' && !is_ws(s[k]) && !is_stop(stop, s[k])) ++k;
        p.value = s.substr(vb, k - vb);
      }
      j = k;
    }
    out.push_back(p);
    i = j;
  }
}

bool parse_port(std::string_view digits, std::optional<std::uint16_t>& port) {
  if (digits.empty() || digits.size() > 5) return false;
  std::uint32_t v = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

// host[:port] at s[i]; host is an IPv6 reference in brackets or a token.
bool read_hostport(std::string_view s, std::size_t& i, std::string_view& host, std::optional<std::uint16_t>& port,
                   std::string_view stop) {
  const std::size_t hb = i;
  if (i < s.size() && s[i] == '[') {
    const auto close = s.find(']', i);
    if (close == std::string_view::npos) return false;
    i = close + 1;
  } else {
    while (i < s.size() && s[i] != ':' && !is_ws(s[i]) && !is_stop(stop, s[i])) ++i;
  }
  host = s.substr(hb, i - hb);
  if (host.empty()) return false;
  if (i < s.size() && s[i] == ':') {
    const std::size_t pb = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (!parse_port(s.substr(pb, i - pb), port)) return false;
  }
  return true;
}

}  // namespace

const Param* find_param(const Params& params, std::string_view name) {
  for (const auto& p : params)
    if (iequals(p.name, name)) return &p;
  return nullptr;
}

std::string_view NameAddr::tag() const {
  const Param* p = find_param(params, "tag");
  return p ? p->value : std::string_view{};
}

std::string_view Via::branch() const {
  const Param* p = find_param(params, "branch");
  return p ? p->value : std::string_view{};
}

Result<std::uint32_t, ParseError> parse_uint(std::string_view value) {
  value = trim(value);
  if (value.empty() || value.size() > 10) return unexpected(ParseError::BadNumber);
  std::uint64_t v = 0;
  for (char c : value) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return unexpected(ParseError::BadNumber);
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (v > 0xffffffffULL) return unexpected(ParseError::BadNumber);
  return static_cast<std::uint32_t>(v);
}

Result<Uri, ParseError> parse_uri(std::string_view text) {
  Uri u;
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return unexpected(ParseError::BadUri);
  u.scheme = text.substr(0, colon);
  for (char c : u.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return unexpected(ParseError::BadUri);
  }
  auto rest = text.substr(colon + 1);
  if (rest.empty()) return unexpected(ParseError::BadUri);
  if (!iequals(u.scheme, "sip") && !iequals(u.scheme, "sips")) {
    u.host = rest;  // tel:, urn: ... kept opaque
    return u;
  }
  const auto qmark = rest.find('?');
  auto before_headers = rest.substr(0, qmark);
  if (qmark != std::string_view::npos) u.headers = rest.substr(qmark + 1);
  // userinfo ends at the last '@' (user parts may carry ';' but never an unescaped '@').
  const auto at = before_headers.rfind('@');
  std::size_t i = 0;
  if (at != std::string_view::npos) {
    const auto userinfo = before_headers.substr(0, at);
    const auto pc = userinfo.find(':');
    u.user = userinfo.substr(0, pc);
    if (pc != std::string_view::npos) u.password = userinfo.substr(pc + 1);
    if (u.user.empty()) return unexpected(ParseError::BadUri);
    i = at + 1;
  }
  if (!read_hostport(before_headers, i, u.host, u.port, ";?")) return unexpected(ParseError::BadUri);
  if (!read_params(before_headers, i, u.params, "?")) return unexpected(ParseError::BadUri);
  if (i != before_headers.size()) return unexpected(ParseError::BadUri);
  for (char c : before_headers) {
    if (is_ws(c) || c == '<' || c == '>' || c == '"') return unexpected(ParseError::BadUri);
  }
  return u;
}

std::vector<std::string_view> split_list(std::string_view value) {
  std::vector<std::string_view> out;
  for_each_list_item(value, [&](std::string_view item) { out.push_back(item); });
  return out;
}

Result<NameAddr, ParseError> parse_name_addr(std::string_view text) {
  NameAddr na;
  const auto s = trim(text);
  if (s == "*") {
    na.star = true;
    return na;
  }
  std::size_t i = 0;
  if (s.empty()) return unexpected(ParseError::BadNameAddr);
  std::size_t lt = std::string_view::npos;
  if (s[0] == '"') {
    if (!read_quoted(s, i, na.display)) return unexpected(ParseError::BadNameAddr);
    skip_ws(s, i);
    if (i >= s.size() || s[i] != '<') return unexpected(ParseError::BadNameAddr);
    lt = i;
  } else {
    // A '<' before any ';' makes it a name-addr with an optional token display name.
    for (std::size_t j = 0; j < s.size() && s[j] != ';'; ++j) {
      if (s[j] == '<') {
        lt = j;
        break;
      }
    }
    if (lt != std::string_view::npos) na.display = trim(s.substr(0, lt));
  }
  if (lt != std::string_view::npos) {
    const auto gt = s.find('>', lt);
    if (gt == std::string_view::npos) return unexpected(ParseError::BadNameAddr);
    na.uri = trim(s.substr(lt + 1, gt - lt - 1));
    i = gt + 1;
  } else {
    // addr-spec: its ';' parameters belong to the header, not the URI (RFC 3261 20.10).
    i = 0;
    while (i < s.size() && s[i] != ';' && !is_ws(s[i])) ++i;
    na.uri = s.substr(0, i);
  }
  if (na.uri.empty()) return unexpected(ParseError::BadNameAddr);
  if (!read_params(s, i, na.params, ",")) return unexpected(ParseError::BadNameAddr);
  if (i != s.size()) return unexpected(ParseError::BadNameAddr);
  return na;
}

Result<Via, ParseError> parse_via(std::string_view one_via) {
  Via v;
  const auto s = trim(one_via);
  std::size_t i = 0;
  auto token = [&](std::string_view& out) {
    skip_ws(s, i);
    const std::size_t b = i;
    while (i < s.size() && !is_ws(s[i]) && s[i] != '/') ++i;
    out = s.substr(b, i - b);
    return !out.empty();
  };
  auto slash = [&] {
    skip_ws(s, i);
    if (i >= s.size() || s[i] != '/') return false;
    ++i;
    return true;
  };
  std::string_view name, version;
  if (!token(name) || !slash() || !token(version) || !slash() || !token(v.transport))
    return unexpected(ParseError::BadVia);
  if (!iequals(name, "SIP") || version != "2.0") return unexpected(ParseError::BadVia);
  v.protocol = s.substr(0, static_cast<std::size_t>(version.data() + version.size() - s.data()));
  if (i >= s.size() || !is_ws(s[i])) return unexpected(ParseError::BadVia);
  skip_ws(s, i);
  if (!read_hostport(s, i, v.host, v.port, ";,")) return unexpected(ParseError::BadVia);
  if (!read_params(s, i, v.params, ",")) return unexpected(ParseError::BadVia);
  skip_ws(s, i);
  // A trailing comment "(...)" is allowed by the grammar; nothing else.
  if (i < s.size() && s[i] != '(') return unexpected(ParseError::BadVia);
  return v;
}

std::vector<std::string_view> via_values(const Message& m) {
  std::vector<std::string_view> out;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Via) continue;
    for_each_list_item(h.value, [&](std::string_view v) { out.push_back(v); });
  }
  return out;
}

bool has_via_value(const Message& m) {
  // A list has a non-empty item exactly when some character is neither a comma nor white space
  // (quotes and <> are such characters themselves), so no need to cut it.
  for (const auto& h : m.headers) {
    if (h.type == HeaderType::Via && h.value.find_first_not_of(", \t\r\n") != std::string_view::npos) return true;
  }
  return false;
}

Result<CSeq, ParseError> parse_cseq(std::string_view value) {
  const auto s = trim(value);
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  auto number = parse_uint(s.substr(0, i));
  if (!number || *number > 0x7fffffffU) return unexpected(ParseError::BadCSeq);  // < 2**31 (RFC 3261 8.1.1.5)
  std::size_t j = i;
  skip_ws(s, j);
  if (j == i || j >= s.size()) return unexpected(ParseError::BadCSeq);
  CSeq c;
  c.number = *number;
  c.method = s.substr(j);
  for (char ch : c.method) {
    if (is_ws(ch)) return unexpected(ParseError::BadCSeq);
  }
  return c;
}

Result<DigestCredentials, ParseError> parse_digest_credentials(std::string_view value) {
  const auto s = trim(value);
  std::size_t i = 0;
  while (i < s.size() && !is_ws(s[i])) ++i;
  if (!iequals(s.substr(0, i), "Digest")) return unexpected(ParseError::BadAuth);
  DigestCredentials c;
  bool well_formed = true;
  for_each_list_item(s.substr(i), [&](std::string_view item) {
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) return well_formed = false;
    const auto name = trim(item.substr(0, eq));
    auto v = trim(item.substr(eq + 1));
    if (!v.empty() && v.front() == '"') {
      if (v.size() < 2 || v.back() != '"') return well_formed = false;
      v = v.substr(1, v.size() - 2);
    }
    if (iequals(name, "username"))
      c.username = v;
    else if (iequals(name, "realm"))
      c.realm = v;
    else if (iequals(name, "nonce"))
      c.nonce = v;
    else if (iequals(name, "uri"))
      c.uri = v;
    else if (iequals(name, "response"))
      c.response = v;
    else if (iequals(name, "algorithm"))
      c.algorithm = v;
    else if (iequals(name, "cnonce"))
      c.cnonce = v;
    else if (iequals(name, "opaque"))
      c.opaque = v;
    else if (iequals(name, "qop"))
      c.qop = v;
    else if (iequals(name, "nc"))
      c.nc = v;
    return true;
  });
  if (!well_formed) return unexpected(ParseError::BadAuth);
  if (c.username.empty() || c.nonce.empty() || c.response.empty()) return unexpected(ParseError::BadAuth);
  return c;
}

}  // namespace ve::sip

namespace ve::sip {
namespace {

bool has_ws(std::string_view s) { return s.find_first_of(" \t\r\n") != std::string_view::npos; }

// From/To/Contact as RFC 3261 25.1 writes them: an unquoted display name is tokens and spaces
// only, nothing but the URI between < and >, and an addr-spec without <> carries no '?' headers
// or commas (RFC 4475 3.1.2.6, 3.1.2.13 - 3.1.2.15).
// `out` is the parsed value (also when it is not strict).
bool strict_name_addr(std::string_view value, bool allow_star, NameAddr& out) {
  const auto s = trim(value);
  auto parsed = parse_name_addr(s);
  if (!parsed) return false;
  out = std::move(*parsed);
  const NameAddr* na = &out;
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

}  // namespace

std::optional<std::string_view> request_defect(const Message& m) {
  RequestParts parts;
  return request_defect(m, parts);
}

std::optional<std::string_view> request_defect(const Message& m, RequestParts& parts) {
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
  // One walk over the headers: counts of the single ones and their values, every Via and Contact
  // value checked as it comes.
  std::size_t n_from = 0, n_to = 0, n_call_id = 0, n_cseq = 0, n_max_forwards = 0, n_expires = 0;
  std::string_view from, to, call_id, cseq_text, max_forwards, expires;
  bool via_ok = true, contact_ok = true;
  for (const auto& h : m.headers) {
    switch (h.type) {
      case HeaderType::From:
        if (n_from++ == 0) from = h.value;
        break;
      case HeaderType::To:
        if (n_to++ == 0) to = h.value;
        break;
      case HeaderType::CallId:
        if (n_call_id++ == 0) call_id = h.value;
        break;
      case HeaderType::CSeq:
        if (n_cseq++ == 0) cseq_text = h.value;
        break;
      case HeaderType::MaxForwards:
        if (n_max_forwards++ == 0) max_forwards = h.value;
        break;
      case HeaderType::Expires:
        if (n_expires++ == 0) expires = h.value;
        break;
      case HeaderType::Via:
        if (via_ok) {
          via_ok = for_each_list_item(h.value, [&](std::string_view v) {
            auto via = parse_via(v);
            if (!via) return false;
            if (parts.top_via_text.empty()) {
              parts.top_via_text = v;
              parts.top_via = std::move(*via);
            }
            return true;
          });
        }
        break;
      case HeaderType::Contact:
        if (contact_ok) {
          contact_ok = for_each_list_item(h.value, [&](std::string_view v) {
            NameAddr na;
            if (!strict_name_addr(v, true, na)) return false;
            parts.contacts.push_back(std::move(na));
            return true;
          });
        }
        break;
      default: break;
    }
  }
  struct Single {
    std::size_t count;
    std::string_view missing;
    std::string_view repeated;
  };
  for (const auto& [n, missing, repeated] :
       {Single{n_from, "missing From", "repeated From"}, Single{n_to, "missing To", "repeated To"},
        Single{n_call_id, "missing Call-ID", "repeated Call-ID"}, Single{n_cseq, "missing CSeq", "repeated CSeq"}}) {
    if (n == 0) return missing;
    if (n > 1) return repeated;
  }
  if (n_max_forwards > 1) return "repeated Max-Forwards";
  if (n_expires > 1) return "repeated Expires";
  if (!via_ok) return "Via";
  if (!strict_name_addr(from, false, parts.from)) return "From";
  if (!strict_name_addr(to, false, parts.to)) return "To";
  if (trim(call_id).empty() || has_ws(call_id)) return "Call-ID";
  // RFC 3261 8.1.1.5: the CSeq number is below 2^31.
  auto cseq = parse_cseq(cseq_text);
  if (!cseq || cseq->number >= (1u << 31)) return "CSeq";
  parts.cseq = *cseq;
  if (n_max_forwards) {
    auto v = parse_uint(max_forwards);
    if (!v || *v > 255) return "Max-Forwards";
    parts.max_forwards = *v;
  }
  if (n_expires) {
    auto v = parse_uint(expires);
    if (!v) return "Expires";
    parts.expires = *v;
  }
  if (!contact_ok) return "Contact";
  return std::nullopt;
}

}  // namespace ve::sip
