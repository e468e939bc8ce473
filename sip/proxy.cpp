// Transaction-stateful proxy (RFC 3261 sections 16 and 17) for calls between registered phones.
#include "sip/proxy.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "sip/upstream.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

constexpr std::string_view kBranchPrefix = "z9hG4bK-ve-";
constexpr int kMaxRetargets = 5;
constexpr std::size_t kMaxCalls = 10000;

std::string_view transport_token(Transport t) { return t == Transport::Tcp ? "TCP" : "UDP"; }

std::string key_of(std::string_view branch, std::string_view sent_by, std::string_view method) {
  std::string k;
  k.reserve(branch.size() + sent_by.size() + method.size() + 2);
  k += branch;
  k += '|';
  k += sent_by;
  k += '|';
  k += method;
  return k;
}

std::string sent_by(const Via& v) { return fmt::format("{}:{}", v.host, v.port.value_or(5060)); }

std::string_view tag_of(std::string_view header_value) {
  auto na = parse_name_addr(header_value);
  return na ? na->tag() : std::string_view{};
}

std::string_view uri_user(std::string_view uri_text) {
  auto u = parse_uri(uri_text);
  return u ? u->user : std::string_view{};
}

std::string strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::string(host);
}

// A response built by the proxy itself to `req`.
std::string build_response(const Message& req, const Source& src, int code, std::string_view reason,
                           std::string_view to_tag, std::string_view extra) {
  std::string out;
  out.reserve(512 + extra.size());
  fmt::format_to(std::back_inserter(out), "SIP/2.0 {} {}\r\n", code, reason);
  bool first = true;
  for (auto v : via_values(req)) {
    out += "Via: ";
    if (first) {
      append_top_via(out, v, src);
      first = false;
    } else {
      out += v;
    }
    out += "\r\n";
  }
  out += "From: ";
  out += req.value(HeaderType::From);
  out += "\r\nTo: ";
  const auto to = req.value(HeaderType::To);
  out += to;
  if (code > 100 && tag_of(to).empty() && !to_tag.empty()) {
    out += ";tag=";
    out += to_tag;
  }
  out += "\r\nCall-ID: ";
  out += req.value(HeaderType::CallId);
  out += "\r\nCSeq: ";
  out += req.value(HeaderType::CSeq);
  out += "\r\nServer: voiceedge\r\n";
  out += extra;
  out += "Content-Length: 0\r\n\r\n";
  return out;
}

// A response from downstream with our (top) Via removed, for the next hop upstream.
std::string strip_top_via(const Message& resp) {
  std::string out;
  out.reserve(resp.raw.size());
  fmt::format_to(std::back_inserter(out), "SIP/2.0 {} {}\r\n", resp.status, resp.reason);
  bool removed = false;
  for (const auto& h : resp.headers) {
    if (h.type == HeaderType::Via && !removed) {
      removed = true;
      auto list = split_list(h.value);
      if (list.size() <= 1) continue;
      out += h.name;
      out += ": ";
      for (std::size_t i = 1; i < list.size(); ++i) {
        if (i > 1) out += ", ";
        out += list[i];
      }
      out += "\r\n";
      continue;
    }
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "\r\n";
  out += resp.body;
  return out;
}

Destination reply_destination(const Message& m, const Source& src) {
  Destination d;
  d.transport = src.transport;
  d.ip = src.ip;
  d.port = src.port;
  if (src.transport == Transport::Udp) {
    const auto vias = via_values(m);
    if (!vias.empty()) {
      if (auto v = parse_via(vias.front()); v && !find_param(v->params, "rport")) d.port = v->port.value_or(5060);
    }
  }
  return d;
}

Destination binding_destination(const BindingInfo& b) {
  Destination d;
  d.transport = b.transport;
  const auto colon = b.source.rfind(':');
  d.ip = b.source.substr(0, colon);
  if (colon != std::string::npos) {
    if (auto p = parse_uint(std::string_view(b.source).substr(colon + 1)); p && *p <= 65535)
      d.port = static_cast<std::uint16_t>(*p);
  }
  if (auto u = parse_uri(b.contact)) {
    d.contact_ip = strip_brackets(u->host);
    d.contact_port = u->port.value_or(5060);
  }
  return d;
}

std::string hex64(std::uint64_t v) { return fmt::format("{:016x}", v); }

std::string_view outcome_reason(int code) {
  switch (code) {
    case 404: return "number not found";
    case 408: return "no answer";
    case 480: return "not registered";
    case 486: return "busy";
    case 487: return "cancelled";
    case 600: return "busy everywhere";
    case 603: return "declined";
    default: return "";
  }
}

}  // namespace

// A timer whose handler runs only if its owner still lives and it was not re-armed or cancelled
// since (an expired wait can be queued already when cancel() is called).
struct Proxy::Timer {
  explicit Timer(asio::io_context& io) : timer(io) {}
  template <typename Fn>
  void arm(milliseconds after, std::weak_ptr<void> owner, Fn fn) {
    const auto armed = ++generation;
    timer.expires_after(after);
    timer.async_wait([this, owner = std::move(owner), armed, fn = std::move(fn)](const boost::system::error_code& ec) {
      auto alive = owner.lock();
      if (ec || !alive || generation != armed) return;
      fn();
    });
  }
  void cancel() {
    ++generation;
    timer.cancel();
  }
  asio::steady_timer timer;
  std::uint64_t generation = 0;
};

struct Proxy::ServerTx {
  explicit ServerTx(asio::io_context& io) : retransmit(io), life(io), no_answer(io) {}
  enum class State { Proceeding, Completed, Confirmed, Accepted };
  std::string key;
  Method method = Method::Other;
  bool invite = false;
  bool in_dialog = false;
  Source src;
  Destination reply_to;
  std::string request;  // as received; parsed again when needed
  std::string call_id;
  std::string from_tag;
  std::string caller;  // the authenticated line's extension
  std::string last_provisional;
  std::string last_final;
  int status = 0;  // final status sent, 0 while proceeding
  State state = State::Proceeding;
  Timer retransmit;  // G
  Timer life;        // H, I, J, L
  Timer no_answer;   // forward.no_answer
  milliseconds interval{0};
  std::vector<std::shared_ptr<ClientTx>> branches;
  int best_status = 0;
  std::string best_response;  // empty: the proxy builds it
  bool cancelled = false;
  bool answered = false;  // a 2xx went upstream
  std::string target;     // the line being rung
  std::set<std::string> visited;
  int retargets = 0;
};

struct Proxy::ClientTx {
  explicit ClientTx(asio::io_context& io) : retransmit(io), life(io), ring(io) {}
  enum class State { Calling, Proceeding, Completed, Accepted };
  std::string key;  // branch|METHOD
  std::string branch;
  Method method = Method::Other;
  bool invite = false;
  Destination to;
  std::string request;  // as sent
  std::string target_user;
  State state = State::Calling;
  Timer retransmit;  // A, E
  Timer life;        // B, F, D, K, and the 2xx-forwarding window
  Timer ring;        // C
  milliseconds interval{0};
  std::weak_ptr<ServerTx> server;
  Destination upstream;  // for 2xx retransmissions after the server transaction is gone
  int status = 0;
  bool cancel_wanted = false;
  bool cancel_sent = false;
  bool timed_out = false;    // Timer C: its 487 counts as 408
  bool superseded = false;   // cancelled because the call was retargeted
  bool cancel_only = false;  // this is the CANCEL of a branch
  std::string ack;           // hop-by-hop ACK of a non-2xx final, resent on retransmissions
  // SRST: a phone's REGISTER relayed to the cluster (its 200 is copied into the store).
  bool upstream_register = false;
  std::string upstream_name;
  Source phone;
};

struct Proxy::Call {
  CallInfo info;
  std::string caller_tag;
  std::string callee_tag;
  Destination caller_flow;
  Destination callee_flow;
  std::optional<MacAddress> caller_mac;
  std::optional<MacAddress> callee_mac;
};

Proxy::Proxy(asio::io_context& io, config::SiteConfigPtr config, LocationStore& store, EventSink& events,
             ServerOptions options, Wire& wire, Authenticator& auth, Now now)
    : io_(io),
      config_(std::move(config)),
      store_(store),
      events_(events),
      options_(options),
      wire_(wire),
      now_(std::move(now)),
      log_(ve::logger("sip")),
      auth_(auth) {
  tag_key_ = tags_.make(now_()).substr(16, 8);
}

