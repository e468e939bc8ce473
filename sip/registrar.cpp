// Registrar logic (RFC 3261 section 10.3) with digest authentication and Cisco phone specifics.
#include "sip/registrar.hpp"

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
      fmt::format_to(std::back_inserter(out), ";rport={}", src.port);
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

Reply Registrar::respond(const Message& m, const Source& src, int code, std::string_view reason,
                         const std::string& extra) {
  Reply r;
  std::string& out = r.bytes;
  out.reserve(512 + extra.size());
  fmt::format_to(std::back_inserter(out), "SIP/2.0 {} {}\r\n", code, reason);
  bool first = true;
  std::optional<Via> top;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Via) continue;
    for (auto v : split_list(h.value)) {
      out += "Via: ";
      if (first) {
        // Parsed once: for the received/rport parameters and for the answer's port.
        if (auto parsed = parse_via(v)) {
          top = std::move(*parsed);
          append_top_via(out, v, *top, src);
        } else {
          out += v;
        }
        first = false;
      } else {
        out += v;
      }
      out += "\r\n";
    }
  }
  // A header the request lacks is left out (a 400 for a request without Call-ID, From or To).
  if (m.find(HeaderType::From)) {
    out += "From: ";
    out += m.value(HeaderType::From);
    out += "\r\n";
  }
  const auto to = m.value(HeaderType::To);
  if (m.find(HeaderType::To)) out += "To: ";
  out += to;
  if (code > 100 && m.find(HeaderType::To)) {
    auto na = parse_name_addr(to);
    if (!na || na->tag().empty()) {
      // A stable tag per request: retransmissions get the same one (RFC 3261 8.2.6.2).
      const auto from = parse_name_addr(m.value(HeaderType::From));
      const auto h = std::hash<std::string>{}(tag_key_ + std::string(m.value(HeaderType::CallId)) +
                                              std::string(from ? from->tag() : std::string_view{}));
      fmt::format_to(std::back_inserter(out), ";tag={:016x}", h);
    }
  }
  if (m.find(HeaderType::To)) out += "\r\n";
  if (m.find(HeaderType::CallId)) {
    out += "Call-ID: ";
    out += m.value(HeaderType::CallId);
    out += "\r\n";
  }
  if (m.find(HeaderType::CSeq)) {
    out += "CSeq: ";
    out += m.value(HeaderType::CSeq);
    out += "\r\n";
  }
  out += "Server: ";
  out += kServer;
  out += "\r\n";
  out += extra;
  out += "Content-Length: 0\r\n\r\n";
  // UDP: with rport back to the source port, else to the sent-by port (RFC 3261 18.2.2, RFC 3581).
  if (!top || find_param(top->params, "rport"))
    r.port = src.port;
  else
    r.port = top->port.value_or(5060);
  return r;
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
      if (parsed.error() == ParseError::BadVersion) return respond(*salvaged, src, 505, "Version Not Supported");
      return respond(*salvaged, src, 400, fmt::format("Bad Request ({})", to_string(parsed.error())));
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
  if (!m.find(HeaderType::Via) || via_values(m).empty()) {
    ++counters_.malformed_dropped;  // nowhere to send a response
    return {};
  }
  if (m.method == Method::Ack) return {};  // never answered
  // Everything a method handler relies on is checked first, so a malformed INVITE (or any
  // request) is a 400 whatever its method (RFC 4475 3.1.2, 3.3.1, 3.3.8).
  if (auto defect = request_defect(m)) {
    ++counters_.malformed_answered;
    if (malformed_log_allowed()) {
      log_->warn("malformed {} from {}:{} ({}): answered 400 ({} so far)", m.method_text, src.ip, src.port, *defect,
                 counters_.malformed_answered);
    }
    return respond(m, src, 400, fmt::format("Bad Request ({})", *defect));
  }
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  if (!cseq || cseq->method != m.method_text) {
    ++counters_.malformed_answered;
    return respond(m, src, 400, "Bad Request (CSeq)");
  }
  // RFC 3261 8.2.2.1: we serve sip: and sips: only (RFC 4475 3.3.2, 3.3.3).
  // (request_defect() made sure a sip:/sips: Request-URI parses.)
  if (const auto scheme = m.request_uri.substr(0, m.request_uri.find(':'));
      !iequals(scheme, "sip") && !iequals(scheme, "sips")) {
    return respond(m, src, 416, "Unsupported URI Scheme");
  }
  if (m.method != Method::Cancel) {
    if (const Header* req = m.find(HeaderType::Require)) {
      return respond(m, src, 420, "Bad Extension", fmt::format("Unsupported: {}\r\n", collapse_whitespace(req->value)));
    }
  }
  switch (m.method) {
    case Method::Register: return handle_register(m, src);
    case Method::Options:
      return respond(m, src, 200, "OK", fmt::format("Allow: {}\r\nAccept: application/sdp\r\n", kAllow));
    case Method::Refer:
      // Cisco phones report alarms (e.g. why they last unregistered) in an out-of-dialog REFER.
      if (contains_ci(m.value(HeaderType::ContentType), "application/x-cisco-alarm+xml")) {
        log_->debug("cisco alarm from {}:{} ({} bytes)", src.ip, src.port, m.body.size());
        return respond(m, src, 202, "Accepted");
      }
      return respond(m, src, 405, "Method Not Allowed", fmt::format("Allow: {}\r\n", kAllow));
    case Method::Subscribe:
    case Method::Publish:
      // No event package is served (RFC 6665 / RFC 3903: 489).
      return respond(m, src, 489, "Bad Event");
    case Method::Notify:
    case Method::Bye:
    case Method::Cancel:
    case Method::Prack:
    case Method::Update: return respond(m, src, 481, "Call/Transaction Does Not Exist");
    case Method::Invite:
    case Method::Message:
    case Method::Info: return respond(m, src, 405, "Method Not Allowed", fmt::format("Allow: {}\r\n", kAllow));
    case Method::Ack: return {};
    case Method::Other: return respond(m, src, 501, "Not Implemented", fmt::format("Allow: {}\r\n", kAllow));
  }
  return {};
}

