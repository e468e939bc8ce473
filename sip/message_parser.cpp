// First pass over a SIP message: start line, header lines (folding, compact names), body by
// Content-Length. Pure: no allocation beyond the header vector, no logging.
#include <array>
#include <cctype>

#include "sip/sip.hpp"

namespace ve::sip {
namespace {

// ASCII only, without the locale lookup of std::tolower: header names and tokens are ASCII.
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '-':
    case '.':
    case '!':
    case '%':
    case '*':
    case '_':
    case '+':
    case '`':
    case '\'':
    case '~': return true;
    default: return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_token_char(c)) return false;
  return true;
}

// Header names by first letter, long and compact forms (RFC 3261 7.3.3 and the compact form
// registry). Kamailio's parse_hname2.c does the same with a hashed table.
struct NameEntry {
  std::string_view name;
  HeaderType type;
};
constexpr std::array kNames{
    NameEntry{"via", HeaderType::Via},
    NameEntry{"v", HeaderType::Via},
    NameEntry{"from", HeaderType::From},
    NameEntry{"f", HeaderType::From},
    NameEntry{"to", HeaderType::To},
    NameEntry{"t", HeaderType::To},
    NameEntry{"call-id", HeaderType::CallId},
    NameEntry{"i", HeaderType::CallId},
    NameEntry{"cseq", HeaderType::CSeq},
    NameEntry{"contact", HeaderType::Contact},
    NameEntry{"m", HeaderType::Contact},
    NameEntry{"expires", HeaderType::Expires},
    NameEntry{"min-expires", HeaderType::MinExpires},
    NameEntry{"max-forwards", HeaderType::MaxForwards},
    NameEntry{"content-length", HeaderType::ContentLength},
    NameEntry{"l", HeaderType::ContentLength},
    NameEntry{"content-type", HeaderType::ContentType},
    NameEntry{"c", HeaderType::ContentType},
    NameEntry{"authorization", HeaderType::Authorization},
    NameEntry{"proxy-authorization", HeaderType::ProxyAuthorization},
    NameEntry{"www-authenticate", HeaderType::WwwAuthenticate},
    NameEntry{"user-agent", HeaderType::UserAgent},
    NameEntry{"server", HeaderType::Server},
    NameEntry{"supported", HeaderType::Supported},
    NameEntry{"k", HeaderType::Supported},
    NameEntry{"require", HeaderType::Require},
    NameEntry{"reason", HeaderType::Reason},
    NameEntry{"event", HeaderType::Event},
    NameEntry{"o", HeaderType::Event},
    NameEntry{"allow-events", HeaderType::AllowEvents},
    NameEntry{"u", HeaderType::AllowEvents},
    NameEntry{"allow", HeaderType::Allow},
    NameEntry{"route", HeaderType::Route},
    NameEntry{"record-route", HeaderType::RecordRoute},
    NameEntry{"refer-to", HeaderType::ReferTo},
    NameEntry{"r", HeaderType::ReferTo},
    NameEntry{"date", HeaderType::Date},
};

HeaderType classify(std::string_view name) {
  // The table is small; a first-letter and length check rejects almost every entry cheaply.
  const char first = lower(name.front());
  for (const auto& e : kNames) {
    if (e.name.size() == name.size() && e.name.front() == first && iequals(e.name, name)) return e.type;
  }
  return HeaderType::Other;
}

bool parse_start_line(std::string_view line, Message& m, ParseError& error) {
  if (line.size() >= 4 && iequals(line.substr(0, 4), "SIP/")) {
    // SIP/2.0 SP 3DIGIT SP reason
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos || !iequals(line.substr(0, sp), "SIP/2.0")) {
      error = ParseError::BadVersion;
      return false;
    }
    auto rest = line.substr(sp + 1);
    if (rest.size() < 3 || !std::isdigit(static_cast<unsigned char>(rest[0])) ||
        !std::isdigit(static_cast<unsigned char>(rest[1])) || !std::isdigit(static_cast<unsigned char>(rest[2])) ||
        (rest.size() > 3 && rest[3] != ' ')) {
      error = ParseError::BadStatusCode;
      return false;
    }
    m.status = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
    if (m.status < 100 || m.status > 699) {
      error = ParseError::BadStatusCode;
      return false;
    }
    m.reason = rest.size() > 4 ? rest.substr(4) : std::string_view{};
    m.is_request = false;
    return true;
  }
  // Method SP Request-URI SP SIP-Version
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) {
    error = ParseError::BadStartLine;
    return false;
  }
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) {
    error = ParseError::BadStartLine;
    return false;
  }
  const auto method = line.substr(0, sp1);
  const auto uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    error = ParseError::BadStartLine;
    return false;
  }
  // More than two spaces (white space inside the Request-URI, RFC 4475 3.1.2.8 - 3.1.2.10) is a
  // syntax error, not an unknown version.
  if (version.find_first_of(" \t") != std::string_view::npos) {
    error = ParseError::BadStartLine;
    return false;
  }
  if (!iequals(version, "SIP/2.0")) {
    error = ParseError::BadVersion;
    return false;
  }
  m.is_request = true;
  m.method_text = method;
  m.method = method_from(method);
  m.request_uri = uri;
  return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