Proxy::~Proxy() = default;

void Proxy::set_config(config::SiteConfigPtr config) { config_ = std::move(config); }

std::size_t Proxy::transactions() const { return servers_.size() + clients_.size(); }

std::pair<const config::Phone*, const config::Line*> Proxy::line_by_user(const std::string& user) const {
  for (const auto& p : config_->phones)
    for (const auto& l : p.lines)
      if (l.auth_user == user) return {&p, &l};
  for (const auto& p : config_->phones)
    for (const auto& l : p.lines)
      if (l.extension == user) return {&p, &l};
  return {nullptr, nullptr};
}

std::pair<const config::Phone*, const config::Line*> Proxy::line_by_extension(const std::string& ext) const {
  for (const auto& p : config_->phones)
    for (const auto& l : p.lines)
      if (l.extension == ext) return {&p, &l};
  return {nullptr, nullptr};
}

std::vector<BindingInfo> Proxy::bindings_of(const config::Line& line) const {
  std::vector<BindingInfo> out;
  auto add = [&](const std::string& user) {
    if (const auto* list = store_.find(user)) {
      for (const auto& b : *list) {
        if (b.expires_at <= now_()) continue;
        if (std::none_of(out.begin(), out.end(), [&](const BindingInfo& o) { return o.contact == b.contact; }))
          out.push_back(b);
      }
    }
  };
  add(line.extension);
  if (line.auth_user != line.extension) add(line.auth_user);
  return out;
}

bool Proxy::is_our_domain(std::string_view host, std::optional<std::uint16_t> port) const {
  if (host == config_->sip.realm) return true;
  if (upstream_at(host, port.value_or(5060))) return false;
  return wire_.is_local(strip_brackets(host), port.value_or(5060));
}

std::string Proxy::to_tag(const Message& m) const {
  const auto h = std::hash<std::string>{}(tag_key_ + std::string(m.value(HeaderType::CallId)) +
                                          std::string(tag_of(m.value(HeaderType::From))));
  return hex64(h);
}

// Branch: our prefix, a hash of what identifies the request (RFC 3261 16.6 step 8, for loop
// detection) and a per-process unique part.
std::string Proxy::make_branch(const Message& m) {
  const auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  // The Route set is part of it (16.6 step 8): an in-dialog request through a cluster passes the
  // box twice with the same Request-URI and tags, a spiral and not a loop.
  std::string routes;
  for (const auto& h : m.headers)
    if (h.type == HeaderType::Route) routes.append(h.value).append(",");
  const auto loop = std::hash<std::string>{}(
      fmt::format("{}|{}|{}|{}|{}|{}", m.request_uri, tag_of(m.value(HeaderType::From)),
                  tag_of(m.value(HeaderType::To)), m.value(HeaderType::CallId), cseq ? cseq->number : 0, routes));
  return fmt::format("{}{}-{}{:x}", kBranchPrefix, hex64(loop), tag_key_, ++branch_counter_);
}

bool Proxy::wants(const Message& m) const {
  if (!m.is_request) return true;
  switch (m.method) {
    case Method::Register: return false;
    case Method::Invite:
    case Method::Ack:
    case Method::Cancel:
    case Method::Bye:
    case Method::Prack:
    case Method::Update:
    case Method::Info: return true;
    default: break;
  }
  if (!tag_of(m.value(HeaderType::To)).empty() || m.find(HeaderType::Route)) return true;
  // Cisco alarms and pings to the box itself stay with the registrar; requests to a line are calls.
  const std::string user(uri_user(m.request_uri));
  return !user.empty() && line_by_extension(user).second != nullptr;
}

void Proxy::handle(const Message& m, const Source& src) {
  if (m.is_request)
    on_request(m, src);
  else
    on_response(m, src);
}

void Proxy::reply_stateless(const Message& m, const Source& src, int code, std::string_view reason,
                            const std::string& extra) {
  wire_.send(reply_destination(m, src), build_response(m, src, code, reason, to_tag(m), extra));
}

// ---- server transactions --------------------------------------------------------------------

void Proxy::send_provisional(const std::shared_ptr<ServerTx>& tx, std::string bytes) {
  if (tx->status >= 200) return;
  tx->last_provisional = std::move(bytes);
  wire_.send(tx->reply_to, tx->last_provisional);
}

void Proxy::answer(const std::shared_ptr<ServerTx>& tx, int code, std::string_view reason, const std::string& extra) {
  auto req = parse_message(tx->request, options_.limits);
  if (!req) return;
  std::string bytes = build_response(*req, tx->src, code, reason, to_tag(*req), extra);
  if (code < 200)
    send_provisional(tx, std::move(bytes));
  else
    send_final(tx, code, std::move(bytes));
}

void Proxy::send_final(const std::shared_ptr<ServerTx>& tx, int status, std::string bytes) {
  if (tx->status >= 200) return;
  tx->status = status;
  tx->last_final = std::move(bytes);
  tx->no_answer.cancel();
  wire_.send(tx->reply_to, tx->last_final);
  const bool reliable = tx->reply_to.transport == Transport::Tcp;
  const std::weak_ptr<void> owner = tx;
  ServerTx* raw = tx.get();
  if (tx->invite && !tx->in_dialog && status >= 300) {
    std::string reason;
    if (auto r = parse_message(tx->last_final, options_.limits); r && !r->is_request) reason = std::string(r->reason);
    const bool from_callee = !tx->best_response.empty() && status == tx->best_status;
    call_ended(tx->call_id, status, reason, tx->cancelled ? "caller" : (from_callee ? "callee" : "box"));
  }
  if (tx->invite && status < 300) {
    // RFC 6026 Accepted: absorb retransmitted INVITEs while the UAS retransmits its 2xx (Timer L).
    tx->state = ServerTx::State::Accepted;
    tx->life.arm(64 * t1(), owner, [this, raw] { terminate_server(raw->key); });
  } else if (tx->invite) {
    tx->state = ServerTx::State::Completed;
    if (!reliable) {
      tx->interval = t1();
      tx->retransmit.arm(tx->interval, owner, [this, raw] { retransmit_final(raw); });  // G
    }
    tx->life.arm(64 * t1(), owner, [this, raw] { terminate_server(raw->key); });  // H
  } else {
    tx->state = ServerTx::State::Completed;
    tx->life.arm(reliable ? milliseconds(0) : 64 * t1(), owner, [this, raw] { terminate_server(raw->key); });  // J
  }
}

void Proxy::retransmit_final(ServerTx* tx) {
  if (tx->state != ServerTx::State::Completed) return;
  wire_.send(tx->reply_to, tx->last_final);
  tx->interval = std::min(tx->interval * 2, options_.t2);
  auto it = servers_.find(tx->key);
  if (it == servers_.end()) return;
  tx->retransmit.arm(tx->interval, it->second, [this, tx] { retransmit_final(tx); });
}

void Proxy::terminate_server(const std::string& key) {
  auto it = servers_.find(key);
  if (it == servers_.end()) return;
  auto tx = it->second;
  tx->retransmit.cancel();
  tx->life.cancel();
  tx->no_answer.cancel();
  tx->branches.clear();
  servers_.erase(it);
}

void Proxy::terminate_client(const std::string& key) {
  auto it = clients_.find(key);
  if (it == clients_.end()) return;
  auto ctx = it->second;
  ctx->retransmit.cancel();
  ctx->life.cancel();
  ctx->ring.cancel();
  clients_.erase(it);
}

// ---- requests -------------------------------------------------------------------------------