std::optional<Reply> Registrar::authenticate(const Message& m, const Source& src, const std::string& user,
                                             const config::Phone* phone, const config::Line* line,
                                             std::chrono::system_clock::time_point now) {
  AuthRequest request;
  for (const auto& h : m.headers) {
    if (h.type == HeaderType::Authorization) request.credentials.push_back(h.value);
  }
  request.method = m.method_text;
  request.request_uri = m.request_uri;
  request.source_ip = src.ip;
  const std::string expected_user = !line ? std::string() : line->auth_user.empty() ? line->extension : line->auth_user;
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
    return respond(m, src, 401, "Unauthorized",
                   fmt::format("WWW-Authenticate: {}\r\n", auth_.challenge(src.ip, stale, now)));
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
      return respond(m, src, 400, fmt::format("Bad Request (Authorization: {})", to_string(result.outcome)));
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
  return respond(m, src, 403, "Forbidden");
}

Reply Registrar::handle_register(const Message& m, const Source& src) {
  ++counters_.registers;
  auto& log = log_;
  const auto now = now_();
  const auto& cfg = *config_;

  auto to = parse_name_addr(m.value(HeaderType::To));
  if (!to || to->star) return respond(m, src, 400, "Bad Request (To)");
  auto to_uri = parse_uri(to->uri);
  if (!to_uri || to_uri->user.empty()) return respond(m, src, 400, "Bad Request (To URI)");
  const std::string user(to_uri->user);
  const std::string aor = fmt::format("sip:{}@{}", user, to_uri->host);

  std::vector<NameAddr> contacts;
  bool star = false;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value)) {
      auto c = parse_name_addr(v);
      if (!c) return respond(m, src, 400, "Bad Request (Contact)");
      if (c->star)
        star = true;
      else
        contacts.push_back(std::move(*c));
    }
  }
  std::optional<std::uint32_t> header_expires;
  if (const Header* e = m.find(HeaderType::Expires)) {
    auto v = parse_uint(e->value);
    if (!v) return respond(m, src, 400, "Bad Request (Expires)");
    header_expires = *v;
  }
  if (star && (!contacts.empty() || header_expires != 0u)) return respond(m, src, 400, "Bad Request (Contact *)");

  // Keep-alive REGISTER to a backup call manager: answered, bindings untouched.
  for (const auto& c : contacts) {
    if (find_param(c.params, "cisco-keep-alive")) return respond(m, src, 200, "OK");
  }

  const auto [phone, line] = find_line(user);
  // Known and unknown users go through the same steps and get the same answers (401, then 403),
  // so the lines of the site cannot be enumerated.
  if (auto refused = authenticate(m, src, user, phone, line, now)) return std::move(*refused);

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
      if (!v) return respond(m, src, 400, "Bad Request (Contact expires)");
      e = *v;
    }
    if (e != 0 && e < static_cast<std::uint32_t>(cfg.sip.min_expires_s)) {
      report(mac, Step::Register, Outcome::Failed,
             fmt::format("423 interval too brief for {} ({} s < {} s)", user, e, cfg.sip.min_expires_s), src);
      return respond(m, src, 423, "Interval Too Brief", fmt::format("Min-Expires: {}\r\n", cfg.sip.min_expires_s));
    }
    expires.push_back(std::min(e, static_cast<std::uint32_t>(cfg.sip.max_expires_s)));
  }
  const bool survivable = upstream_ && upstream_->mode() == SipMode::Survivable;
  if (survivable) {
    const auto cap = std::max(kSurvivableExpiresS, static_cast<std::uint32_t>(cfg.sip.min_expires_s));
    for (auto& e : expires) e = std::min(e, cap);
  }

  const std::string call_id(m.value(HeaderType::CallId));
  const auto cseq = parse_cseq(m.value(HeaderType::CSeq))->number;
  const std::string source = fmt::format("{}:{}", src.ip, src.port);

  if (star) {
    for (const auto& b : store_.remove_all(user)) {
      log->info("{} unregistered {} (Contact: *)", user, b.contact);
      report(b.mac ? b.mac : mac, Step::Register, Outcome::Info, "unregistered " + user, src);
    }
  }

  // RFC 3261 10.3 step 7: same Call-ID with a lower CSeq is out of order; abort before changes.
  std::vector<BindingInfo> updates;
  for (std::size_t i = 0; i < contacts.size(); ++i) {
    BindingInfo b;
    b.user = user;
    b.aor = aor;
    b.contact = std::string(contacts[i].uri);
    if (const Param* p = find_param(contacts[i].params, "+sip.instance")) b.instance = std::string(p->value);
    const auto* existing = store_.find(user, binding_key_view(b));
    if (existing && existing->call_id == call_id && cseq < existing->cseq) {
      return respond(m, src, 500, "Server Internal Error (CSeq out of order)");
    }
    const auto info = i == 0 ? device : own_device(cisco_device_info(contacts[i], m.value(HeaderType::Reason)));
    b.transport = src.transport;
    b.source = source;
    b.call_id = call_id;
    b.cseq = cseq;
    b.registered_at = existing ? existing->registered_at : now;
    b.expires_at = now + std::chrono::seconds(expires[i]);
    b.mac = info.mac ? info.mac : mac;
    b.device_name = info.device_name;
    b.model = info.model;
    b.user_agent = collapse_whitespace(m.value(HeaderType::UserAgent));
    b.active_load = info.active_load.empty() && existing ? existing->active_load : info.active_load;
    b.inactive_load = info.inactive_load.empty() && existing ? existing->inactive_load : info.inactive_load;
    b.reason_name = info.reason_name.empty() && existing ? existing->reason_name : info.reason_name;
    updates.push_back(std::move(b));
  }
  const auto cap = static_cast<std::size_t>(std::max(1, cfg.sip.max_bindings_per_line));
  std::set<std::string, std::less<>> own_keys;
  for (const auto& b : updates) own_keys.insert(binding_key(b));
  for (std::size_t i = 0; i < updates.size(); ++i) {
    auto& b = updates[i];
    if (expires[i] != 0 && !store_.find(user, binding_key_view(b))) {
      // At the cap, a new binding replaces the line's oldest one (not one this request refreshes).
      while (store_.find(user) && store_.find(user)->size() >= cap) {
        const BindingInfo* oldest = nullptr;
        for (const auto& x : *store_.find(user)) {
          if (own_keys.count(binding_key_view(x))) continue;
          if (!oldest || x.registered_at < oldest->registered_at) oldest = &x;
        }
        if (!oldest) break;
        const BindingInfo gone = *oldest;
        store_.remove(user, binding_key(gone));
        ++counters_.bindings_replaced;
        log->info("{} has {} bindings (sip.max_bindings_per_line): {} replaced by {}", user, cap, gone.contact,
                  b.contact);
      }
    }
    if (expires[i] == 0) {
      if (store_.remove(user, binding_key(b))) {
        log->info("{} unregistered {} from {}", user, b.contact, source);
        report(b.mac, Step::Register, Outcome::Info, "unregistered " + user, src);
      }
      continue;
    }
    const auto* existing = store_.find(user, binding_key_view(b));
    const bool changed = !existing || existing->contact != b.contact || existing->source != b.source ||
                         existing->transport != b.transport || existing->registered_with != b.registered_with;
    store_.upsert(b);
    if (changed) {
      store_.flush();  // a new or moved binding is on disk before the 200 OK: a crash cannot lose it
      log->info("{} registered {} from {} over {} for {} s{}", user, b.contact, source, to_string(b.transport),
                expires[i], b.device_name.empty() ? "" : " (" + b.device_name + ")");
      // Device Status: "Registered with <server address>" and the loads the phone reported.
      Facts facts;
      const std::string box = src.local.substr(0, src.local.rfind(':'));
      const std::string unreachable = survivable ? upstream_->unreachable_summary() : std::string();
      facts.emplace_back(Fact::RegisteredWith,
                         survivable ? fmt::format("the box ({}) in survivable mode: {}", box, unreachable) : box);
      facts.emplace_back(Fact::RegistrationMode, survivable ? "survivable" : "local");
      if (!b.active_load.empty()) facts.emplace_back(Fact::ActiveLoad, b.active_load);
      if (!b.inactive_load.empty()) facts.emplace_back(Fact::InactiveLoad, b.inactive_load);
      if (!b.user_agent.empty()) facts.emplace_back(Fact::UserAgent, b.user_agent);
      if (!b.device_name.empty()) facts.emplace_back(Fact::DeviceName, b.device_name);
      report(b.mac, Step::Register, Outcome::Ok,
             survivable ? fmt::format("registered {} with the box in survivable mode: {} (from {} over {}, {} s)", user,
                                      unreachable, source, to_string(b.transport), expires[i])
                        : fmt::format("registered {} from {} over {} ({} s)", user, source, to_string(b.transport),
                                      expires[i]),
             src, std::move(facts));
    }
  }

  // The bindings this request touched first, then the others while a UDP answer still fits the
  // path MTU (RFC 3261 18.1.1); over TCP all of them.
  // The Date line changes once a second: formatted then, not per answer.
  if (const auto second = std::chrono::system_clock::to_time_t(now); second != date_second_ || date_line_.empty()) {
    date_second_ = second;
    date_line_ = "Date: " + http_date(now) + "\r\n";
  }
  const std::string& date = date_line_;
  std::vector<std::string> lines_own, lines_other;
  if (const auto* list = store_.find(user)) {
    for (const auto& b : *list) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(b.expires_at - now).count();
      auto text = fmt::format("Contact: <{}>;expires={}\r\n", b.contact, std::max<std::int64_t>(left, 0));
      (own_keys.count(binding_key_view(b)) ? lines_own : lines_other).push_back(std::move(text));
    }
  }
  std::string extra;
  for (const auto& l : lines_own) extra += l;
  if (src.transport == Transport::Udp && !lines_other.empty()) {
    std::size_t size = respond(m, src, 200, "OK", extra + date).bytes.size();
    bool trimmed = false;
    for (const auto& l : lines_other) {
      if (size + l.size() > options_.udp_max_response) {
        trimmed = true;
        continue;
      }
      extra += l;
      size += l.size();
    }
    if (trimmed) ++counters_.udp_contacts_trimmed;
  } else {
    for (const auto& l : lines_other) extra += l;
  }
  extra += date;
  return respond(m, src, 200, "OK", extra);
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
