// TCP: connections are kept (phones register and keep-alive over one), framed by Content-Length,
// limited per source address and in total, and closed when idle.
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "sip/transport.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;
using asio::ip::tcp;

Result<void, std::string> TcpListener::open(const tcp::endpoint& at) {
  boost::system::error_code ec;
  acceptor_.open(at.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(at, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unexpected(fmt::format("tcp {}:{}: {}", at.address().to_string(), at.port(), ec.message()));
  local_ = acceptor_.local_endpoint(ec);
  accept_guard_.set_what(fmt::format("tcp {}:{}", at.address().to_string(), local_.port()));
  return {};
}

void TcpListener::close() {
  closed_ = true;
  accept_guard_.cancel();
  boost::system::error_code ec;
  acceptor_.close(ec);
  auto sessions = sessions_;
  for (auto& [id, weak] : sessions) {
    if (auto s = weak.lock()) s->close();
  }
}

void TcpListener::do_accept() {
  acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void TcpListener::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || closed_) return;
  if (ec) {
    // EMFILE and friends: pause accepting (rate-limited log line), then go on by itself.
    accept_guard_.failed(ec, [self = shared_from_this()] {
      if (!self->closed_) self->do_accept();
    });
    return;
  }
  accept_guard_.succeeded();
  boost::system::error_code peer_ec;
  const auto peer = socket.remote_endpoint(peer_ec);
  if (peer_ec) {
    do_accept();
    return;
  }
  auto& counters = core_->registrar.counters();
  const auto known = per_source_.find(peer.address());
  const std::size_t from_peer = known == per_source_.end() ? 0 : known->second;
  if (sessions_.size() >= core_->options.tcp_max_connections || from_peer >= core_->options.tcp_max_per_source) {
    ++counters.tcp_rejected;
    refusal_log_.warn("sip", "tcp connection from {} refused: {} open from it, {} in total", peer.address().to_string(),
                      from_peer, sessions_.size());
    boost::system::error_code close_ec;
    socket.close(close_ec);
    do_accept();
    return;
  }
  ++counters.tcp_accepted;
  adopt(std::move(socket));
  do_accept();
}

void TcpListener::adopt(tcp::socket socket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) return;
  ++per_source_[peer.address()];
  const auto id = next_id_++;
  auto session = std::make_shared<TcpSession>(std::move(socket), shared_from_this(), core_, id);
  sessions_[id] = session;
  by_peer_[fmt::format("{}:{}", session->source().ip, session->source().port)] = session;
  session->start();
}

void TcpListener::send(const Destination& to, const std::string& bytes) {
  auto open_flow = [&](const std::string& ip, std::uint16_t port) -> std::shared_ptr<TcpSession> {
    auto it = by_peer_.find(fmt::format("{}:{}", ip, port));
    return it == by_peer_.end() ? nullptr : it->second.lock();
  };
  if (auto s = open_flow(to.ip, to.port)) {
    s->send(bytes);
    return;
  }
  const std::string& ip = to.contact_ip.empty() ? to.ip : to.contact_ip;
  const std::uint16_t port = to.contact_ip.empty() ? to.port : to.contact_port;
  if (auto s = open_flow(ip, port)) {
    s->send(bytes);
    return;
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(ip, ec);
  if (ec || port == 0) {
    ve::logger("sip")->debug("tcp send to {}:{}: no flow and no address to connect to", ip, port);
    return;
  }
  connect(tcp::endpoint(address, port), bytes);
}

// The flow is gone: a new connection to the phone's Contact, adopted like an accepted one.
void TcpListener::connect(const tcp::endpoint& to, const std::string& bytes) {
  if (closed_) return;
  const std::string key = fmt::format("{}:{}", to.address().to_string(), to.port());
  if (auto it = connecting_.find(key); it != connecting_.end()) {
    if (it->second.size() < TcpSession::kMaxQueuedWrites) it->second.push_back(bytes);
    return;
  }
  if (sessions_.size() >= core_->options.tcp_max_connections) return;
  connecting_[key].push_back(bytes);
  auto socket = std::make_shared<tcp::socket>(io_);
  socket->async_connect(to, [self = shared_from_this(), socket, key](const boost::system::error_code& ec) {
    auto queued = std::move(self->connecting_[key]);
    self->connecting_.erase(key);
    if (self->closed_) return;
    if (ec) {
      ve::logger("sip")->info("tcp connect to {}: {}", key, ec.message());
      return;
    }
    boost::system::error_code peer_ec;
    socket->remote_endpoint(peer_ec);
    if (peer_ec) return;
    ++self->core_->registrar.counters().tcp_accepted;
    self->adopt(std::move(*socket));
    if (auto it = self->by_peer_.find(key); it != self->by_peer_.end()) {
      if (auto s = it->second.lock()) {
        for (auto& b : queued) s->send(std::move(b));
      }
    }
  });
}

void TcpListener::session_closed(std::uint64_t id, const asio::ip::address& peer) {
  if (auto it = sessions_.find(id); it != sessions_.end()) {
    if (auto s = it->second.lock()) by_peer_.erase(fmt::format("{}:{}", s->source().ip, s->source().port));
  }
  sessions_.erase(id);
  auto it = per_source_.find(peer);
  if (it != per_source_.end() && --it->second == 0) per_source_.erase(it);
}

TcpSession::TcpSession(tcp::socket socket, std::shared_ptr<TcpListener> listener, std::shared_ptr<Core> core,
                       std::uint64_t id)
    : socket_(std::move(socket)),
      idle_timer_(socket_.get_executor()),
      listener_(std::move(listener)),
      core_(std::move(core)),
      id_(id),
      framer_(core_->options.limits) {
  boost::system::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  const auto local = socket_.local_endpoint(ec);
  peer_ = remote.address();
  source_.transport = Transport::Tcp;
  source_.ip = remote.address().to_string();
  source_.port = remote.port();
  source_.connection = id;
  source_.local = fmt::format("{}:{}", local.address().to_string(), local.port());
}

void TcpSession::start() {
  ve::logger("sip")->debug("tcp connection {} from {}:{}", id_, source_.ip, source_.port);
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);  // read_some after readiness must not block on a spurious wake-up
  arm_idle_timer();
  do_read();
}