void Proxy::on_request(const Message& m, const Source& src) {
  const auto vias = via_values(m);
  auto top = vias.empty() ? Result<Via, ParseError>(unexpected(ParseError::BadVia)) : parse_via(vias.front());
  if (!top) return;  // no response can be routed back
  const std::string by = sent_by(*top);
  const std::string branch(top->branch());
  if (m.method == Method::Ack) {
    on_ack(m, src, key_of(branch, by, "INVITE"));
    return;
  }
  if (m.method == Method::Cancel) {
    on_cancel(m, src, key_of(branch, by, "INVITE"));
    return;
  }
  const std::string key = key_of(branch, by, m.method_text);
  if (auto it = servers_.find(key); it != servers_.end()) {
    // A retransmission (RFC 3261 17.2.1 / 17.2.2): repeat the last response, if any.
    auto& tx = *it->second;
    if (tx.state == ServerTx::State::Completed && !tx.last_final.empty())
      wire_.send(tx.reply_to, tx.last_final);
    else if (tx.state == ServerTx::State::Proceeding && !tx.last_provisional.empty())
      wire_.send(tx.reply_to, tx.last_provisional);
    return;
  }
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  if (!cseq || cseq->method != m.method_text) {
    reply_stateless(m, src, 400, "Bad Request (CSeq)");
    return;
  }

  auto tx = std::make_shared<ServerTx>(io_);
  tx->key = key;
  tx->method = m.method;
  tx->invite = m.method == Method::Invite;
  tx->src = src;
  tx->reply_to = reply_destination(m, src);
  tx->request = std::string(m.raw);
  tx->call_id = std::string(m.value(HeaderType::CallId));
  tx->from_tag = std::string(tag_of(m.value(HeaderType::From)));
  tx->in_dialog = !tag_of(m.value(HeaderType::To)).empty();
  servers_[key] = tx;
  // Views into tx->request, which lives as long as the transaction.
  auto parsed = parse_message(tx->request, options_.limits);
  if (!parsed) {
    terminate_server(key);
    return;
  }
  const Message& req = *parsed;

  if (tx->invite) answer(tx, 100, "Trying");

  // RFC 3261 16.3: validation.
  if (const Header* mf = req.find(HeaderType::MaxForwards)) {
    auto v = parse_uint(mf->value);
    if (!v) {
      answer(tx, 400, "Bad Request (Max-Forwards)");
      return;
    }
    if (*v == 0) {
      answer(tx, 483, "Too Many Hops");
      return;
    }
  }
  if (const Header* pr = req.find_named("Proxy-Require")) {
    answer(tx, 420, "Bad Extension", fmt::format("Unsupported: {}\r\n", collapse_whitespace(pr->value)));
    return;
  }
  // Loop: one of our own Vias carries the hash of this very request (16.3 step 4).
  const std::string marker = make_branch(req).substr(0, kBranchPrefix.size() + 16);
  for (auto v : vias) {
    auto via = parse_via(v);
    if (via && via->branch().substr(0, marker.size()) == marker &&
        wire_.is_local(strip_brackets(via->host), via->port.value_or(5060))) {
      answer(tx, 482, "Loop Detected");
      return;
    }
  }

  // SRST: requests the cluster sends along a Path the box inserted go to the phone's flow.
  if (upstream_ && relay_along_path(tx, req, src)) return;

  if (tx->in_dialog) {
    route_in_dialog(req, src, tx);
    return;
  }
  // SRST upstream mode: the cluster is the call control; it authenticates the phone.
  if (upstream_ && relay_upstream(tx, req)) return;

  // Out of dialog: a request for a line of this box, from an authenticated line.
  auto ruri = parse_uri(req.request_uri);
  if (!ruri || (ruri->scheme != "sip" && ruri->scheme != "sips")) {
    answer(tx, 416, "Unsupported URI Scheme");
    return;
  }
  if (!is_our_domain(ruri->host, ruri->port)) {
    ++counters_.relay_denied;
    log_->warn("{} from {}:{} for {}: relaying denied (no upstream)", req.method_text, src.ip, src.port,
               req.request_uri);
    answer(tx, 403, "Forbidden (relaying denied)");
    return;
  }
  // A preloaded Route (the phone's outbound proxy) must be us; we have no upstream to go on to.
  for (const auto& h : req.headers) {
    if (h.type != HeaderType::Route) continue;
    for (auto r : split_list(h.value)) {
      if (!is_our_route(r)) {
        ++counters_.relay_denied;
        answer(tx, 403, "Forbidden (relaying denied)");
        return;
      }
    }
  }
  const std::string called(ruri->user);
  if (called.empty()) {
    answer(tx, 404, "Not Found");
    return;
  }
  if (!authenticate(tx, req)) return;
  if (tx->invite && calls_.size() >= kMaxCalls) {
    // Far above what a branch's phones can place: a flood, answered without state growing.
    answer(tx, 503, "Service Unavailable (call table full)", "Retry-After: 10\r\n");
    return;
  }
  if (tx->invite) {
    ++counters_.attempts;
    Call c;
    c.info.call_id = tx->call_id;
    c.info.from = tx->caller;
    c.info.to = called;
    c.info.state = "ringing";
    c.info.started = now_();
    c.info.caller_transport = src.transport;
    c.caller_tag = tx->from_tag;
    c.caller_flow = tx->reply_to;
    if (auto [phone, line] = line_by_extension(tx->caller); phone) c.caller_mac = phone->mac;
    calls_[tx->call_id] = std::move(c);
    log_->info("call {} from {} to {} ({}:{} over {})", tx->call_id, tx->caller, called, src.ip, src.port,
               to_string(src.transport));
  }
  start_target(tx, called, true);
}

// Proxy digest (RFC 3261 22.3) with the registrar's Authenticator: the same nonce rules (bound
// to the source, nc growing, uri = Request-URI, short life) and the same guess throttle. The
// From user must be the authenticated line: a phone cannot place calls as another line.
bool Proxy::authenticate(const std::shared_ptr<ServerTx>& tx, const Message& req) {
  const auto now = now_();
  AuthRequest request;
  for (const auto& h : req.headers)
    if (h.type == HeaderType::ProxyAuthorization) request.credentials.push_back(h.value);
  request.method = req.method_text;
  request.request_uri = req.request_uri;
  request.source_ip = tx->src.ip;
  const auto password = [&](std::string_view username) -> std::optional<std::string_view> {
    const auto [phone, line] = line_by_user(std::string(username));
    if (!line || line->password.empty()) return std::nullopt;
    return std::string_view(line->password.reveal());
  };
  const auto result = auth_.verify(request, password, now);
  auto challenge = [&](bool stale) {
    ++counters_.auth_challenges;
    answer(tx, 407, "Proxy Authentication Required",
           fmt::format("Proxy-Authenticate: {}\r\n", auth_.challenge(tx->src.ip, stale, now)));
    return false;
  };
  const auto na = parse_name_addr(req.value(HeaderType::From));
  const std::string from_user(na ? uri_user(na->uri) : std::string_view{});
  const auto [from_phone, from_line] = line_by_extension(from_user);
  auto forbid = [&](const std::string& why) {
    ++counters_.auth_failures;
    log_->debug("{} from {}:{} (From {}, digest user {}): {}", req.method_text, tx->src.ip, tx->src.port,
                from_user.substr(0, 64), result.username.substr(0, 64), why);
    if (from_phone) {
      PhoneEvent e;
      e.mac = from_phone->mac;
      e.step = Step::InService;
      e.outcome = Outcome::Failed;
      e.detail = fmt::format("call failed: 403 {}", why);
      e.time = now;
      e.ip = tx->src.ip;
      e.verified = false;  // whoever sent it did not prove to be this phone
      events_.report(std::move(e));
    }
    answer(tx, 403, "Forbidden");
    return false;
  };
  switch (response_for(result.outcome)) {
    case AuthResponse::Accept: break;
    case AuthResponse::Challenge: return challenge(false);
    case AuthResponse::Stale: return challenge(true);
    case AuthResponse::BadRequest:
      answer(tx, 400, fmt::format("Bad Request (Proxy-Authorization: {})", to_string(result.outcome)));
      return false;
    case AuthResponse::Drop: terminate_server(tx->key); return false;
    case AuthResponse::Forbidden:
      return forbid(result.outcome == AuthOutcome::WrongUser ? "unknown digest user " + result.username.substr(0, 64)
                                                             : "wrong password for " + result.username.substr(0, 64));
  }
  const auto [phone, line] = line_by_user(result.username);
  if (!line) return forbid("unknown digest user");
  if (from_user != line->extension && from_user != line->auth_user)
    return forbid(fmt::format("From {} is not the line of digest user {}", from_user.substr(0, 64), result.username));
  tx->caller = line->extension;
  return true;
}

