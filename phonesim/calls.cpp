// Calls: a registered phone answers the INVITEs the box forwards over its call manager
// connection and, with --call, places one call itself (INVITE, 407 digest, 180, 200, ACK along
// the Record-Route route set, BYE). Media is offered in SDP but never sent.
#include <fmt/format.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim::detail {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr std::string_view kAllow = "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY\r\n";

milliseconds since(Clock::time_point t) { return duration_cast<milliseconds>(Clock::now() - t); }

// The header a challenge came in: Proxy-Authenticate (407, what a proxy sends) or WWW-Authenticate.
std::string_view challenge_of(const sip::Message& m) {
  if (const auto* h = m.find_named("Proxy-Authenticate")) return h->value;
  return m.value(sip::HeaderType::WwwAuthenticate);
}

}  // namespace

std::string Phone::contact_uri() const {
  return fmt::format("sip:{}@{}:{};transport=tcp", contact_user_, result_.ip, sip_ ? sip_->local_port() : 0);
}

asio::awaitable<void> Phone::pause(Clock::duration d) {
  asio::steady_timer t(shared_.io);
  t.expires_after(d);
  error_code ec;
  co_await t.async_wait(token(ec));
}

void Phone::hang_up_line() {
  for (auto& [id, call] : incoming_) call.ring->cancel();
  if (sip_) sip_->close();
}

// ------------------------------------------------------------------------------ answering side

void Phone::on_sip_request(std::string message) {
  auto parsed = sip::parse_message(message);
  if (!parsed) return;
  const sip::Message& m = *parsed;
  const std::string call_id(m.value(sip::HeaderType::CallId));
  const auto user_agent = user_agent_for(shared_.options.model, result_.active_load);
  auto reply = [&](int status, std::string reason, std::string extra = {}) {
    ResponseParams p;
    p.status = status;
    p.reason = std::move(reason);
    p.user_agent = user_agent;
    p.extra_headers = std::move(extra);
    sip_->send(build_response(m, p));
  };
  auto it = incoming_.find(call_id);
  switch (m.method) {
    case sip::Method::Invite:
      if (it != incoming_.end()) {
        // A re-INVITE (session refresh, hold) in a dialog we answered: accept it unchanged.
        if (it->second.final_sent >= 200 && it->second.final_sent < 300 &&
            !sip::parse_name_addr(m.value(sip::HeaderType::To)).value_or(sip::NameAddr{}).tag().empty()) {
          ResponseParams p;
          p.contact = contact_uri();
          p.user_agent = user_agent;
          p.sdp = build_sdp("phonesim", result_.ip, 16384, 1);
          sip_->send(build_response(m, p));
        }
        return;  // else a repeated INVITE: the first one is being answered
      }
      on_invite(m, std::move(message));
      return;
    case sip::Method::Ack:
      // The ACK of our 2xx confirms the call; an ACK of a failure response is absorbed.
      if (it == incoming_.end()) return;
      if (it->second.final_sent >= 200 && it->second.final_sent < 300)
        result_.calls[it->second.record].answered = true;
      else if (it->second.final_sent >= 300)
        incoming_.erase(it);  // busy or cancelled: the transaction is over
      return;
    case sip::Method::Bye:
      if (it == incoming_.end()) return reply(481, "Call/Transaction Does Not Exist");
      {
        const auto invite = sip::parse_message(it->second.invite);
        const bool from_caller =
            invite && sip::parse_name_addr(invite->value(sip::HeaderType::From)).value_or(sip::NameAddr{}).tag() ==
                          sip::parse_name_addr(m.value(sip::HeaderType::From)).value_or(sip::NameAddr{}).tag();
        result_.calls[it->second.record].ended_by = from_caller ? "caller" : "callee";
      }
      reply(200, "OK");
      incoming_.erase(it);
      return;
    case sip::Method::Cancel:
      if (it == incoming_.end()) return reply(481, "Call/Transaction Does Not Exist");
      reply(200, "OK");
      if (it->second.final_sent == 0) {
        it->second.ring->cancel();
        send_final(it->second, 487, "Request Terminated");
        result_.calls[it->second.record].ended_by = "caller";
        result_.calls[it->second.record].detail = "cancelled by the caller while ringing";
      }
      return;
    case sip::Method::Options: return reply(200, "OK", std::string(kAllow) + "Accept: application/sdp\r\n");
    case sip::Method::Notify:
      if (sip::iequals(sip::trim(m.value(sip::HeaderType::Event)), "service-control"))
        return on_service_control(m, [&](int status, std::string reason) { reply(status, std::move(reason)); });
      return reply(200, "OK");
    default: return reply(501, "Not Implemented", std::string(kAllow));
  }
}

