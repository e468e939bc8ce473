// One TCP connection from a phone's address to a call manager: one reader that dispatches every
// message (responses to the waiting transaction, requests to the phone), one queued writer.
#include <algorithm>

#include <fmt/format.h>

#include "phonesim/internal.hpp"
#include "sip/sip.hpp"

namespace ve::phonesim::detail {

using asio::ip::tcp;

asio::awaitable<std::string> SipConnection::connect(std::uint32_t host, std::uint16_t port,
                                                    std::chrono::seconds timeout) {
  close();
  error_code ec;
  socket_.emplace(ex_);
  socket_->open(tcp::v4(), ec);
  if (!ec) socket_->bind(tcp::endpoint(asio::ip::address_v4(local_ip_), 0), ec);
  if (ec) {
    close();
    co_return "cannot bind " + ipv4_to_string(local_ip_) + ": " + ec.message();
  }
  const std::uint64_t generation = generation_;
  bool timed_out = false;
  {
    Watchdog wd(ex_, timeout, [this, generation] {
      error_code ignored;
      if (socket_ && generation_ == generation) socket_->close(ignored);
    });
    co_await socket_->async_connect(tcp::endpoint(asio::ip::address_v4(host), port), token(ec));
    timed_out = wd.fired();
  }
  if (generation != generation_) co_return std::string("connection closed while connecting");
  if (ec) {
    close();
    co_return timed_out ? fmt::format("no answer in {} s", timeout.count()) : ec.message();
  }
  socket_->set_option(tcp::no_delay(true), ec);
  local_port_ = socket_->local_endpoint(ec).port();
  framer_ = sip::StreamFramer();
  asio::co_spawn(ex_, read_loop(generation_), asio::detached);
  co_return std::string();
}

void SipConnection::close() {
  ++generation_;
  if (socket_) {
    error_code ignored;
    socket_->shutdown(tcp::socket::shutdown_both, ignored);
    socket_->close(ignored);
    socket_.reset();
  }
  framer_ = sip::StreamFramer();
  outbox_.clear();
  writing_ = false;
  fail("connection closed");
}

void SipConnection::fail(const std::string& why) {
  for (Waiter* w : waiters_) {
    if (!w->outcome) w->outcome = unexpected(why);
    if (w->wake) w->wake->cancel();
  }
}

void SipConnection::send(std::string message) {
  if (!is_open()) return;
  outbox_.push_back(std::move(message));
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(ex_, write_loop(generation_), asio::detached);
  }
}

asio::awaitable<void> SipConnection::write_loop(std::uint64_t generation) {
  while (generation == generation_ && !outbox_.empty()) {
    // The message stays in the queue while being written: close() clears the queue, and the
    // generation check below keeps us from touching it afterwards.
    const std::string message = std::move(outbox_.front());
    outbox_.pop_front();
    error_code ec;
    co_await asio::async_write(*socket_, asio::buffer(message), token(ec));
    if (generation != generation_) co_return;
    if (ec) {
      fail("send: " + ec.message());
      close();
      co_return;
    }
  }
  if (generation == generation_) writing_ = false;
}

asio::awaitable<void> SipConnection::read_loop(std::uint64_t generation) {
  std::array<char, 8192> chunk{};
  for (;;) {
    // Every whole frame buffered so far, before reading more.
    for (;;) {
      auto next = framer_.next();
      if (!next) {
        fail("unreadable SIP stream: " + std::string(sip::to_string(next.error())));
        close();
        co_return;
      }
      if (!next->has_value()) break;
      const auto frame = **next;
      // A handler may close the connection (and reset the framer): copy before dispatching.
      std::string bytes = frame.kind == sip::StreamFramer::Frame::Kind::Message ? std::string(frame.bytes) : "";
      framer_.consume();
      if (!bytes.empty()) dispatch(bytes);
      if (generation != generation_) co_return;
    }
    error_code ec;
    const std::size_t n = co_await socket_->async_read_some(asio::buffer(chunk), token(ec));
    if (generation != generation_) co_return;  // closed (or reconnected) meanwhile
    if (ec) {
      fail(ec == asio::error::eof ? std::string("connection closed by the server") : "receive: " + ec.message());
      close();
      co_return;
    }
    framer_.append(std::string_view(chunk.data(), n));
  }
}

void SipConnection::dispatch(std::string_view frame) {
  auto m = sip::parse_message(frame);
  if (!m) return;  // nothing to answer a message we cannot read with (no usable Via)
  if (m->is_request) {
    if (on_request_) on_request_(std::string(frame));
    return;
  }
  const auto call_id = m->value(sip::HeaderType::CallId);
  auto cs = sip::parse_cseq(m->value(sip::HeaderType::CSeq));
  if (!cs) return;
  auto it = std::find_if(waiters_.begin(), waiters_.end(), [&](const Waiter* w) {
    return !w->outcome && w->call_id == call_id && w->cseq == cs->number && sip::iequals(w->method, cs->method);
  });
  if (it == waiters_.end()) return;  // a late or repeated response: its transaction is over
  Waiter& w = **it;
  if (m->status < 200) {
    w.provisional.push_back(m->status);
  } else {
    SipResponse r;
    r.status = m->status;
    r.reason = std::string(m->reason);
    r.www_authenticate = std::string(m->value(sip::HeaderType::WwwAuthenticate));
    for (const auto& h : m->headers) {
      if (h.type != sip::HeaderType::Contact) continue;
      for (auto v : sip::split_list(h.value)) {
        auto c = sip::parse_name_addr(v);
        if (!c) continue;
        if (const auto* e = sip::find_param(c->params, "expires"); e && r.contact_expires.empty()) {
          r.contact_expires = std::string(e->value);
        }
      }
    }
    if (r.contact_expires.empty()) r.contact_expires = std::string(m->value(sip::HeaderType::Expires));
    r.message = std::string(frame);
    r.provisional = w.provisional;
    w.outcome = std::move(r);
  }
  if (w.wake) w.wake->cancel();
}

asio::awaitable<Result<SipResponse, std::string>> SipConnection::transact(std::string request, std::string call_id,
                                                                          std::uint32_t cseq, std::string method,
                                                                          std::chrono::seconds timeout) {
  if (!is_open()) co_return unexpected(std::string("not connected"));
  asio::steady_timer wake(ex_);
  Waiter w;
  w.call_id = std::move(call_id);
  w.cseq = cseq;
  w.method = std::move(method);
  w.wake = &wake;
  waiters_.push_back(&w);
  send(std::move(request));
  auto deadline = Clock::now() + timeout;
  std::size_t provisional_seen = 0;
  while (!w.outcome) {
    if (w.provisional.size() != provisional_seen) {
      provisional_seen = w.provisional.size();
      deadline = std::max(deadline, Clock::now() + kProceedingLimit);
    }
    if (Clock::now() >= deadline) {
      w.outcome = unexpected(provisional_seen > 0 ? fmt::format("no final response in {} s after {}",
                                                                kProceedingLimit.count(), w.provisional.back())
                                                  : fmt::format("no response in {} s", timeout.count()));
      break;
    }
    error_code ec;
    wake.expires_at(deadline);
    co_await wake.async_wait(token(ec));
  }
  std::erase(waiters_, &w);
  co_return std::move(*w.outcome);
}

}  // namespace ve::phonesim::detail