std::string collapse_whitespace(std::string_view s) {
  s = trim(s);
  std::string out;
  out.reserve(s.size());
  bool in_ws = false;
  for (char c : s) {
    const bool ws = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    if (ws) {
      in_ws = true;
      continue;
    }
    if (in_ws) out.push_back(' ');
    in_ws = false;
    out.push_back(c);
  }
  return out;
}

Method method_from(std::string_view t) {
  // Methods are case-sensitive (RFC 3261 7.1).
  if (t == "REGISTER") return Method::Register;
  if (t == "INVITE") return Method::Invite;
  if (t == "ACK") return Method::Ack;
  if (t == "BYE") return Method::Bye;
  if (t == "CANCEL") return Method::Cancel;
  if (t == "OPTIONS") return Method::Options;
  if (t == "REFER") return Method::Refer;
  if (t == "SUBSCRIBE") return Method::Subscribe;
  if (t == "NOTIFY") return Method::Notify;
  if (t == "PUBLISH") return Method::Publish;
  if (t == "MESSAGE") return Method::Message;
  if (t == "INFO") return Method::Info;
  if (t == "PRACK") return Method::Prack;
  if (t == "UPDATE") return Method::Update;
  return Method::Other;
}

std::string_view to_string(Method m) {
  switch (m) {
    case Method::Other: return "OTHER";
    case Method::Register: return "REGISTER";
    case Method::Invite: return "INVITE";
    case Method::Ack: return "ACK";
    case Method::Bye: return "BYE";
    case Method::Cancel: return "CANCEL";
    case Method::Options: return "OPTIONS";
    case Method::Refer: return "REFER";
    case Method::Subscribe: return "SUBSCRIBE";
    case Method::Notify: return "NOTIFY";
    case Method::Publish: return "PUBLISH";
    case Method::Message: return "MESSAGE";
    case Method::Info: return "INFO";
    case Method::Prack: return "PRACK";
    case Method::Update: return "UPDATE";
  }
  return "?";
}

std::string_view to_string(ParseError e) {
  switch (e) {
    case ParseError::Empty: return "empty";
    case ParseError::TooLarge: return "message too large";
    case ParseError::LineTooLong: return "line too long";
    case ParseError::TooManyHeaders: return "too many headers";
    case ParseError::BadStartLine: return "bad start line";
    case ParseError::BadVersion: return "bad SIP version";
    case ParseError::BadStatusCode: return "bad status code";
    case ParseError::BadHeader: return "bad header line";
    case ParseError::NoHeaderEnd: return "no end of headers";
    case ParseError::BadContentLength: return "bad Content-Length";
    case ParseError::BodyTruncated: return "body shorter than Content-Length";
    case ParseError::BadUri: return "bad URI";
    case ParseError::BadVia: return "bad Via";
    case ParseError::BadNameAddr: return "bad name-addr";
    case ParseError::BadCSeq: return "bad CSeq";
    case ParseError::BadNumber: return "bad number";
    case ParseError::BadAuth: return "bad Authorization";
  }
  return "?";
}

std::string_view to_string(HeaderType t) {
  switch (t) {
    case HeaderType::Other: return "Other";
    case HeaderType::Via: return "Via";
    case HeaderType::From: return "From";
    case HeaderType::To: return "To";
    case HeaderType::CallId: return "Call-ID";
    case HeaderType::CSeq: return "CSeq";
    case HeaderType::Contact: return "Contact";
    case HeaderType::Expires: return "Expires";
    case HeaderType::MinExpires: return "Min-Expires";
    case HeaderType::MaxForwards: return "Max-Forwards";
    case HeaderType::ContentLength: return "Content-Length";
    case HeaderType::ContentType: return "Content-Type";
    case HeaderType::Authorization: return "Authorization";
    case HeaderType::ProxyAuthorization: return "Proxy-Authorization";
    case HeaderType::WwwAuthenticate: return "WWW-Authenticate";
    case HeaderType::UserAgent: return "User-Agent";
    case HeaderType::Server: return "Server";
    case HeaderType::Supported: return "Supported";
    case HeaderType::Require: return "Require";
    case HeaderType::Reason: return "Reason";
    case HeaderType::Event: return "Event";
    case HeaderType::AllowEvents: return "Allow-Events";
    case HeaderType::Allow: return "Allow";
    case HeaderType::Route: return "Route";
    case HeaderType::RecordRoute: return "Record-Route";
    case HeaderType::ReferTo: return "Refer-To";
    case HeaderType::Date: return "Date";
  }
  return "?";
}

