// One TCP connection from a phone's address to a call manager, and REGISTER transactions on it.
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
  bool timed_out = false;
  {
    Watchdog wd(ex_, timeout, [this] {
      error_code ignored;
      if (socket_) socket_->close(ignored);
    });
    co_await socket_->async_connect(tcp::endpoint(asio::ip::address_v4(host), port), token(ec));
    timed_out = wd.fired();
  }
  if (ec) {
    close();
    co_return timed_out ? fmt::format("no answer in {} s", timeout.count()) : ec.message();
  }
  socket_->set_option(tcp::no_delay(true), ec);
  local_port_ = socket_->local_endpoint(ec).port();
  framer_ = sip::StreamFramer();
  co_return std::string();
}

void SipConnection::close() {
  if (socket_) {
    error_code ignored;
    socket_->shutdown(tcp::socket::shutdown_both, ignored);
    socket_->close(ignored);
    socket_.reset();
  }
  framer_ = sip::StreamFramer();
}

asio::awaitable<Result<SipResponse, std::string>> SipConnection::transact(std::string request, std::string call_id,
                                                                          std::uint32_t cseq,
                                                                          std::chrono::seconds timeout) {
  if (!is_open()) co_return unexpected(std::string("not connected"));
  error_code ec;
  co_await asio::async_write(*socket_, asio::buffer(request), token(ec));
  if (ec) {
    close();
    co_return unexpected("send: " + ec.message());
  }
  const auto deadline = Clock::now() + timeout;
  sip::StreamFramer& framer = framer_;
  std::array<char, 8192> chunk{};
  for (;;) {
    auto next = framer.next();
    if (!next) {
      close();
      co_return unexpected("unreadable SIP stream: " + std::string(sip::to_string(next.error())));
    }
    if (next->has_value()) {
      const auto frame = **next;
      if (frame.kind == sip::StreamFramer::Frame::Kind::Message) {
        auto m = sip::parse_message(frame.bytes);
        // Requests from the server (NOTIFY, OPTIONS) and other transactions' responses are not
        // what we wait for; a phone would answer them, the simulator only registers.
        if (m && !m->is_request && m->value(sip::HeaderType::CallId) == call_id) {
          auto cs = sip::parse_cseq(m->value(sip::HeaderType::CSeq));
          if (cs && cs->number == cseq && m->status >= 200) {
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
            framer.consume();
            co_return r;
          }
        }
      }
      framer.consume();
      continue;
    }
    const auto now = Clock::now();
    if (now >= deadline) co_return unexpected(fmt::format("no response in {} s", timeout.count()));
    std::size_t n = 0;
    bool timed_out = false;
    {
      Watchdog wd(ex_, deadline - now, [this] {
        error_code ignored;
        if (socket_) socket_->cancel(ignored);
      });
      n = co_await socket_->async_read_some(asio::buffer(chunk), token(ec));
      timed_out = wd.fired();
    }
    if (ec) {
      if (timed_out) co_return unexpected(fmt::format("no response in {} s", timeout.count()));
      close();
      co_return unexpected(ec == asio::error::eof ? std::string("connection closed by the server")
                                                  : "receive: " + ec.message());
    }
    framer.append(std::string_view(chunk.data(), n));
  }
}

}  // namespace ve::phonesim::detail
