// Registrar logic (RFC 3261 section 10.3) with digest authentication and Cisco phone specifics.
#include "sip/registrar.hpp"

#include <charconv>
#include <ctime>

#include <fmt/format.h>

#include "sip/upstream.hpp"
#include "ve/log.hpp"

namespace ve::sip {
namespace {

constexpr std::string_view kAllow = "REGISTER, OPTIONS, ACK";
constexpr std::string_view kServer = "voiceedge";

bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (iequals(hay.substr(i, needle.size()), needle)) return true;
  }
  return false;
}

// Value of `key=` in free text where the key starts a word (so "ActiveLoad=" does not match
// inside "InactiveLoad="). The value runs to the next space, quote, ';' or '>'.
std::string word_value(std::string_view text, std::string_view key) {
  for (std::size_t pos = 0; (pos = text.find(key, pos)) != std::string_view::npos; pos += key.size()) {
    if (pos != 0) {
      const char before = text[pos - 1];
      if (before != ' ' && before != '"' && before != ';' && before != '\t' && before != ',') continue;
    }
    std::size_t end = pos + key.size();
    while (end < text.size() && text[end] != ' ' && text[end] != '"' && text[end] != ';' && text[end] != '>' &&
           text[end] != '\t' && text[end] != '\r' && text[end] != '\n') {
      ++end;
    }
    return std::string(text.substr(pos + key.size(), end - pos - key.size()));
  }
  return {};
}

std::string unangle(std::string_view v) {
  v = trim(v);
  if (v.size() >= 2 && v.front() == '<' && v.back() == '>') v = v.substr(1, v.size() - 2);
  return std::string(v);
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_hex16(std::string& out, std::uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[16];
  for (int i = 15; i >= 0; --i, v >>= 4) buf[i] = kDigits[v & 0xf];
  out.append(buf, sizeof buf);
}

// aor == "sip:" + user + "@" + host, without building it.
bool aor_is(std::string_view aor, std::string_view user, std::string_view host) {
  return aor.size() == 5 + user.size() + host.size() && aor.substr(0, 4) == "sip:" &&
         aor.substr(4, user.size()) == user && aor[4 + user.size()] == '@' && aor.substr(5 + user.size()) == host;
}

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  const auto n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

}  // namespace

void append_top_via(std::string& out, std::string_view text, const Source& src) {
  auto via = parse_via(text);
  if (!via) {
    out += text;
    return;
  }
  append_top_via(out, text, *via, src);
}

void append_top_via(std::string& out, std::string_view text, const Via& parsed, const Source& src) {
  const Via* via = &parsed;
  auto prefix = text.substr(0, text.find(';'));
  while (!prefix.empty() && (prefix.back() == ' ' || prefix.back() == '\t')) prefix.remove_suffix(1);
  out += prefix;
  bool rport = false;
  for (const auto& p : via->params) {
    if (iequals(p.name, "received")) continue;
    if (iequals(p.name, "rport")) {
      rport = true;
      out += ";rport=";
      append_uint(out, src.port);
      continue;
    }
    out += ';';
    out += p.name;
    if (p.has_value) {
      const bool quoted = p.value.data() > text.data() && *(p.value.data() - 1) == '"';
      out += '=';
      if (quoted) out += '"';
      out += p.value;
      if (quoted) out += '"';
    }
  }
  // RFC 3261 18.2.1: received when sent-by differs from the source; RFC 3581: always with rport.
  if (rport || via->host != src.ip) {
    out += ";received=";
    out += src.ip;
  }
}

std::string_view to_string(Transport t) {
  switch (t) {
    case Transport::Udp: return "udp";
    case Transport::Tcp: return "tcp";
  }
  return "?";
}

