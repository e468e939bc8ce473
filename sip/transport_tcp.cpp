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
  auto& from_peer = per_source_[peer.address()];
  if (sessions_.size() >= core_->options.tcp_max_connections || from_peer >= core_->options.tcp_max_per_source) {
    ++counters.tcp_rejected;
    refusal_log_.warn("sip", "tcp connection from {} refused: {} open from it, {} in total", peer.address().to_string(),
                      from_peer, sessions_.size());
    if (from_peer == 0) per_source_.erase(peer.address());
    boost::system::error_code close_ec;
    socket.close(close_ec);
    do_accept();
    return;
  }
  ++from_peer;
  ++counters.tcp_accepted;
  const auto id = next_id_++;
  auto session = std::make_shared<TcpSession>(std::move(socket), shared_from_this(), core_, id);
  sessions_[id] = session;
  session->start();
  do_accept();
}

void TcpListener::session_closed(std::uint64_t id, const asio::ip::address& peer) {
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
  socket_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_read(ec, n); });
}

void TcpSession::on_read(const boost::system::error_code& ec, std::size_t n) {
  if (closed_) return;
  if (ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
      ve::logger("sip")->debug("tcp connection {} read: {}", id_, ec.message());
    }
    close();
    return;
  }
  framer_.append(std::string_view(read_buffer_.data(), n));
  while (true) {
    auto frame = framer_.next();
    if (!frame) {
      // The stream cannot be resynchronised after a framing error.
      ++core_->registrar.counters().malformed_dropped;
      ve::logger("sip")->warn("tcp connection {} from {}:{}: {}, closing", id_, source_.ip, source_.port,
                              to_string(frame.error()));
      close();
      return;
    }
    if (!*frame) break;
    if ((*frame)->kind == StreamFramer::Frame::Kind::Ping) {
      queue_write("\r\n");  // RFC 5626 pong
    } else {
      Reply reply = core_->registrar.handle((*frame)->bytes, source_);
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
                      if (!self->writes_.empty()) self->do_write();
                    });
}

}  // namespace ve::sip