void TcpSession::arm_idle_timer() {
  idle_timer_.expires_after(core_->options.tcp_idle_timeout);
  idle_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || self->closed_) return;
    ++self->core_->registrar.counters().tcp_idle_closed;
    ve::logger("sip")->debug("tcp connection {} from {}:{} idle: closed", self->id_, self->source_.ip,
                             self->source_.port);
    self->close();
  });
}

void TcpSession::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  idle_timer_.cancel();
  listener_->session_closed(id_, peer_);
  core_->registrar.connection_closed(id_);
}

void TcpSession::do_read() {
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) { self->on_readable(ec); });
}

void TcpSession::on_readable(const boost::system::error_code& ec) {
  if (closed_) return;
  if (ec) return on_read(ec, {});
  const auto scratch = listener_->read_scratch();
  boost::system::error_code read_ec;
  const std::size_t n = socket_.read_some(asio::buffer(scratch.data(), scratch.size()), read_ec);
  if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) return do_read();
  on_read(read_ec, std::string_view(scratch.data(), n));
}

void TcpSession::on_read(const boost::system::error_code& ec, std::string_view data) {
  if (closed_) return;
  if (ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
      ve::logger("sip")->debug("tcp connection {} read: {}", id_, ec.message());
    }
    close();
    return;
  }
  framer_.append(data);
  while (true) {
    auto frame = framer_.next();
    if (!frame) {
      // The stream cannot be resynchronised after a framing error. Conflicting Content-Length
      // headers still leave a readable request: answer it 400, then close (RFC 4475 3.3.9).
      ve::logger("sip")->warn("tcp connection {} from {}:{}: {}, closing", id_, source_.ip, source_.port,
                              to_string(frame.error()));
      Reply reply;
      if (frame.error() == StreamFramer::Error::BadContentLength) {
        reply = core_->registrar.handle(framer_.data(), source_);
      } else {
        ++core_->registrar.counters().malformed_dropped;
      }
      if (reply.bytes.empty()) {
        close();
      } else {
        close_after_write_ = true;
        queue_write(std::move(reply.bytes));
      }
      return;
    }
    if (!*frame) break;
    if ((*frame)->kind == StreamFramer::Frame::Kind::Ping) {
      queue_write("\r\n");  // RFC 5626 pong
    } else {
      Reply reply = core_->handle((*frame)->bytes, source_);
      if (!reply.bytes.empty()) queue_write(std::move(reply.bytes));
    }
    framer_.consume();
    if (closed_) return;
  }
  arm_idle_timer();
  do_read();
}

void TcpSession::queue_write(std::string bytes) {
  if (writes_.size() >= kMaxQueuedWrites) {
    // A peer that sends but does not read: stop serving it rather than buffer without bound.
    ve::logger("sip")->warn("tcp connection {} from {}:{} not reading its responses, closing", id_, source_.ip,
                            source_.port);
    close();
    return;
  }
  writes_.push_back(std::move(bytes));
  if (!writing_) do_write();
}

void TcpSession::do_write() {
  writing_ = true;
  asio::async_write(socket_, asio::buffer(writes_.front()),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->writes_.pop_front();
                      if (!self->writes_.empty())
                        self->do_write();
                      else if (self->close_after_write_)
                        self->close();
                    });
}

}  // namespace ve::sip