CiscoDeviceInfo cisco_device_info(const NameAddr& contact, std::string_view reason_header) {
  CiscoDeviceInfo info;
  if (const Param* p = find_param(contact.params, "+sip.instance")) {
    // <urn:uuid:00000000-0000-0000-0000-9c57ad12a4e0>: the MAC is the last UUID group.
    const std::string urn = unangle(p->value);
    if (urn.size() > 9 && iequals(std::string_view(urn).substr(0, 9), "urn:uuid:")) {
      const auto dash = urn.rfind('-');
      if (dash != std::string::npos) {
        if (auto mac = MacAddress::parse(std::string_view(urn).substr(dash + 1)); mac && !mac->is_zero())
          info.mac = *mac;
      }
    }
  }
  if (const Param* p = find_param(contact.params, "+u.sip!devicename.ccm.cisco.com")) {
    info.device_name = std::string(p->value);
    if (!info.mac) {
      if (auto mac = MacAddress::parse(p->value)) info.mac = *mac;
    }
  }
  if (const Param* p = find_param(contact.params, "+u.sip!model.ccm.cisco.com")) info.model = std::string(p->value);
  // Reason: SIP;cause=200;text="cisco-alarm:14 Name=SEP... ActiveLoad=... InactiveLoad=... Last=..."
  info.reason_name = word_value(reason_header, "Name=");
  info.active_load = word_value(reason_header, "ActiveLoad=");
  info.inactive_load = word_value(reason_header, "InactiveLoad=");
  return info;
}

Registrar::Registrar(config::SiteConfigPtr config, LocationStore& store, EventSink& events, ServerOptions options,
                     Now now)
    : config_(std::move(config)),
      log_(ve::logger("sip")),
      store_(store),
      events_(events),
      options_(options),
      now_(std::move(now)),
      auth_(config_->sip.realm, options_.auth) {
  tag_key_ = nonces_.make(now_()).substr(16, 8);
  index_lines();
}

void Registrar::set_config(config::SiteConfigPtr config) {
  config_ = std::move(config);
  auth_.set_realm(config_->sip.realm);
  index_lines();
}

void Registrar::index_lines() {
  lines_.clear();
  for (const auto& p : config_->phones) {
    for (const auto& l : p.lines) {
      if (!l.auth_user.empty()) lines_.try_emplace(l.auth_user, &p, &l);
    }
  }
  for (const auto& p : config_->phones) {
    for (const auto& l : p.lines) {
      if (!l.extension.empty()) lines_.try_emplace(l.extension, &p, &l);
    }
  }
}

std::pair<const config::Phone*, const config::Line*> Registrar::find_line(const std::string& user) const {
  auto it = lines_.find(user);
  if (it == lines_.end()) return {nullptr, nullptr};
  return it->second;
}

void Registrar::report(const std::optional<MacAddress>& mac, Step step, Outcome outcome, std::string detail,
                       const Source& src, Facts attributes) {
  if (!mac) return;
  PhoneEvent e;
  e.attributes = std::move(attributes);
  e.mac = *mac;
  e.step = step;
  e.outcome = outcome;
  e.detail = std::move(detail);
  e.time = now_();
  e.ip = src.ip;
  e.verified = true;  // the request authenticated as the line's phone
  events_.report(std::move(e));
}

void Registrar::report_claim(const MacAddress& mac, Step step, Outcome outcome, const std::string& detail,
                             const Source& src) {
  // A request that did not authenticate names a phone only by claim. A DHCP lease of the source
  // address to that very MAC makes it evidence; otherwise the event is marked unverified and
  // carries no IP, so it cannot move the phone's address or decide its step.
  const bool leased = options_.lease_mac && options_.lease_mac(src.ip) == mac;
  PhoneEvent e;
  e.mac = mac;
  e.step = step;
  e.time = now_();
  if (leased) {
    e.outcome = outcome;
    e.detail = detail;
    e.ip = src.ip;
    e.verified = true;
  } else {
    e.outcome = Outcome::Info;
    e.detail = fmt::format("{} (unverified, from {})", detail, src.ip);
    e.verified = false;
    ++counters_.unverified_events;
  }
  events_.report(std::move(e));
}

Reply Registrar::respond(const Message& m, const RequestParts* parts, const Source& src, int code,
                         std::string_view reason, std::string_view extra) {
  Reply r;
  r.bytes.reserve(512 + extra.size());
  begin_response(r, m, parts, src, code, reason);
  r.bytes += extra;
  r.bytes += "Content-Length: 0\r\n\r\n";
  return r;
}

