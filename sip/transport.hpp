#pragma once
// The socket edge of the registrar: one UDP socket or one TCP listener per sip.listen entry.
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sip/location_store.hpp"
#include "ve/accept_guard.hpp"
#include "sip/registrar.hpp"

namespace ve::sip {

// What the transports share: the store and the registrar over it. Handlers hold it by
// shared_ptr so a late completion never touches freed state.
struct Core {
  Core(config::SiteConfigPtr config, EventSink& events, ServerOptions opts)
      : options(opts), registrar(std::move(config), store, events, opts) {}
  ServerOptions options;
  LocationStore store;
  Registrar registrar;
};

class UdpTransport : public std::enable_shared_from_this<UdpTransport> {
 public:
  UdpTransport(boost::asio::io_context& io, std::shared_ptr<Core> core) : socket_(io), core_(std::move(core)) {}
  Result<void, std::string> open(const boost::asio::ip::udp::endpoint& at);
  void start() { do_receive(); }
  void close();
  std::uint16_t port() const { return local_.port(); }

 private:
  void do_receive();
  void on_receive(const boost::system::error_code& ec, std::size_t n);

  boost::asio::ip::udp::socket socket_;
  std::shared_ptr<Core> core_;
  boost::asio::ip::udp::endpoint local_;
  boost::asio::ip::udp::endpoint remote_;
  std::string local_text_;
  std::array<char, 65536> buffer_{};
};

class TcpSession;

class TcpListener : public std::enable_shared_from_this<TcpListener> {
 public:
  TcpListener(boost::asio::io_context& io, std::shared_ptr<Core> core)
      : io_(io), acceptor_(io), core_(std::move(core)), accept_guard_(io.get_executor(), "sip", "tcp") {}
  Result<void, std::string> open(const boost::asio::ip::tcp::endpoint& at);
  void start() { do_accept(); }
  void close();
  std::uint16_t port() const { return local_.port(); }
  std::size_t connections() const { return sessions_.size(); }

 private:
  friend class TcpSession;
  void do_accept();
  void on_accept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket);
  void session_closed(std::uint64_t id, const boost::asio::ip::address& peer);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Core> core_;
  boost::asio::ip::tcp::endpoint local_;
  std::map<boost::asio::ip::address, std::size_t> per_source_;
  std::map<std::uint64_t, std::weak_ptr<TcpSession>> sessions_;
  std::uint64_t next_id_ = 1;
  ve::AcceptGuard accept_guard_;  // EMFILE: pause, do not spin
  ve::RateLimitedLog refusal_log_;
  bool closed_ = false;
};

// One phone's TCP connection: read, frame by Content-Length, answer in order, idle timeout.
class TcpSession : public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(boost::asio::ip::tcp::socket socket, std::shared_ptr<TcpListener> listener, std::shared_ptr<Core> core,
             std::uint64_t id);
  void start();
  void close();

 private:
  void do_read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void queue_write(std::string bytes);
  void do_write();
  void arm_idle_timer();

  static constexpr std::size_t kMaxQueuedWrites = 64;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer idle_timer_;
  std::shared_ptr<TcpListener> listener_;
  std::shared_ptr<Core> core_;
  std::uint64_t id_;
  Source source_;
  boost::asio::ip::address peer_;
  StreamFramer framer_;
  std::array<char, 16384> read_buffer_{};
  std::deque<std::string> writes_;
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace ve::sip