bool Proxy::is_our_route(std::string_view route) const {
  auto na = parse_name_addr(route);
  if (!na) return false;
  auto u = parse_uri(na->uri);
  if (!u) return false;
  // A wildcard listener takes any address with our port for us; a cluster member never is.
  if (upstream_at(u->host, u->port.value_or(5060))) return false;
  return wire_.is_local(strip_brackets(u->host), u->port.value_or(5060));
}

void Proxy::start_target(const std::shared_ptr<ServerTx>& tx, const std::string& extension, bool first) {
  if (!tx->visited.insert(extension).second || tx->retargets > kMaxRetargets) {
    answer(tx, 482, "Loop Detected (forwarding)");
    return;
  }
  const auto [phone, line] = line_by_extension(extension);
  if (!line) {
    if (upstream_ && upstream_->mode() == SipMode::Survivable) {
      // Survivable mode: numbers beyond the branch are the cluster's, and it is gone.
      answer(tx, 503, "Service Unavailable",
             "Reason: SIP;cause=503;text=\"upstream cluster unreachable\"\r\nRetry-After: 30\r\n");
      return;
    }
    answer(tx, 404, "Not Found");
    return;
  }
  tx->target = extension;
  if (tx->invite && !line->forward.all.empty()) {
    ++tx->retargets;
    ++counters_.forwarded;
    log_->info("call {}: {} forwards all calls to {}", tx->call_id, extension, line->forward.all);
    start_target(tx, line->forward.all, false);
    return;
  }
  const auto bindings = bindings_of(*line);
  if (bindings.empty()) {
    answer(tx, 480, "Temporarily Unavailable");
    return;
  }
  const bool record_route = tx->method == Method::Invite || tx->method == Method::Subscribe ||
                            tx->method == Method::Refer || tx->method == Method::Notify;
  auto req = parse_message(tx->request, options_.limits);
  if (!req) return;
  for (const auto& b : bindings) add_branch(tx, *req, binding_destination(b), b.contact, extension, record_route);
  if (tx->invite && !line->forward.no_answer.empty()) {
    const std::weak_ptr<void> owner = tx;
    ServerTx* raw = tx.get();
    tx->no_answer.arm(std::chrono::seconds(line->forward.no_answer_s), owner, [this, raw] { no_answer(raw); });
  }
  (void)first;
}

void Proxy::no_answer(ServerTx* raw) {
  auto it = servers_.find(raw->key);
  if (it == servers_.end()) return;
  auto tx = it->second;
  if (tx->status >= 200 || tx->answered || tx->cancelled) return;
  const auto [phone, line] = line_by_extension(tx->target);
  if (!line || line->forward.no_answer.empty()) return;
  log_->info("call {}: {} did not answer in {} s, forwarding to {}", tx->call_id, tx->target, line->forward.no_answer_s,
             line->forward.no_answer);
  const std::string next = line->forward.no_answer;
  cancel_branches(tx, true);
  ++tx->retargets;
  ++counters_.forwarded;
  tx->best_status = 0;
  tx->best_response.clear();
  start_target(tx, next, false);
}

// The Record-Route entries for a request from `in` to `out`: one if both sides use the same
// transport, two otherwise (RFC 5658 double record-routing), so each phone sends its in-dialog
// requests over its own transport.
std::string Proxy::record_route(const Source& in, const Destination& out) const {
  auto uri = [](const std::string& addr, Transport t) {
    return t == Transport::Tcp ? fmt::format("<sip:{};transport=tcp;lr>", addr) : fmt::format("<sip:{};lr>", addr);
  };
  const std::string out_addr = wire_.local_address(out.transport, out.ip);
  if (in.transport == out.transport) return fmt::format("Record-Route: {}\r\n", uri(out_addr, out.transport));
  const std::string in_addr = wire_.local_address(in.transport, in.ip);
  return fmt::format("Record-Route: {}, {}\r\n", uri(out_addr, out.transport), uri(in_addr, in.transport));
}

std::string Proxy::forward_request(const Message& req, std::string_view target_uri, const std::string& via,
                                   const std::string& rr, bool keep_credentials) const {
  std::string out;
  out.reserve(req.raw.size() + via.size() + rr.size() + 64);
  out += req.method_text;
  out += ' ';
  out += target_uri;
  out += " SIP/2.0\r\n";
  out += via;
  out += rr;
  bool max_forwards = false;
  bool content_length = false;
  bool popping = true;  // our own Route entries at the top are consumed (loose routing, 16.4)
  for (const auto& h : req.headers) {
    switch (h.type) {
      case HeaderType::MaxForwards: {
        auto v = parse_uint(h.value);
        fmt::format_to(std::back_inserter(out), "Max-Forwards: {}\r\n", v && *v > 0 ? *v - 1 : 0);
        max_forwards = true;
        continue;
      }
      case HeaderType::ProxyAuthorization: {
        // Our realm's credentials were for us (RFC 3261 22.3); others pass on.
        auto c = parse_digest_credentials(h.value);
        if (!keep_credentials && c && c->realm == config_->sip.realm) continue;
        break;
      }
      case HeaderType::Route: {
        std::string kept;
        for (auto r : split_list(h.value)) {
          if (popping && is_our_route(r)) continue;
          popping = false;
          if (!kept.empty()) kept += ", ";
          kept += r;
        }
        if (!kept.empty()) fmt::format_to(std::back_inserter(out), "Route: {}\r\n", kept);
        continue;
      }
      case HeaderType::ContentLength: content_length = true; break;
      default: break;
    }
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!max_forwards) out += "Max-Forwards: 70\r\n";
  if (!content_length) fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", req.body.size());
  out += "\r\n";
  out += req.body;
  return out;
}

void Proxy::add_branch(const std::shared_ptr<ServerTx>& tx, const Message& req, const Destination& to,
                       std::string_view target_uri, const std::string& user, bool rr) {
  auto ctx = new_client(tx, to, make_branch(req), user);
  const std::string via = fmt::format("Via: SIP/2.0/{} {};branch={};rport\r\n", transport_token(to.transport),
                                      wire_.local_address(to.transport, to.ip), ctx->branch);
  ctx->request = forward_request(req, target_uri, via, rr ? record_route(tx->src, to) : std::string());
  start_client(tx, ctx, req.method_text);
}

// One branch of `tx` (RFC 3261 16.6) towards `to`, its request still to be written.
std::shared_ptr<Proxy::ClientTx> Proxy::new_client(const std::shared_ptr<ServerTx>& tx, const Destination& to,
                                                   std::string branch, const std::string& user) {
  auto ctx = std::make_shared<ClientTx>(io_);
  ctx->branch = std::move(branch);
  ctx->method = tx->method;
  ctx->invite = tx->invite;
  ctx->to = to;
  ctx->target_user = user;
  ctx->server = tx;
  ctx->upstream = tx->reply_to;
  return ctx;
}

// Responses find a branch by its Via branch and method (RFC 3261 17.1.3).
void Proxy::start_client(const std::shared_ptr<ServerTx>& tx, const std::shared_ptr<ClientTx>& ctx,
                         std::string_view method_text) {
  ctx->key = ctx->branch + "|" + std::string(method_text);
  clients_[ctx->key] = ctx;
  tx->branches.push_back(ctx);
  send_client(ctx);
}

void Proxy::send_client(const std::shared_ptr<ClientTx>& ctx) {
  wire_.send(ctx->to, ctx->request);
  const bool reliable = ctx->to.transport == Transport::Tcp;
  const std::weak_ptr<void> owner = ctx;
  ClientTx* raw = ctx.get();
  ctx->interval = t1();
  if (!reliable) ctx->retransmit.arm(ctx->interval, owner, [this, raw] { retransmit_request(raw); });  // A / E
  ctx->life.arm(64 * t1(), owner, [this, raw] { client_timeout(raw); });                               // B / F
  if (ctx->invite) {
    ctx->ring.arm(std::chrono::seconds(config_->sip.ring_timeout_s), owner, [this, raw] { ring_timeout(raw); });  // C
  }
}