void Registrar::begin_response(Reply& r, const Message& m, const RequestParts* parts, const Source& src, int code,
                               std::string_view reason) {
  std::string& out = r.bytes;
  out += "SIP/2.0 ";
  append_uint(out, static_cast<std::uint64_t>(code));
  out += ' ';
  out += reason;
  out += "\r\n";
  bool first = true;
  std::optional<Via> parsed_top;
  const Via* top = nullptr;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Via) continue;
    for_each_list_item(h.value, [&](std::string_view v) {
      out += "Via: ";
      if (first) {
        // Parsed once (by request_defect(), or here): for received/rport and the answer's port.
        if (parts && !parts->top_via_text.empty()) {
          top = &parts->top_via;
        } else if (auto via = parse_via(v)) {
          parsed_top = std::move(*via);
          top = &*parsed_top;
        }
        if (top)
          append_top_via(out, v, *top, src);
        else
          out += v;
        first = false;
      } else {
        out += v;
      }
      out += "\r\n";
    });
  }
  // A header the request lacks is left out (a 400 for a request without Call-ID, From or To).
  const Header* from = m.find(HeaderType::From);
  if (from) {
    out += "From: ";
    out += from->value;
    out += "\r\n";
  }
  if (const Header* to = m.find(HeaderType::To)) {
    out += "To: ";
    out += to->value;
    if (code > 100) {
      // Tags are views into the message, whichever parse found them.
      std::string_view to_tag;
      bool to_ok = true;
      if (parts) {
        to_tag = parts->to.tag();
      } else if (auto na = parse_name_addr(to->value)) {
        to_tag = na->tag();
      } else {
        to_ok = false;
      }
      if (!to_ok || to_tag.empty()) {
        // A stable tag per request: retransmissions get the same one (RFC 3261 8.2.6.2).
        std::string_view from_tag;
        if (parts) {
          from_tag = parts->from.tag();
        } else if (from) {
          if (auto na = parse_name_addr(from->value)) from_tag = na->tag();
        }
        tag_scratch_.assign(tag_key_);
        tag_scratch_ += m.value(HeaderType::CallId);
        tag_scratch_ += from_tag;
        out += ";tag=";
        append_hex16(out, std::hash<std::string>{}(tag_scratch_));
      }
    }
    out += "\r\n";
  }
  if (const Header* call_id = m.find(HeaderType::CallId)) {
    out += "Call-ID: ";
    out += call_id->value;
    out += "\r\n";
  }
  if (const Header* cseq = m.find(HeaderType::CSeq)) {
    out += "CSeq: ";
    out += cseq->value;
    out += "\r\n";
  }
  out += "Server: ";
  out += kServer;
  out += "\r\n";
  // UDP: with rport back to the source port, else to the sent-by port (RFC 3261 18.2.2, RFC 3581).
  if (!top || find_param(top->params, "rport"))
    r.port = src.port;
  else
    r.port = top->port.value_or(5060);
}

bool Registrar::malformed_log_allowed() {
  const auto now = now_();
  if (now - last_malformed_log_ < std::chrono::seconds(1)) return false;
  last_malformed_log_ = now;
  return true;
}