void Phone::on_invite(const sip::Message& m, std::string message) {
  CallRecord record;
  record.direction = CallDirection::Received;
  record.peer = user_of(m.value(sip::HeaderType::From));
  record.call_id = std::string(m.value(sip::HeaderType::CallId));
  record.ringing = true;
  result_.calls.push_back(std::move(record));
  IncomingCall call;
  call.to_tag = random_hex(16);
  call.record = result_.calls.size() - 1;
  call.began = Clock::now();
  ResponseParams ringing;
  ringing.status = 180;
  ringing.reason = "Ringing";
  ringing.to_tag = call.to_tag;
  ringing.contact = contact_uri();
  ringing.record_route = true;
  ringing.user_agent = user_agent_for(shared_.options.model, result_.active_load);
  sip_->send(build_response(m, ringing));
  const std::string call_id(m.value(sip::HeaderType::CallId));
  call.invite = std::move(message);  // `m` points into it: not used from here on
  call.ring = std::make_shared<asio::steady_timer>(shared_.io);
  auto ring = call.ring;
  incoming_[call_id] = std::move(call);
  asio::co_spawn(shared_.io, answer_later(call_id, std::move(ring)), asio::detached);
}

asio::awaitable<void> Phone::answer_later(std::string call_id, std::shared_ptr<asio::steady_timer> ring) {
  ring->expires_after(shared_.options.answer_after);
  error_code ec;
  co_await ring->async_wait(token(ec));
  if (ec) co_return;  // cancelled, or the run is over
  auto it = incoming_.find(call_id);
  if (it == incoming_.end() || it->second.final_sent != 0) co_return;  // cancelled meanwhile
  if (shared_.options.busy)
    send_final(it->second, 486, "Busy Here");
  else
    send_final(it->second, 200, "OK");
}

void Phone::send_final(IncomingCall& call, int status, std::string reason) {
  auto invite = sip::parse_message(call.invite);
  if (!invite) return;
  ResponseParams p;
  p.status = status;
  p.reason = reason;
  p.to_tag = call.to_tag;
  p.user_agent = user_agent_for(shared_.options.model, result_.active_load);
  if (status >= 200 && status < 300) {
    p.contact = contact_uri();
    p.record_route = true;
    p.extra_headers = std::string(kAllow);
    p.sdp = build_sdp("phonesim", result_.ip, static_cast<std::uint16_t>(16384 + 2 * (shared_.rng() % 8000)),
                      shared_.rng() % 1000000000);
  }
  sip_->send(build_response(*invite, p));
  call.final_sent = status;
  CallRecord& r = result_.calls[call.record];
  r.final_code = status;
  r.reason = std::move(reason);
  r.setup = since(call.began);
  if (status == 486 || status == 600 || status == 603) r.ended_by = "callee";
}

// ------------------------------------------------------------------------------- calling side