void Proxy::retransmit_request(ClientTx* ctx) {
  if (ctx->state != ClientTx::State::Calling && (ctx->invite || ctx->state != ClientTx::State::Proceeding)) return;
  wire_.send(ctx->to, ctx->request);
  if (ctx->invite)
    ctx->interval *= 2;  // A doubles without cap
  else
    ctx->interval = ctx->state == ClientTx::State::Proceeding ? options_.t2 : std::min(ctx->interval * 2, options_.t2);
  auto it = clients_.find(ctx->key);
  if (it == clients_.end()) return;
  ctx->retransmit.arm(ctx->interval, it->second, [this, ctx] { retransmit_request(ctx); });
}

// Timer B / F: no final response in time; the branch counts as 408 (RFC 3261 16.7 step 2... 8.1.3.1).
void Proxy::client_timeout(ClientTx* raw) {
  auto it = clients_.find(raw->key);
  if (it == clients_.end()) return;
  auto ctx = it->second;
  if (ctx->state == ClientTx::State::Completed || ctx->state == ClientTx::State::Accepted) {
    terminate_client(ctx->key);  // D / K / the 2xx window ended
    return;
  }
  log_->info("{} to {}:{} ({}): no final response, 408", ctx->invite ? "INVITE" : "request", ctx->to.ip, ctx->to.port,
             ctx->target_user);
  terminate_client(ctx->key);
  branch_final(ctx, 408, std::string());
}

// Timer C: the phone rang too long. CANCEL it if it rang, else treat as 408 (RFC 3261 16.8).
void Proxy::ring_timeout(ClientTx* raw) {
  auto it = clients_.find(raw->key);
  if (it == clients_.end()) return;
  auto ctx = it->second;
  if (ctx->state == ClientTx::State::Proceeding) {
    ctx->timed_out = true;
    cancel_branch(ctx);
  } else if (ctx->state == ClientTx::State::Calling) {
    terminate_client(ctx->key);
    branch_final(ctx, 408, std::string());
  }
}

void Proxy::cancel_branches(const std::shared_ptr<ServerTx>& tx, bool superseded) {
  for (auto& b : tx->branches) {
    if (b->state != ClientTx::State::Calling && b->state != ClientTx::State::Proceeding) continue;
    if (superseded) b->superseded = true;
    cancel_branch(b);
  }
}

void Proxy::cancel_branch(const std::shared_ptr<ClientTx>& ctx) {
  if (ctx->cancel_sent) return;
  if (ctx->state == ClientTx::State::Calling) {
    ctx->cancel_wanted = true;  // RFC 3261 9.1: not before a provisional response
    return;
  }
  if (ctx->state != ClientTx::State::Proceeding) return;
  auto req = parse_message(ctx->request, options_.limits);
  if (!req) return;
  ctx->cancel_sent = true;
  auto cancel = std::make_shared<ClientTx>(io_);
  cancel->branch = ctx->branch;
  cancel->method = Method::Cancel;
  cancel->cancel_only = true;
  cancel->to = ctx->to;
  cancel->key = ctx->branch + "|CANCEL";
  std::string& out = cancel->request;
  fmt::format_to(std::back_inserter(out), "CANCEL {} SIP/2.0\r\nVia: {}\r\n", req->request_uri,
                 via_values(*req).front());
  for (const auto& h : req->headers) {
    if (h.type == HeaderType::Route || h.type == HeaderType::From || h.type == HeaderType::To ||
        h.type == HeaderType::CallId)
      fmt::format_to(std::back_inserter(out), "{}: {}\r\n", h.name, h.value);
  }
  const auto cseq = parse_cseq(req->value(HeaderType::CSeq));
  fmt::format_to(std::back_inserter(out), "CSeq: {} CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                 cseq ? cseq->number : 1);
  clients_[cancel->key] = cancel;
  send_client(cancel);
  // A phone that never answers the CANCEL with 487: the branch ends as a timeout (Timer C's 408).
  ClientTx* raw = ctx.get();
  ctx->life.arm(64 * t1(), ctx, [this, raw] { client_timeout(raw); });
}

// ---- CANCEL and ACK -------------------------------------------------------------------------

void Proxy::on_cancel(const Message& m, const Source& src, const std::string& invite_key) {
  auto it = servers_.find(invite_key);
  if (it == servers_.end()) {
    reply_stateless(m, src, 481, "Call/Transaction Does Not Exist");
    return;
  }
  auto tx = it->second;
  // The CANCEL is answered on its own (RFC 3261 9.2), with the To tag the INVITE got.
  wire_.send(reply_destination(m, src), build_response(m, src, 200, "OK", to_tag(m), {}));
  if (tx->status >= 200 || tx->answered || tx->cancelled) return;
  tx->cancelled = true;
  log_->info("call {} cancelled by the caller", tx->call_id);
  cancel_branches(tx, false);
  maybe_finish(tx);
}

void Proxy::on_ack(const Message& m, const Source& src, const std::string& invite_key) {
  if (auto it = servers_.find(invite_key); it != servers_.end()) {
    auto tx = it->second;
    if (tx->state == ServerTx::State::Completed) {
      // The ACK of our non-2xx final: it ends here, hop by hop (17.2.1, Timer I).
      tx->state = ServerTx::State::Confirmed;
      tx->retransmit.cancel();
      ServerTx* raw = tx.get();
      tx->life.arm(tx->reply_to.transport == Transport::Tcp ? milliseconds(0) : options_.t4, tx,
                   [this, raw] { terminate_server(raw->key); });
      return;
    }
    if (tx->state == ServerTx::State::Confirmed) return;
  }
  // The ACK of a 2xx is a request of the dialog: forwarded statelessly along it.
  route_in_dialog(m, src, nullptr);
}

// In-dialog requests: the box Record-Routed the dialog, so they carry our Route. They go to the
// other party's flow as learnt from the INVITE and its 2xx, or to a registered contact named in
// the Request-URI; anything else would make us an open relay.
void Proxy::route_in_dialog(const Message& m, const Source& src, const std::shared_ptr<ServerTx>& tx) {
  (void)src;
  auto fail = [&](int code, std::string_view reason) {
    ++counters_.relay_denied;
    if (tx) answer(tx, code, reason);
  };
  if (upstream_) {
    // A dialog through the cluster: its Route set names the box, then a cluster member.
    if (auto hop = upstream_next_hop(m)) {
      if (m.method == Method::Ack) {
        const std::string via = fmt::format("Via: SIP/2.0/{} {};branch={}\r\n", transport_token(hop->transport),
                                            wire_.local_address(hop->transport, hop->ip), make_branch(m));
        wire_.send(*hop, forward_request(m, m.request_uri, via, {}, true));
        return;
      }
      if (!tx) return;
      const std::string branch = make_branch(m);
      const std::string via = fmt::format("Via: SIP/2.0/{} {};branch={};rport\r\n", transport_token(hop->transport),
                                          wire_.local_address(hop->transport, hop->ip), branch);
      add_prepared_branch(tx, *hop, branch, forward_request(m, m.request_uri, via, {}, true), {});
      return;
    }
  }
  bool ours = false;
  bool foreign = false;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Route) continue;
    for (auto r : split_list(h.value)) {
      if (!foreign && is_our_route(r))
        ours = true;
      else
        foreign = true;
    }
  }
  if (foreign) return fail(403, "Forbidden (relaying denied)");
  const std::string call_id(m.value(HeaderType::CallId));
  const std::string from_tag(tag_of(m.value(HeaderType::From)));
  std::optional<Destination> dest;
  std::string side;
  if (auto it = calls_.find(call_id); it != calls_.end() && !it->second.callee_tag.empty()) {
    Call& c = it->second;
    if (from_tag == c.caller_tag) {
      dest = c.callee_flow;
      side = "caller";
    } else if (from_tag == c.callee_tag) {
      dest = c.caller_flow;
      side = "callee";
    }
  }
  if (!dest && ours) {
    // Early-dialog requests (PRACK, UPDATE) and dialogs from before a restart: the Request-URI
    // must be the Contact of a registered phone.
    for (const auto& b : store_.all()) {
      if (b.contact == m.request_uri) {
        dest = binding_destination(b);
        break;
      }
    }
  }
  if (!dest) return fail(481, "Call/Transaction Does Not Exist");
  if (m.method == Method::Ack) {
    const std::string via = fmt::format("Via: SIP/2.0/{} {};branch={}\r\n", transport_token(dest->transport),
                                        wire_.local_address(dest->transport, dest->ip), make_branch(m));
    wire_.send(*dest, forward_request(m, m.request_uri, via, {}));
    return;
  }
  if (!tx) return;
  tx->caller = side;
  add_branch(tx, m, *dest, m.request_uri, {}, false);
}