const Header* Message::find(HeaderType type) const {
  for (const auto& h : headers)
    if (h.type == type) return &h;
  return nullptr;
}

std::string_view Message::value(HeaderType type) const {
  const Header* h = find(type);
  return h ? h->value : std::string_view{};
}

std::size_t Message::count(HeaderType type) const {
  std::size_t n = 0;
  for (const auto& h : headers) n += h.type == type ? 1 : 0;
  return n;
}

const Header* Message::find_named(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return &h;
  return nullptr;
}

Result<Message, ParseError> parse_message(std::string_view bytes, const Limits& limits) {
  if (bytes.size() > limits.max_message_bytes) return unexpected(ParseError::TooLarge);
  std::size_t pos = 0;
  const std::size_t n = bytes.size();
  // RFC 3261 7.5: ignore CRLFs before the start line.
  while (pos < n && (bytes[pos] == '\r' || bytes[pos] == '\n')) ++pos;
  if (pos == n) return unexpected(ParseError::Empty);
  const std::size_t start = pos;

  // Next line [pos, end) without its terminator; `next` is where the following line begins.
  // Accepts CRLF and bare LF.
  auto next_line = [&](std::string_view& line, std::size_t& next) -> Result<void, ParseError> {
    const auto nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) {
      return n - pos > limits.max_line_bytes ? Result<void, ParseError>(unexpected(ParseError::LineTooLong))
                                             : Result<void, ParseError>(unexpected(ParseError::NoHeaderEnd));
    }
    std::size_t end = nl;
    if (end > pos && bytes[end - 1] == '\r') --end;
    if (end - pos > limits.max_line_bytes) return unexpected(ParseError::LineTooLong);
    line = bytes.substr(pos, end - pos);
    next = nl + 1;
    return {};
  };

  Message m;
  std::string_view line;
  std::size_t next = 0;
  if (auto r = next_line(line, next); !r) return unexpected(r.error());
  ParseError error{};
  if (!parse_start_line(line, m, error)) return unexpected(error);
  pos = next;

  // Header values are kept as [begin, end) offsets until folding is resolved, then trimmed.
  std::size_t body_start = 0;
  bool ended = false;
  const char* last_value_begin = nullptr;
  while (pos < n) {
    if (auto r = next_line(line, next); !r) return unexpected(r.error());
    pos = next;
    if (line.empty()) {
      body_start = pos;
      ended = true;
      break;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      // Folded continuation of the previous header (RFC 3261 7.3.1).
      if (m.headers.empty()) return unexpected(ParseError::BadHeader);
      const char* end = line.data() + line.size();
      m.headers.back().value = std::string_view(last_value_begin, static_cast<std::size_t>(end - last_value_begin));
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return unexpected(ParseError::BadHeader);
    auto name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (!is_token(name)) return unexpected(ParseError::BadHeader);
    if (m.headers.size() >= limits.max_headers) return unexpected(ParseError::TooManyHeaders);
    Header h;
    h.name = name;
    h.type = classify(name);
    h.value = line.substr(colon + 1);
    last_value_begin = h.value.data();
    m.headers.push_back(h);
  }
  if (!ended) return unexpected(ParseError::NoHeaderEnd);
  for (auto& h : m.headers) h.value = trim(h.value);

  std::size_t body_len = n - body_start;
  std::optional<std::uint32_t> content_length;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::ContentLength) continue;
    auto v = parse_uint(h.value);
    // Several different lengths (RFC 4475 3.3.9): no way to tell where the body ends.
    if (!v || (content_length && *content_length != *v)) return unexpected(ParseError::BadContentLength);
    content_length = *v;
  }
  if (content_length) {
    if (*content_length > n - body_start) return unexpected(ParseError::BodyTruncated);
    body_len = *content_length;
  }
  m.body = bytes.substr(body_start, body_len);
  m.raw = bytes.substr(start, body_start + body_len - start);
  return m;
}