asio::awaitable<void> Phone::place_call() {
  const auto& opt = shared_.options;
  co_await pause(opt.call_after);
  CallRecord rec;
  rec.direction = CallDirection::Placed;
  rec.peer = opt.call;
  auto finish = [&](std::string detail) {
    rec.detail = std::move(detail);
    result_.calls.push_back(rec);
  };
  if (!sip_ || !sip_->is_open() || lines_.empty() || !registered_cm_) {
    finish("not connected to a call manager when the call was due");
    co_return;
  }
  LineState& line = lines_.front();
  const std::string host = ipv4_to_string(registered_cm_host_);
  const std::string request_uri = registered_cm_->sip_port == 5060
                                      ? fmt::format("sip:{}@{}", opt.call, host)
                                      : fmt::format("sip:{}@{}:{}", opt.call, host, registered_cm_->sip_port);
  RequestParams invite;
  invite.method = "INVITE";
  invite.request_uri = request_uri;
  invite.local_ip = result_.ip;
  invite.local_port = sip_->local_port();
  invite.from = fmt::format("<sip:{}@{}>;tag={}", line.name, host, random_hex(16));
  invite.to = fmt::format("<sip:{}@{}>", opt.call, host);
  invite.call_id = fmt::format("{}-{}@{}", random_hex(8), random_hex(8), result_.ip);
  invite.cseq = 1;
  rec.call_id = invite.call_id;
  invite.contact = contact_uri();
  invite.user_agent = user_agent_for(opt.model, result_.active_load);
  invite.sdp = build_sdp("phonesim", result_.ip, static_cast<std::uint16_t>(16384 + 2 * (shared_.rng() % 8000)),
                         shared_.rng() % 1000000000);
  // ACK of a failure response (RFC 3261 17.1.1.3): the INVITE's branch and CSeq, the answer's To.
  auto ack_failure = [&](const sip::Message& response) {
    RequestParams ack = invite;
    ack.method = "ACK";
    ack.to = sip::collapse_whitespace(response.value(sip::HeaderType::To));
    ack.contact.clear();
    ack.authorization.clear();
    ack.proxy_authorization.clear();
    ack.sdp.clear();
    sip_->send(build_request(ack));
  };
  const auto began = Clock::now();
  int challenges = 0;
  RequestParams in_dialog;
  for (;;) {
    invite.branch = "z9hG4bK" + random_hex(16);
    auto response =
        co_await sip_->transact(build_request(invite), invite.call_id, invite.cseq, "INVITE", opt.sip_timeout);
    if (!response) {
      rec.reason = response.error();
      finish(fmt::format("INVITE to {}: {}", opt.call, response.error()));
      co_return;
    }
    auto parsed = sip::parse_message(response->message);
    if (!parsed) {
      finish("unreadable final response");
      co_return;
    }
    const sip::Message& m = *parsed;
    for (int code : response->provisional) rec.ringing = rec.ringing || code == 180 || code == 183;
    if ((m.status == 407 || m.status == 401) && challenges == 0) {
      ack_failure(m);
      auto c = parse_digest_challenge(challenge_of(m));
      if (!c) {
        rec.final_code = m.status;
        rec.reason = std::string(m.reason);
        finish(fmt::format("{} {} with an unusable challenge: {}", m.status, m.reason, c.error()));
        co_return;
      }
      DigestInput in{line.auth_name, line.auth_password, "INVITE", request_uri, cnonce(), 1};
      (m.status == 407 ? invite.proxy_authorization : invite.authorization) = authorization_value(*c, in);
      ++invite.cseq;
      ++challenges;
      continue;
    }
    rec.final_code = m.status;
    rec.reason = std::string(m.reason);
    rec.setup = since(began);
    if (m.status >= 300) {
      ack_failure(m);
      // Busy and decline come from the called phone; 404, 480, 408 and the like from the proxy.
      if (m.status == 486 || m.status == 600 || m.status == 603) rec.ended_by = "callee";
      finish(m.status == 407 || m.status == 401
                 ? fmt::format("{} {} again after the digest answer: credentials refused", m.status, m.reason)
                 : fmt::format("{} {}", m.status, m.reason));
      co_return;
    }
    // 2xx: the dialog. ACK and BYE go along the route set to the callee's Contact (12.2.1.1).
    in_dialog = invite;
    in_dialog.route = route_set_of(m, true);
    const std::string target = contact_uri_of(m);
    in_dialog.request_uri = target.empty() ? request_uri : target;
    in_dialog.to = sip::collapse_whitespace(m.value(sip::HeaderType::To));
    in_dialog.authorization.clear();
    in_dialog.proxy_authorization.clear();
    in_dialog.sdp.clear();
    RequestParams ack = in_dialog;
    ack.method = "ACK";
    ack.branch = "z9hG4bK" + random_hex(16);
    sip_->send(build_request(ack));
    rec.answered = true;
    break;
  }
  co_await pause(opt.call_seconds);
  RequestParams bye = in_dialog;
  bye.method = "BYE";
  bye.cseq = invite.cseq + 1;
  bye.branch = "z9hG4bK" + random_hex(16);
  auto bye_response = co_await sip_->transact(build_request(bye), bye.call_id, bye.cseq, "BYE", opt.sip_timeout);
  rec.ended_by = "caller";
  if (!bye_response) {
    finish(fmt::format("BYE: {}", bye_response.error()));
    co_return;
  }
  rec.bye_code = bye_response->status;
  finish(bye_response->status == 200 ? std::string()
                                     : fmt::format("BYE answered {} {}", bye_response->status, bye_response->reason));
  co_return;
}

}  // namespace ve::phonesim::detail