// ---- responses ------------------------------------------------------------------------------

void Proxy::on_response(const Message& m, const Source& src) {
  (void)src;
  const auto vias = via_values(m);
  if (vias.empty()) return;
  auto top = parse_via(vias.front());
  auto cseq = parse_cseq(m.value(HeaderType::CSeq));
  if (!top || !cseq) return;
  auto it = clients_.find(std::string(top->branch()) + "|" + std::string(cseq->method));
  if (it == clients_.end()) return;  // not ours, or long finished: dropped (16.7 step 2)
  auto ctx = it->second;
  const int status = m.status;
  const std::weak_ptr<void> owner = ctx;
  ClientTx* raw = ctx.get();
  const bool reliable = ctx->to.transport == Transport::Tcp;
  if (ctx->cancel_only) {
    if (status >= 200 && ctx->state != ClientTx::State::Completed) {
      ctx->state = ClientTx::State::Completed;
      ctx->retransmit.cancel();
      ctx->life.arm(reliable ? milliseconds(0) : options_.t4, owner, [this, raw] { terminate_client(raw->key); });
    }
    return;
  }
  auto server = ctx->server.lock();
  if (status < 200) {
    if (ctx->state == ClientTx::State::Calling) {
      ctx->state = ClientTx::State::Proceeding;
      if (ctx->invite) {
        ctx->retransmit.cancel();
        ctx->life.cancel();  // B no longer applies; Timer C governs
      } else if (!reliable) {
        ctx->interval = options_.t2;
      }
    }
    if (ctx->invite) {
      if (status > 100)
        ctx->ring.arm(std::chrono::seconds(config_->sip.ring_timeout_s), owner, [this, raw] { ring_timeout(raw); });
      if (ctx->cancel_wanted) cancel_branch(ctx);
      if (status > 100 && server && !ctx->superseded && !server->cancelled) send_provisional(server, strip_top_via(m));
    }
    return;
  }
  if (ctx->invite && status < 300) {
    // 2xx: forwarded at once, every one of them (16.7 step 5); the first answers the call.
    const std::string forwarded = strip_top_via(m);
    if (ctx->state != ClientTx::State::Accepted) {
      ctx->state = ClientTx::State::Accepted;
      ctx->status = status;
      ctx->retransmit.cancel();
      ctx->ring.cancel();
      ctx->life.arm(64 * t1(), owner, [this, raw] { terminate_client(raw->key); });
      if (server && !server->answered) {
        server->answered = true;
        if (!server->in_dialog) call_answered(server, ctx, m);
        cancel_branches(server, false);
      }
    }
    if (server && server->status == 0)
      send_final(server, status, forwarded);
    else
      wire_.send(ctx->upstream, forwarded);
    return;
  }
  if (ctx->state == ClientTx::State::Completed || ctx->state == ClientTx::State::Accepted) {
    if (!ctx->ack.empty()) wire_.send(ctx->to, ctx->ack);  // a retransmitted final: ACK again
    return;
  }
  ctx->state = ClientTx::State::Completed;
  ctx->status = status;
  ctx->retransmit.cancel();
  ctx->ring.cancel();
  if (ctx->invite) {
    // Hop-by-hop ACK of a non-2xx final (17.1.1.3); Timer D keeps absorbing retransmissions.
    auto req = parse_message(ctx->request, options_.limits);
    if (req) {
      std::string& out = ctx->ack;
      fmt::format_to(std::back_inserter(out), "ACK {} SIP/2.0\r\nVia: {}\r\n", req->request_uri,
                     via_values(*req).front());
      for (const auto& h : req->headers) {
        if (h.type == HeaderType::Route || h.type == HeaderType::From || h.type == HeaderType::CallId)
          fmt::format_to(std::back_inserter(out), "{}: {}\r\n", h.name, h.value);
      }
      fmt::format_to(std::back_inserter(out), "To: {}\r\nCSeq: {} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                     m.value(HeaderType::To), cseq->number);
      wire_.send(ctx->to, ctx->ack);
    }
    ctx->life.arm(reliable ? milliseconds(0) : 64 * t1(), owner, [this, raw] { terminate_client(raw->key); });  // D
  } else {
    ctx->life.arm(reliable ? milliseconds(0) : options_.t4, owner, [this, raw] { terminate_client(raw->key); });  // K
  }
  if (ctx->upstream_register) upstream_register_answered(*ctx, m);
  branch_final(ctx, status, strip_top_via(m));
}

void Proxy::branch_final(const std::shared_ptr<ClientTx>& ctx, int status, std::string forwarded) {
  auto server = ctx->server.lock();
  if (!server || ctx->superseded) {
    if (server) maybe_finish(server);
    return;
  }
  if (ctx->timed_out && status == 487) {
    status = 408;  // Timer C cancelled it: for the caller this is no answer
    forwarded.clear();
  }
  if (!server->invite && status < 300) {
    // Non-INVITE 2xx: the first one is the answer.
    if (server->in_dialog && server->method == Method::Bye) call_ended(server->call_id, status, "BYE", server->caller);
    send_final(server, status, std::move(forwarded));
    return;
  }
  auto rank = [](int s) {
    // 16.7 step 6: 6xx first, then the lowest class; among 4xx prefer what the caller can act on.
    if (s >= 600) return 0;
    if (s == 401 || s == 407 || s == 415 || s == 420 || s == 484) return 1;
    if (s >= 400 && s < 500) return 2;
    if (s >= 500 && s < 600) return 3;
    if (s >= 300 && s < 400) return 4;
    return 5;
  };
  if (server->best_status == 0 || rank(status) < rank(server->best_status)) {
    server->best_status = status;
    server->best_response = std::move(forwarded);
  }
  if (status >= 600) cancel_branches(server, false);
  if (server->in_dialog && server->method == Method::Bye) call_ended(server->call_id, status, "BYE", server->caller);
  maybe_finish(server);
}

void Proxy::maybe_finish(const std::shared_ptr<ServerTx>& tx) {
  if (tx->status >= 200 || tx->answered) return;
  for (const auto& b : tx->branches) {
    if (b->superseded) continue;
    if (b->state == ClientTx::State::Calling || b->state == ClientTx::State::Proceeding) {
      if (clients_.count(b->key)) return;  // still waiting for it
    }
  }
  if (tx->cancelled) {
    if (tx->best_status == 487 && !tx->best_response.empty())
      send_final(tx, 487, tx->best_response);
    else
      answer(tx, 487, "Request Terminated");
    return;
  }
  const int best = tx->best_status;
  if (tx->invite && !tx->in_dialog && tx->retargets <= kMaxRetargets) {
    const auto [phone, line] = line_by_extension(tx->target);
    std::string next;
    if (line && (best == 486 || best == 600)) next = line->forward.busy;
    if (line && best == 408) next = line->forward.no_answer;
    if (!next.empty()) {
      log_->info("call {}: {} answered {}, forwarding to {}", tx->call_id, tx->target, best, next);
      ++tx->retargets;
      ++counters_.forwarded;
      tx->best_status = 0;
      tx->best_response.clear();
      for (auto& b : tx->branches) b->superseded = true;
      start_target(tx, next, false);
      return;
    }
  }
  if (best == 0) {
    if (!tx->branches.empty()) answer(tx, 408, "Request Timeout");
    return;
  }
  if (!tx->best_response.empty())
    send_final(tx, best, tx->best_response);
  else
    answer(tx, best, best == 408 ? "Request Timeout" : "Service Unavailable");
}

// ---- calls ----------------------------------------------------------------------------------

void Proxy::call_answered(const std::shared_ptr<ServerTx>& tx, const std::shared_ptr<ClientTx>& ctx,
                          const Message& resp) {
  auto it = calls_.find(tx->call_id);
  if (it == calls_.end()) return;
  Call& c = it->second;
  c.callee_tag = std::string(tag_of(resp.value(HeaderType::To)));
  c.callee_flow = ctx->to;
  c.info.state = "answered";
  c.info.answered = now_();
  c.info.answered_by = ctx->target_user;
  c.info.final_code = resp.status;
  c.info.reason = std::string(resp.reason);
  c.info.callee_transport = ctx->to.transport;
  if (auto [phone, line] = line_by_extension(ctx->target_user); phone) c.callee_mac = phone->mac;
  ++counters_.answered;
  log_->info("call {} from {} to {} answered by {}", c.info.call_id, c.info.from, c.info.to, c.info.answered_by);
  report_call(c, c.info.from, true, Outcome::Ok,
              fmt::format("call placed to {} answered{}", c.info.to,
                          c.info.answered_by != c.info.to ? " by " + c.info.answered_by : ""));
  report_call(c, c.info.answered_by, false, Outcome::Ok, fmt::format("call received from {}", c.info.from));
}

void Proxy::call_ended(const std::string& call_id, int code, std::string reason, std::string side) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  Call c = std::move(it->second);
  calls_.erase(it);
  const bool was_answered = c.info.answered.has_value();
  c.info.state = "ended";
  c.info.ended = now_();
  c.info.ended_by = std::move(side);
  if (!was_answered) {
    c.info.final_code = code;
    c.info.reason = std::move(reason);
    switch (code) {
      case 486:
      case 600: ++counters_.busy; break;
      case 408: ++counters_.no_answer; break;
      case 487: ++counters_.cancelled; break;
      case 404: ++counters_.not_found; break;
      case 480: ++counters_.unavailable; break;
      default: ++counters_.failed_other; break;
    }
    const auto why = outcome_reason(code);
    log_->info("call {} from {} to {} failed: {} {}", c.info.call_id, c.info.from, c.info.to, code, c.info.reason);
    report_call(c, c.info.from, true, code == 487 ? Outcome::Info : Outcome::Failed,
                fmt::format("call placed to {} failed: {} {}{}", c.info.to, code, c.info.reason,
                            why.empty() ? "" : fmt::format(" ({})", why)));
  } else {
    log_->info("call {} from {} to {} ended by the {}", c.info.call_id, c.info.from, c.info.to, c.info.ended_by);
  }
  history_.push_front(c.info);
  while (history_.size() > options_.call_history) history_.pop_back();
  if (on_call_ended_) on_call_ended_(c.info);
}