Reply Registrar::handle(std::string_view bytes, const Source& src) {
  ++counters_.received;
  auto parsed = parse_message(bytes, options_.limits);
  if (!parsed) {
    if (auto salvaged = salvage_request(bytes, options_.limits); salvaged && salvaged->method != Method::Ack) {
      ++counters_.malformed_answered;
      if (malformed_log_allowed()) {
        log_->warn("malformed request from {}:{} ({}): answered 400 ({} so far)", src.ip, src.port,
                   to_string(parsed.error()), counters_.malformed_answered);
      }
      // RFC 3261 8.2.2 / RFC 4475 3.1.2.16: a version we do not speak is 505, not a syntax error.
      if (parsed.error() == ParseError::BadVersion)
        return respond(*salvaged, nullptr, src, 505, "Version Not Supported");
      return respond(*salvaged, nullptr, src, 400, fmt::format("Bad Request ({})", to_string(parsed.error())));
    }
    ++counters_.malformed_dropped;
    if (malformed_log_allowed()) {
      log_->warn("malformed message from {}:{} ({}): dropped ({} so far)", src.ip, src.port, to_string(parsed.error()),
                 counters_.malformed_dropped);
    }
    return {};
  }
  const Message& m = *parsed;
  if (!m.is_request) {
    ++counters_.responses_ignored;
    return {};
  }
  if (!has_via_value(m)) {
    ++counters_.malformed_dropped;  // nowhere to send a response
    return {};
  }
  if (m.method == Method::Ack) return {};  // never answered
  // Everything a method handler relies on is checked first, so a malformed INVITE (or any
  // request) is a 400 whatever its method (RFC 4475 3.1.2, 3.3.1, 3.3.8).
  // It parses Via, From, To, CSeq, Expires and every Contact; the handlers use what it parsed.
  RequestParts parts;
  if (auto defect = request_defect(m, parts)) {
    ++counters_.malformed_answered;
    if (malformed_log_allowed()) {
      log_->warn("malformed {} from {}:{} ({}): answered 400 ({} so far)", m.method_text, src.ip, src.port, *defect,
                 counters_.malformed_answered);
    }
    return respond(m, nullptr, src, 400, fmt::format("Bad Request ({})", *defect));
  }
  if (parts.cseq.method != m.method_text) {
    ++counters_.malformed_answered;
    return respond(m, &parts, src, 400, "Bad Request (CSeq)");
  }
  // RFC 3261 8.2.2.1: we serve sip: and sips: only (RFC 4475 3.3.2, 3.3.3).
  // (request_defect() made sure a sip:/sips: Request-URI parses.)
  if (const auto scheme = m.request_uri.substr(0, m.request_uri.find(':'));
      !iequals(scheme, "sip") && !iequals(scheme, "sips")) {
    return respond(m, &parts, src, 416, "Unsupported URI Scheme");
  }
  if (m.method != Method::Cancel) {
    if (const Header* req = m.find(HeaderType::Require)) {
      return respond(m, &parts, src, 420, "Bad Extension",
                     fmt::format("Unsupported: {}\r\n", collapse_whitespace(req->value)));
    }
  }
  switch (m.method) {
    case Method::Register: return handle_register(m, parts, src);
    case Method::Options:
      return respond(m, &parts, src, 200, "OK", fmt::format("Allow: {}\r\nAccept: application/sdp\r\n", kAllow));
    case Method::Refer:
      // Cisco phones report alarms (e.g. why they last unregistered) in an out-of-dialog REFER.
      if (contains_ci(m.value(HeaderType::ContentType), "application/x-cisco-alarm+xml")) {
        log_->debug("cisco alarm from {}:{} ({} bytes)", src.ip, src.port, m.body.size());
        return respond(m, &parts, src, 202, "Accepted");
      }
      return respond(m, &parts, src, 405, "Method Not Allowed", fmt::format("Allow: {}\r\n", kAllow));
    case Method::Subscribe:
    case Method::Publish:
      // No event package is served (RFC 6665 / RFC 3903: 489).
      return respond(m, &parts, src, 489, "Bad Event");
    case Method::Notify:
    case Method::Bye:
    case Method::Cancel:
    case Method::Prack:
    case Method::Update: return respond(m, &parts, src, 481, "Call/Transaction Does Not Exist");
    case Method::Invite:
    case Method::Message:
    case Method::Info: return respond(m, &parts, src, 405, "Method Not Allowed", fmt::format("Allow: {}\r\n", kAllow));
    case Method::Ack: return {};
    case Method::Other: return respond(m, &parts, src, 501, "Not Implemented", fmt::format("Allow: {}\r\n", kAllow));
  }
  return {};
}