std::optional<Message> salvage_request(std::string_view bytes, const Limits& limits) {
  if (bytes.size() > limits.max_message_bytes) return std::nullopt;
  Message m;
  std::size_t pos = 0;
  while (pos < bytes.size() && (bytes[pos] == '\r' || bytes[pos] == '\n')) ++pos;
  bool first = true;
  while (pos < bytes.size()) {
    auto nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) nl = bytes.size();
    auto line = bytes.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    if (line.size() > limits.max_line_bytes) return std::nullopt;
    if (first) {
      first = false;
      ParseError error{};
      if (!parse_start_line(line, m, error) || !m.is_request) {
        // A request with a broken version or URI is still a request if the line has 3 parts.
        const auto sp = line.find(' ');
        if (sp == std::string_view::npos || !is_token(line.substr(0, sp)) ||
            (line.size() >= 4 && iequals(line.substr(0, 4), "SIP/"))) {
          return std::nullopt;
        }
        m.is_request = true;
        m.method_text = line.substr(0, sp);
        m.method = method_from(m.method_text);
      }
      continue;
    }
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || line.front() == ' ' || line.front() == '\t') continue;
    auto name = trim(line.substr(0, colon));
    if (!is_token(name)) continue;
    if (m.headers.size() >= limits.max_headers) break;
    m.headers.push_back(Header{classify(name), name, trim(line.substr(colon + 1))});
  }
  for (auto t : {HeaderType::Via, HeaderType::From, HeaderType::To, HeaderType::CallId, HeaderType::CSeq}) {
    if (!m.find(t)) return std::nullopt;
  }
  m.raw = bytes;
  return m;
}

// ---- StreamFramer ----

std::string_view to_string(StreamFramer::Error e) {
  switch (e) {
    case StreamFramer::Error::TooLarge: return "message too large";
    case StreamFramer::Error::BadContentLength: return "bad Content-Length";
    case StreamFramer::Error::LineTooLong: return "line too long";
  }
  return "?";
}

Result<std::optional<StreamFramer::Frame>, StreamFramer::Error> StreamFramer::next() {
  if (pending_ != 0) consume();
  // Keep-alives between messages (RFC 5626 4.4.1): CRLFCRLF is a ping, a lone CRLF a pong.
  while (buffer_.size() >= 2 && buffer_[0] == '\r' && buffer_[1] == '\n') {
    if (buffer_.size() >= 4 && buffer_[2] == '\r' && buffer_[3] == '\n') {
      pending_ = 4;
      return std::optional<Frame>(Frame{Frame::Kind::Ping, std::string_view(buffer_.data(), 4)});
    }
    if (buffer_.size() < 4 && buffer_.size() >= 3 && buffer_[2] != '\r') {
      buffer_.erase(0, 2);
      continue;
    }
    if (buffer_.size() < 4) return std::optional<Frame>{};
    buffer_.erase(0, 2);
  }
  while (!buffer_.empty() && buffer_[0] == '\n') buffer_.erase(0, 1);

  const std::string_view data(buffer_);
  // End of headers: an empty line (CRLF CRLF, or LF LF from sloppy senders).
  std::size_t header_end = std::string_view::npos;
  std::size_t line_start = 0;
  while (true) {
    const auto nl = data.find('\n', line_start);
    if (nl == std::string_view::npos) {
      if (data.size() - line_start > limits_.max_line_bytes) return unexpected(Error::LineTooLong);
      if (data.size() > limits_.max_message_bytes) return unexpected(Error::TooLarge);
      return std::optional<Frame>{};
    }
    std::size_t end = nl;
    if (end > line_start && data[end - 1] == '\r') --end;
    if (end - line_start > limits_.max_line_bytes) return unexpected(Error::LineTooLong);
    if (end == line_start && line_start != 0) {
      header_end = nl + 1;
      break;
    }
    line_start = nl + 1;
    if (line_start > limits_.max_message_bytes) return unexpected(Error::TooLarge);
  }

  // Content-Length (or compact "l") among the header lines; absent means no body.
  std::size_t content_length = 0;
  bool seen_length = false;
  std::size_t p = 0;
  while (p < header_end) {
    const auto nl = data.find('\n', p);
    const auto line = data.substr(p, nl - p);
    p = nl + 1;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || line.empty() || line.front() == ' ' || line.front() == '\t') continue;
    auto name = trim(line.substr(0, colon));
    if (iequals(name, "content-length") || iequals(name, "l")) {
      auto v = parse_uint(line.substr(colon + 1));
      // Two different lengths: the next message's start is unknowable, the stream is lost.
      if (!v || (seen_length && content_length != *v)) return unexpected(Error::BadContentLength);
      content_length = *v;
      seen_length = true;
    }
  }
  if (content_length > limits_.max_message_bytes || header_end + content_length > limits_.max_message_bytes) {
    return unexpected(Error::TooLarge);
  }
  const std::size_t total = header_end + content_length;
  if (buffer_.size() < total) return std::optional<Frame>{};
  pending_ = total;
  return std::optional<Frame>(Frame{Frame::Kind::Message, std::string_view(buffer_.data(), total)});
}

void StreamFramer::consume() {
  buffer_.erase(0, pending_);
  pending_ = 0;
}

}  // namespace ve::sip