void Proxy::report_call(const Call& c, const std::string& user, bool placed, Outcome outcome,
                        const std::string& detail) {
  std::optional<MacAddress> mac;
  if (auto [phone, line] = line_by_extension(user); phone) mac = phone->mac;
  if (!mac) return;
  PhoneEvent e;
  e.mac = *mac;
  e.step = Step::InService;
  e.outcome = outcome;
  e.detail = detail;
  e.time = now_();
  e.ip = placed ? c.caller_flow.ip : c.callee_flow.ip;
  e.attributes.emplace_back(Fact::LastCall, detail);
  if (outcome == Outcome::Failed) e.attributes.emplace_back(Fact::LastCallFailure, detail);
  events_.report(std::move(e));
}

void Proxy::set_history(std::vector<CallInfo> ended) {
  history_.assign(ended.begin(), ended.end());
  while (history_.size() > options_.call_history) history_.pop_back();
}

std::vector<CallInfo> Proxy::calls() const {
  std::vector<CallInfo> out;
  for (const auto& [id, c] : calls_) out.push_back(c.info);
  std::sort(out.begin(), out.end(), [](const CallInfo& a, const CallInfo& b) { return a.started > b.started; });
  out.insert(out.end(), history_.begin(), history_.end());
  return out;
}

// ---- SRST: fronting a cluster (sip.upstream) ------------------------------------------------

const config::Upstream* Proxy::upstream_at(std::string_view host, std::uint16_t port) const {
  const std::string h = strip_brackets(host);
  for (const auto& u : config_->sip.upstream)
    if (u.host == h && u.port == port) return &u;
  return nullptr;
}

bool Proxy::from_upstream(const Source& src) const {
  for (const auto& u : config_->sip.upstream)
    if (u.host == src.ip) return true;
  return false;
}

bool Proxy::relays_register(const Message& m) const {
  if (!upstream_ || !tokens_ || upstream_->mode() != SipMode::Upstream || !upstream_->active()) return false;
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value)) {
      auto c = parse_name_addr(v);
      if (c && find_param(c->params, "cisco-keep-alive")) return false;  // the box answers those
    }
  }
  return true;
}

// The top Route is a Path entry of ours: its token names the phone's flow. Only a configured
// upstream may use it, and only with a token the box made; anything else is refused, never
// delivered (the voice VLAN must not reach other phones by naming their flows).
bool Proxy::relay_along_path(const std::shared_ptr<ServerTx>& tx, const Message& req, const Source& src) {
  const Header* route = req.find(HeaderType::Route);
  if (!route) return false;
  const auto list = split_list(route->value);
  if (list.empty() || !is_our_route(list.front())) return false;
  const auto token = path_token(list.front());
  if (token.empty()) return false;
  auto flow = tokens_ ? tokens_->parse(token) : std::nullopt;
  if (!flow || !from_upstream(src)) {
    ++counters_.relay_denied;
    log_->warn("{} from {}:{} along a Path entry: {}", req.method_text, src.ip, src.port,
               flow ? "not from a configured upstream, refused" : "forged flow token, refused");
    answer(tx, 403, "Forbidden (relaying denied)");
    return true;
  }
  if (req.method == Method::Register) {
    answer(tx, 403, "Forbidden");
    return true;
  }
  Destination to = *flow;
  if (auto u = parse_uri(req.request_uri)) {
    to.contact_ip = strip_brackets(u->host);
    to.contact_port = u->port.value_or(5060);
  }
  const bool rr = req.method == Method::Invite || req.method == Method::Subscribe || req.method == Method::Refer ||
                  req.method == Method::Notify;
  const std::string branch = make_branch(req);
  const std::string via = fmt::format("Via: SIP/2.0/{} {};branch={};rport\r\n", transport_token(to.transport),
                                      wire_.local_address(to.transport, to.ip), branch);
  const std::string user(uri_user(req.request_uri));
  add_prepared_branch(tx, to, branch,
                      forward_request(req, req.request_uri, via,
                                      rr && !tx->in_dialog ? upstream_record_route(src, to) : std::string(), true),
                      user);
  return true;
}

bool Proxy::relay_upstream(const std::shared_ptr<ServerTx>& tx, const Message& req) {
  if (!upstream_ || !tokens_ || upstream_->mode() != SipMode::Upstream) return false;
  if (from_upstream(tx->src)) return false;  // the cluster's own requests are never sent back to it
  const UpstreamStatus* up = upstream_->active();
  if (!up) return false;
  const Destination to = up->destination();
  const bool tcp = to.transport == Transport::Tcp;
  const std::string hostport = fmt::format("{}:{}{}", up->config.host, up->config.port, tcp ? ";transport=tcp" : "");
  std::string target;
  std::string extra;
  const std::string branch = make_branch(req);
  const std::string box = wire_.local_address(to.transport, to.ip);
  if (req.method == Method::Register) {
    // The registrar's domain is the cluster's; the Path brings its requests for this phone back
    // to the box and names the phone's flow (RFC 3327, RFC 5626 ;ob).
    target = "sip:" + hostport;
    Destination flow;
    flow.transport = tx->src.transport;
    flow.ip = tx->src.ip;
    flow.port = tx->src.port;
    extra = fmt::format("Path: {}\r\n", path_entry(tokens_->make(flow), box, to.transport));
    bool path_supported = false;
    for (const auto& h : req.headers) {
      if (h.type != HeaderType::Supported) continue;
      for (auto v : split_list(h.value))
        if (iequals(trim(v), "path")) path_supported = true;
    }
    if (!path_supported) extra += "Supported: path\r\n";
  } else {
    const std::string user(uri_user(req.request_uri));
    target = user.empty() ? "sip:" + hostport : fmt::format("sip:{}@{}", user, hostport);
    const bool rr = req.method == Method::Invite || req.method == Method::Subscribe || req.method == Method::Refer ||
                    req.method == Method::Notify;
    if (rr) extra = upstream_record_route(tx->src, to);
  }
  const std::string via =
      fmt::format("Via: SIP/2.0/{} {};branch={};rport\r\n", transport_token(to.transport), box, branch);
  log_->debug("{} from {}:{} relayed to upstream {} ({})", req.method_text, tx->src.ip, tx->src.port, up->config.name,
              up->address());
  add_prepared_branch(tx, to, branch, forward_request(req, target, via, extra, true), up->config.name);
  if (req.method == Method::Register) {
    auto it = clients_.find(branch + "|" + std::string(req.method_text));
    if (it != clients_.end()) {
      it->second->upstream_register = true;
      it->second->upstream_name = up->config.name;
      it->second->phone = tx->src;
    }
  }
  return true;
}