std::optional<Reply> Registrar::authenticate(const Message& m, const RequestParts& parts, const Source& src,
                                             const std::string& user, const config::Phone* phone,
                                             const config::Line* line, std::chrono::system_clock::time_point now) {
  AuthRequest request;
  for (const auto& h : m.headers) {
    if (h.type == HeaderType::Authorization) request.credentials.push_back(h.value);
  }
  request.method = m.method_text;
  request.request_uri = m.request_uri;
  request.source_ip = src.ip;
  const std::string_view expected_user = !line                     ? std::string_view()
                                         : line->auth_user.empty() ? std::string_view(line->extension)
                                                                   : std::string_view(line->auth_user);
  // A line without a password cannot authenticate (the site file rejects empty passwords; a line
  // built without one must not register without a challenge).
  const auto password = [&](std::string_view username) -> std::optional<std::string_view> {
    if (!line || line->password.empty() || username != expected_user) return std::nullopt;
    return std::string_view(line->password.reveal());
  };
  const auto result = auth_.verify(request, password, now);
  const auto& ac = auth_.counters();
  counters_.auth_failures = ac.failures;
  counters_.auth_stale = ac.stale;
  counters_.auth_replays = ac.replays;
  counters_.auth_blocked = ac.blocked;
  counters_.auth_blocks = ac.blocks;
  auto challenge = [&](bool stale) {
    ++counters_.challenges;
    Reply r;
    r.bytes.reserve(640);
    begin_response(r, m, &parts, src, 401, "Unauthorized");
    r.bytes += "WWW-Authenticate: ";
    auth_.append_challenge(r.bytes, src.ip, stale, now);
    r.bytes += "\r\nContent-Length: 0\r\n\r\n";
    return r;
  };
  switch (response_for(result.outcome)) {
    case AuthResponse::Accept: return std::nullopt;
    case AuthResponse::Challenge: return challenge(false);
    case AuthResponse::Stale:
      log_->debug("REGISTER for {} from {}:{}: {}, challenged again", user, src.ip, src.port,
                  to_string(result.outcome));
      return challenge(true);
    case AuthResponse::BadRequest:
      log_->debug("REGISTER for {} from {}:{}: {}", user, src.ip, src.port, to_string(result.outcome));
      return respond(m, &parts, src, 400, fmt::format("Bad Request (Authorization: {})", to_string(result.outcome)));
    case AuthResponse::Drop: return Reply{};
    case AuthResponse::Forbidden: break;
  }
  // Guesses come in floods: one debug line each, the periodic summary at warning level.
  log_->debug("REGISTER for {} from {}:{} with digest user {}: {}", user, src.ip, src.port, result.username,
              to_string(result.outcome));
  if (phone) {
    const std::string detail = result.outcome == AuthOutcome::WrongUser
                                   ? fmt::format("403 wrong auth user {} for {}", result.username.substr(0, 64), user)
                                   : "403 wrong password for " + user;
    report_claim(phone->mac, Step::Register, Outcome::Failed, detail, src);
  }
  return respond(m, &parts, src, 403, "Forbidden");
}

Reply Registrar::handle_register(const Message& m, const RequestParts& parts, const Source& src) {
  ++counters_.registers;
  auto& log = log_;
  const auto now = now_();
  const auto& cfg = *config_;

  // To, Contact, Expires and CSeq were parsed (strictly) by request_defect().
  auto to_uri = parse_uri(parts.to.uri);
  if (!to_uri || to_uri->user.empty()) return respond(m, &parts, src, 400, "Bad Request (To URI)");
  const std::string user(to_uri->user);

  bool star = false;
  std::size_t non_star = 0;
  for (const auto& c : parts.contacts) {
    if (c.star)
      star = true;
    else
      ++non_star;
  }
  const std::optional<std::uint32_t> header_expires = parts.expires;
  if (star && (non_star != 0 || header_expires != 0u)) return respond(m, &parts, src, 400, "Bad Request (Contact *)");
  static const std::vector<NameAddr> kNone;
  const std::vector<NameAddr>& contacts = star ? kNone : parts.contacts;  // with a *, only stars

  // Keep-alive REGISTER to a backup call manager: answered, bindings untouched.
  for (const auto& c : contacts) {
    if (find_param(c.params, "cisco-keep-alive")) return respond(m, &parts, src, 200, "OK");
  }

  const auto [phone, line] = find_line(user);
  // Known and unknown users go through the same steps and get the same answers (401, then 403),
  // so the lines of the site cannot be enumerated.
  if (auto refused = authenticate(m, parts, src, user, phone, line, now)) return std::move(*refused);

  // Authenticated: the line's phone in the site file owns this registration. A +sip.instance MAC
  // (Cisco puts the phone's MAC in the last UUID group) is evidence only when it is that phone,
  // or when auto-registration lets phones that are not in the site file use the line.
  CiscoDeviceInfo device;
  if (!contacts.empty()) device = cisco_device_info(contacts.front(), m.value(HeaderType::Reason));
  std::optional<MacAddress> mac = phone->mac;
  if (device.mac && *device.mac != phone->mac && cfg.provisioning.auto_register) mac = device.mac;
  auto own_device = [&](CiscoDeviceInfo info) {
    if (info.mac && info.mac != mac) {
      info.mac.reset();
      info.device_name.clear();
      info.model.clear();
    }
    return info;
  };
  device = own_device(device);

  if (src.transport == Transport::Tcp && !reported_connections_.count(src.connection)) {
    reported_connections_.insert(src.connection);
    report(mac, Step::CallManagerConnect, Outcome::Ok, fmt::format("TCP from {}:{} to {}", src.ip, src.port, src.local),
           src);
  }

  // Expiry per contact: its own expires parameter, else the Expires header, else the default.
  std::vector<std::uint32_t> expires;
  for (const auto& c : contacts) {
    std::uint32_t e = header_expires.value_or(static_cast<std::uint32_t>(cfg.sip.default_expires_s));
    if (const Param* p = find_param(c.params, "expires")) {
      auto v = parse_uint(p->value);
      if (!v) return respond(m, &parts, src, 400, "Bad Request (Contact expires)");
      e = *v;
    }
    if (e != 0 && e < static_cast<std::uint32_t>(cfg.sip.min_expires_s)) {
      report(mac, Step::Register, Outcome::Failed,
             fmt::format("423 interval too brief for {} ({} s < {} s)", user, e, cfg.sip.min_expires_s), src);
      return respond(m, &parts, src, 423, "Interval Too Brief",
                     fmt::format("Min-Expires: {}\r\n", cfg.sip.min_expires_s));
    }
    expires.push_back(std::min(e, static_cast<std::uint32_t>(cfg.sip.max_expires_s)));
  }
  const bool survivable = upstream_ && upstream_->mode() == SipMode::Survivable;
  if (survivable) {
    const auto cap = std::max(kSurvivableExpiresS, static_cast<std::uint32_t>(cfg.sip.min_expires_s));
    for (auto& e : expires) e = std::min(e, cap);
  }

  const std::string_view call_id = m.value(HeaderType::CallId);
  const auto cseq = parts.cseq.number;
  std::string source = src.ip;
  source += ':';
  append_uint(source, src.port);

  if (star) {
    for (const auto& b : store_.remove_all(user)) {
      log->info("{} unregistered {} (Contact: *)", user, b.contact);
      report(b.mac ? b.mac : mac, Step::Register, Outcome::Info, "unregistered " + user, src);
    }
  }

  // What each Contact asks for; views into the message. The key identifies the binding (the
  // +sip.instance, else the Contact URI: binding_key()).
  struct Wanted {
    std::string_view uri;
    std::string_view instance;
    std::string_view key;
    CiscoDeviceInfo info;
  };
  std::vector<Wanted> wanted;
  wanted.reserve(contacts.size());
  // RFC 3261 10.3 step 7: same Call-ID with a lower CSeq is out of order; abort before changes.
  for (std::size_t i = 0; i < contacts.size(); ++i) {
    Wanted w;
    w.uri = contacts[i].uri;
    if (const Param* p = find_param(contacts[i].params, "+sip.instance")) w.instance = p->value;
    w.key = w.instance.empty() ? w.uri : w.instance;
    const auto* existing = store_.find(user, w.key);
    if (existing && existing->call_id == call_id && cseq < existing->cseq) {
      return respond(m, &parts, src, 500, "Server Internal Error (CSeq out of order)");
    }
    w.info = i == 0 ? device : own_device(cisco_device_info(contacts[i], m.value(HeaderType::Reason)));
    wanted.push_back(std::move(w));
  }
  const auto own_key = [&](std::string_view key) {
    for (const auto& w : wanted)
      if (w.key == key) return true;
    return false;
  };
  const std::string user_agent = collapse_whitespace(m.value(HeaderType::UserAgent));
  const auto cap = static_cast<std::size_t>(std::max(1, cfg.sip.max_bindings_per_line));
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    const auto& w = wanted[i];
    const auto& info = w.info;
    if (expires[i] != 0 && !store_.find(user, w.key)) {
      // At the cap, a new binding replaces the line's oldest one (not one this request refreshes).
      while (store_.find(user) && store_.find(user)->size() >= cap) {
        const BindingInfo* oldest = nullptr;
        for (const auto& x : *store_.find(user)) {
          if (own_key(binding_key_view(x))) continue;
          if (!oldest || x.registered_at < oldest->registered_at) oldest = &x;
        }
        if (!oldest) break;
        const BindingInfo gone = *oldest;
        store_.remove(user, binding_key(gone));
        ++counters_.bindings_replaced;
        log->info("{} has {} bindings (sip.max_bindings_per_line): {} replaced by {}", user, cap, gone.contact, w.uri);
      }
    }
    if (expires[i] == 0) {
      const std::optional<MacAddress> gone_mac = info.mac ? info.mac : mac;
      if (store_.remove(user, std::string(w.key))) {
        log->info("{} unregistered {} from {}", user, w.uri, source);
        report(gone_mac, Step::Register, Outcome::Info, "unregistered " + user, src);
      }
      continue;
    }
    const auto expires_at = now + std::chrono::seconds(expires[i]);
    const std::optional<MacAddress> binding_mac = info.mac ? info.mac : mac;
    const auto* existing = store_.find(user, w.key);
    // A refresh: everything but the Call-ID, CSeq and expiry as stored (the loads and Reason name
    // kept when the phone did not repeat them). The store updates those three in place.
    const auto kept = [](const std::string& stored, const std::string& now_sent) {
      return now_sent.empty() || now_sent == stored;
    };
    if (existing && existing->contact == w.uri && existing->instance == w.instance &&
        existing->transport == src.transport && existing->source == source && existing->registered_with.empty() &&
        existing->mac == binding_mac && existing->device_name == info.device_name && existing->model == info.model &&
        existing->user_agent == user_agent && kept(existing->active_load, info.active_load) &&
        kept(existing->inactive_load, info.inactive_load) && kept(existing->reason_name, info.reason_name) &&
        aor_is(existing->aor, user, to_uri->host)) {
      store_.refresh(user, w.key, call_id, cseq, expires_at);
      continue;
    }
    BindingInfo b;
    b.user = user;
    b.aor.reserve(5 + user.size() + to_uri->host.size());
    b.aor += "sip:";
    b.aor += user;
    b.aor += '@';
    b.aor += to_uri->host;
    b.contact = std::string(w.uri);
    b.instance = std::string(w.instance);
    b.transport = src.transport;
    b.source = source;
    b.call_id = std::string(call_id);
    b.cseq = cseq;
    b.registered_at = existing ? existing->registered_at : now;
    b.expires_at = expires_at;
    b.mac = binding_mac;
    b.device_name = info.device_name;
    b.model = info.model;
    b.user_agent = user_agent;
    b.active_load = info.active_load.empty() && existing ? existing->active_load : info.active_load;
    b.inactive_load = info.inactive_load.empty() && existing ? existing->inactive_load : info.inactive_load;
    b.reason_name = info.reason_name.empty() && existing ? existing->reason_name : info.reason_name;
    const bool changed = !existing || existing->contact != b.contact || existing->source != b.source ||
                         existing->transport != b.transport || existing->registered_with != b.registered_with;
    if (!changed) {
      store_.upsert(std::move(b));
      continue;
    }
    // The journey event needs the binding's values after the store took it.
    const std::string device_name = b.device_name, active_load = b.active_load, inactive_load = b.inactive_load;
    const auto transport = b.transport;
    store_.upsert(std::move(b));
    store_.flush();  // a new or moved binding is on disk before the 200 OK: a crash cannot lose it
    log->info("{} registered {} from {} over {} for {} s{}", user, w.uri, source, to_string(transport), expires[i],
              device_name.empty() ? "" : " (" + device_name + ")");
    // Device Status: "Registered with <server address>" and the loads the phone reported.
    Facts facts;
    const std::string box = src.local.substr(0, src.local.rfind(':'));
    const std::string unreachable = survivable ? upstream_->unreachable_summary() : std::string();
    facts.emplace_back(Fact::RegisteredWith,
                       survivable ? fmt::format("the box ({}) in survivable mode: {}", box, unreachable) : box);
    facts.emplace_back(Fact::RegistrationMode, survivable ? "survivable" : "local");
    if (!active_load.empty()) facts.emplace_back(Fact::ActiveLoad, active_load);
    if (!inactive_load.empty()) facts.emplace_back(Fact::InactiveLoad, inactive_load);
    if (!user_agent.empty()) facts.emplace_back(Fact::UserAgent, user_agent);
    if (!device_name.empty()) facts.emplace_back(Fact::DeviceName, device_name);
    report(binding_mac, Step::Register, Outcome::Ok,
           survivable
               ? fmt::format("registered {} with the box in survivable mode: {} (from {} over {}, {} s)", user,
                             unreachable, source, to_string(transport), expires[i])
               : fmt::format("registered {} from {} over {} ({} s)", user, source, to_string(transport), expires[i]),
           src, std::move(facts));
  }

  // The 200 OK, built in place: the bindings this request touched first, then the others while a
  // UDP answer still fits the path MTU (RFC 3261 18.1.1); over TCP all of them.
  // The Date line changes once a second: formatted then, not per answer.
  if (const auto second = std::chrono::system_clock::to_time_t(now); second != date_second_ || date_line_.empty()) {
    date_second_ = second;
    date_line_ = "Date: " + http_date(now) + "\r\n";
  }
  constexpr std::string_view kEnd = "Content-Length: 0\r\n\r\n";
  Reply r;
  r.bytes.reserve(768);
  begin_response(r, m, &parts, src, 200, "OK");
  std::string& out = r.bytes;
  const auto contact_line = [&](std::string& to, const BindingInfo& b) {
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(b.expires_at - now).count();
    to += "Contact: <";
    to += b.contact;
    to += ">;expires=";
    append_uint(to, static_cast<std::uint64_t>(std::max<std::int64_t>(left, 0)));
    to += "\r\n";
  };
  if (const auto* list = store_.find(user)) {
    bool others = false;
    for (const auto& b : *list) {
      if (own_key(binding_key_view(b)))
        contact_line(out, b);
      else
        others = true;
    }
    if (others) {
      const bool udp = src.transport == Transport::Udp;
      bool trimmed = false;
      std::string other;
      for (const auto& b : *list) {
        if (own_key(binding_key_view(b))) continue;
        other.clear();
        contact_line(other, b);
        if (udp && out.size() + other.size() + date_line_.size() + kEnd.size() > options_.udp_max_response) {
          trimmed = true;
          continue;
        }
        out += other;
      }
      if (trimmed) ++counters_.udp_contacts_trimmed;
    }
  }
  out += date_line_;
  out += kEnd;
  return r;
}

void Registrar::sweep() {
  if (auto summary = auth_.summary(now_())) log_->warn("{}", *summary);
  for (const auto& b : store_.expire(now_())) {
    log_->info("{} registration {} expired", b.user, b.contact);
    Source src;
    src.ip = b.source.substr(0, b.source.rfind(':'));
    report(b.mac, Step::Register, Outcome::Info, "registration of " + b.user + " expired", src);
  }
}

std::vector<BindingInfo> Registrar::registrations() const {
  auto list = store_.all();
  const auto now = now_();
  for (auto& b : list) {
    b.expires_in_s =
        std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(b.expires_at - now).count());
  }
  return list;
}

}  // namespace ve::sip