// Between the phones' network and the cluster's the box has two addresses: Record-Route both
// (RFC 5658), the one the next hop reaches first, so each side routes to the address it can reach.
std::string Proxy::upstream_record_route(const Source& in, const Destination& out) const {
  auto uri = [](const std::string& addr, Transport t) {
    return t == Transport::Tcp ? fmt::format("<sip:{};transport=tcp;lr>", addr) : fmt::format("<sip:{};lr>", addr);
  };
  const std::string out_addr = wire_.local_address(out.transport, out.ip);
  const std::string in_addr = wire_.local_address(in.transport, in.ip);
  if (in.transport == out.transport && in_addr == out_addr)
    return fmt::format("Record-Route: {}\r\n", uri(out_addr, out.transport));
  return fmt::format("Record-Route: {}, {}\r\n", uri(out_addr, out.transport), uri(in_addr, in.transport));
}

std::optional<Destination> Proxy::upstream_next_hop(const Message& m) const {
  for (const auto& h : m.headers) {
    if (h.type != HeaderType::Route) continue;
    for (auto r : split_list(h.value)) {
      if (is_our_route(r)) continue;
      auto na = parse_name_addr(r);
      if (!na) return std::nullopt;
      auto u = parse_uri(na->uri);
      if (!u) return std::nullopt;
      const auto* up = upstream_at(u->host, u->port.value_or(5060));
      if (!up) return std::nullopt;
      Destination d;
      d.transport = up->transport == "tcp" ? Transport::Tcp : Transport::Udp;
      d.ip = up->host;
      d.port = up->port;
      d.contact_ip = up->host;
      d.contact_port = up->port;
      return d;
    }
  }
  return std::nullopt;
}

void Proxy::add_prepared_branch(const std::shared_ptr<ServerTx>& tx, const Destination& to, std::string branch,
                                std::string bytes, const std::string& user) {
  auto ctx = new_client(tx, to, std::move(branch), user);
  ctx->request = std::move(bytes);
  auto parsed = parse_message(ctx->request, options_.limits);
  start_client(tx, ctx, parsed ? parsed->method_text : std::string_view{});
}

// The cluster accepted (or refused) a REGISTER the box relayed. The box keeps a copy of each
// binding the cluster accepted, so that in survivable mode it can reach the phone at once.
void Proxy::upstream_register_answered(const ClientTx& ctx, const Message& resp) {
  auto req = parse_message(ctx.request, options_.limits);
  if (!req) return;
  auto to = parse_name_addr(req->value(HeaderType::To));
  if (!to) return;
  auto to_uri = parse_uri(to->uri);
  if (!to_uri || to_uri->user.empty()) return;
  const std::string user(to_uri->user);
  const auto [phone, line] = line_by_user(user);
  if (resp.status < 200 || resp.status == 401 || resp.status == 407) return;  // the phone answers the challenge
  if (!phone) {
    log_->debug("REGISTER of {} accepted by {} ({}): not a line of this site, no copy kept", user.substr(0, 64),
                ctx.upstream_name, resp.status);
    return;
  }
  auto report = [&](Outcome outcome, std::string detail, Facts facts) {
    PhoneEvent e;
    e.mac = phone->mac;
    e.step = Step::Register;
    e.outcome = outcome;
    e.detail = std::move(detail);
    e.time = now_();
    e.ip = ctx.phone.ip;
    e.attributes = std::move(facts);
    e.verified = resp.status < 300;  // the cluster authenticated the phone
    events_.report(std::move(e));
  };
  const UpstreamStatus* up = nullptr;
  for (const auto& u : upstream_->upstreams())
    if (u.config.name == ctx.upstream_name) up = &u;
  const std::string where = up ? fmt::format("{} ({})", up->config.name, up->address()) : ctx.upstream_name;
  if (resp.status >= 300) {
    report(Outcome::Failed,
           fmt::format("registration of {} refused by {}: {} {}", user, where, resp.status, resp.reason), {});
    return;
  }
  std::optional<std::uint32_t> header_expires;
  if (auto e = parse_uint(resp.value(HeaderType::Expires))) header_expires = *e;
  std::vector<NameAddr> granted;
  for (const auto& h : resp.headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value))
      if (auto c = parse_name_addr(v)) granted.push_back(std::move(*c));
  }
  const auto now = now_();
  const auto cseq = parse_cseq(req->value(HeaderType::CSeq));
  bool any = false;
  for (const auto& h : req->headers) {
    if (h.type != HeaderType::Contact) continue;
    for (auto v : split_list(h.value)) {
      auto c = parse_name_addr(v);
      if (!c || c->star) continue;
      BindingInfo b;
      b.user = user;
      b.aor = fmt::format("sip:{}@{}", user, to_uri->host);
      b.contact = std::string(c->uri);
      if (const Param* p = find_param(c->params, "+sip.instance")) b.instance = std::string(p->value);
      std::optional<std::uint32_t> expires;
      for (const auto& g : granted) {
        if (g.uri != c->uri) continue;
        if (const Param* p = find_param(g.params, "expires")) {
          if (auto e = parse_uint(p->value)) expires = *e;
        }
        if (!expires) expires = header_expires;
      }
      if (!expires || *expires == 0) {
        // Not in the cluster's list: unregistered there, so not kept here either.
        if (store_.remove(user, binding_key(b))) log_->info("{} unregistered {} at {}", user, b.contact, where);
        continue;
      }
      const auto info = cisco_device_info(*c, req->value(HeaderType::Reason));
      const auto* existing = store_.find(user, binding_key(b));
      b.transport = ctx.phone.transport;
      b.source = fmt::format("{}:{}", ctx.phone.ip, ctx.phone.port);
      b.call_id = std::string(req->value(HeaderType::CallId));
      b.cseq = cseq ? cseq->number : 0;
      b.registered_at = existing ? existing->registered_at : now;
      b.expires_at = now + std::chrono::seconds(*expires);
      b.mac = phone->mac;
      if (info.mac == phone->mac) {
        b.device_name = info.device_name;
        b.model = info.model;
      }
      b.user_agent = collapse_whitespace(req->value(HeaderType::UserAgent));
      b.active_load = info.active_load;
      b.inactive_load = info.inactive_load;
      b.reason_name = info.reason_name;
      b.registered_with = ctx.upstream_name;
      const bool changed = !existing || existing->registered_with != b.registered_with ||
                           existing->source != b.source || existing->contact != b.contact;
      store_.upsert(b);
      any = true;
      if (changed) {
        store_.flush();
        log_->info("{} registered {} with {} via the box from {} over {} for {} s", user, b.contact, where, b.source,
                   to_string(b.transport), *expires);
        Facts facts;
        facts.emplace_back(Fact::RegisteredWith, fmt::format("{} via the box", where));
        facts.emplace_back(Fact::RegistrationMode, "upstream " + ctx.upstream_name);
        if (!b.active_load.empty()) facts.emplace_back(Fact::ActiveLoad, b.active_load);
        if (!b.inactive_load.empty()) facts.emplace_back(Fact::InactiveLoad, b.inactive_load);
        if (!b.user_agent.empty()) facts.emplace_back(Fact::UserAgent, b.user_agent);
        if (!b.device_name.empty()) facts.emplace_back(Fact::DeviceName, b.device_name);
        report(Outcome::Ok,
               fmt::format("registered {} with {} via the box (from {} over {}, {} s)", user, ctx.upstream_name,
                           b.source, to_string(b.transport), *expires),
               std::move(facts));
      }
    }
  }
  (void)any;
}

}  // namespace ve::sip
