#pragma once
// The socket edge of the registrar: one UDP socket or one TCP listener per sip.listen entry.
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sip/call_records.hpp"
#include "sip/location_store.hpp"
#include "ve/accept_guard.hpp"
#include "sip/proxy.hpp"
#include "sip/registrar.hpp"
#include "sip/uac.hpp"
#include "sip/phone_control.hpp"
#include "sip/upstream.hpp"
#include "sip/upstream_prober.hpp"

namespace ve::sip {

class UdpTransport;
class TcpListener;

// What the transports share: the store, the registrar and the proxy over it; the proxy sends
// through the Core (it is the proxy's Wire). Handlers hold it by shared_ptr so a late completion
// never touches freed state.
struct Core final : Wire {
  Core(boost::asio::io_context& io, const config::SiteConfigPtr& config, EventSink& events, ServerOptions opts)
      : options(opts),
        registrar(config, store, events, opts),
        proxy(io, config, store, events, opts, *this, registrar.authenticator()),
        uac(io, *this, opts),
        upstream(config->sip, std::chrono::system_clock::now()),
        prober(std::make_shared<UpstreamProber>(io, upstream, *this, opts.t1)) {
    registrar.set_upstream(&upstream);
    proxy.set_upstream(&upstream, &flow_tokens);
  }
  // One received message: to the proxy (calls, responses) or the registrar. Returns the
  // registrar's reply for the transport to send; the proxy sends its own.
  Reply handle(std::string_view bytes, const Source& src);
  void send(const Destination& to, const std::string& bytes) override;
  std::string local_address(Transport t, const std::string& peer_ip) const override;
  bool is_local(std::string_view host, std::uint16_t port) const override;
  // A service-control NOTIFY to a registered phone (sip/phone_control.cpp).
  Result<ServiceControlSent, std::string> service_control(const ServiceControlRequest& req,
                                                          std::function<void(const ServiceControlResult&)> done);

  ServerOptions options;
  LocationStore store;
  Registrar registrar;
  Proxy proxy;
  ClientTransactions uac;  // requests the box originates (phone control)
  CallRecords records;
  // SRST (sip.upstream): probe state and mode, the prober, the key of the Path flow tokens.
  UpstreamMonitor upstream;
  FlowTokens flow_tokens;
  std::shared_ptr<UpstreamProber> prober;
  std::vector<std::weak_ptr<UdpTransport>> udp;
  std::vector<std::weak_ptr<TcpListener>> tcp;
};

class UdpTransport : public std::enable_shared_from_this<UdpTransport> {
 public:
  UdpTransport(boost::asio::io_context& io, std::shared_ptr<Core> core);
  ~UdpTransport();
  Result<void, std::string> open(const boost::asio::ip::udp::endpoint& at);
  void start() { do_receive(); }
  void close();
  std::uint16_t port() const { return local_.port(); }
  const boost::asio::ip::udp::endpoint& local() const { return local_; }
  void send_to(const boost::asio::ip::udp::endpoint& to, const std::string& bytes);

 private:
  // Datagrams per recvmmsg / sendmmsg: one wake-up reads a batch, answers it, then sends every
  // answer in one call (one system call and one wake-up of the peers per batch, not per message).
  static constexpr std::size_t kBatch = 16;
  static constexpr std::size_t kSlotBytes = 65536;  // above 64 KiB is not SIP over UDP
  struct Batch;  // the recvmmsg / sendmmsg headers, addresses and IP_PKTINFO of one batch

  void do_receive();
  void on_readable(const boost::system::error_code& ec);
  // One batch with recvmmsg (for IP_PKTINFO); the number of datagrams read, 0 when none.
  std::size_t receive_batch();
  void handle_slot(std::size_t i, std::size_t n);
  // Sends the answers queued by the batch (and before any other send, to keep their order).
  void flush_replies();
  // Our address a datagram arrived on, as "ip:port" (the last one is kept: almost always the same).
  const std::string& local_text_for(const std::optional<boost::asio::ip::address>& a);

  boost::asio::ip::udp::socket socket_;
  std::shared_ptr<Core> core_;
  boost::asio::ip::udp::endpoint local_;
  std::string local_text_;
  boost::asio::ip::address last_local_;
  std::string last_local_text_;
  // kBatch slots of kSlotBytes, left uninitialised: only what the kernel writes is touched.
  std::unique_ptr<char[]> buffers_ = std::make_unique_for_overwrite<char[]>(kBatch * kSlotBytes);
  std::unique_ptr<Batch> batch_;
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
  // One read buffer for all of this listener's connections: a session waits for readability and
  // reads into it at once (all on the io_context's thread), so an idle phone's connection costs no
  // buffer (16 KiB each was 16 MiB of RSS at 1000 phones over TCP).
  std::span<char> read_scratch() { return read_scratch_; }
  std::size_t connections() const { return sessions_.size(); }
  const boost::asio::ip::tcp::endpoint& local() const { return local_; }
  // Over the phone's own connection (its flow) when it is open, else over a new connection to
  // its Contact (RFC 5626 style flow reuse).
  void send(const Destination& to, const std::string& bytes);

 private:
  friend class TcpSession;
  void connect(const boost::asio::ip::tcp::endpoint& to, const std::string& bytes);
  void adopt(boost::asio::ip::tcp::socket socket);
  void do_accept();
  void on_accept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket);
  void session_closed(std::uint64_t id, const boost::asio::ip::address& peer);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Core> core_;
  boost::asio::ip::tcp::endpoint local_;
  std::map<boost::asio::ip::address, std::size_t> per_source_;
  std::map<std::uint64_t, std::weak_ptr<TcpSession>> sessions_;
  std::map<std::string, std::weak_ptr<TcpSession>> by_peer_;    // "ip:port" of the phone's end
  std::map<std::string, std::vector<std::string>> connecting_;  // outbound connects under way
  std::uint64_t next_id_ = 1;
  std::vector<char> read_scratch_ = std::vector<char>(16384);
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
  static constexpr std::size_t kMaxQueuedWrites = 64;
  void send(std::string bytes) { queue_write(std::move(bytes)); }
  const Source& source() const { return source_; }

 private:
  void do_read();
  void on_readable(const boost::system::error_code& ec);
  void on_read(const boost::system::error_code& ec, std::string_view data);
  void queue_write(std::string bytes);
  void do_write();
  void arm_idle_timer();

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer idle_timer_;
  std::shared_ptr<TcpListener> listener_;
  std::shared_ptr<Core> core_;
  std::uint64_t id_;
  Source source_;
  boost::asio::ip::address peer_;
  StreamFramer framer_;
  std::deque<std::string> writes_;
  bool writing_ = false;
  bool closed_ = false;
  bool close_after_write_ = false;  // the stream is lost: answer what was read, then close
};

}  // namespace ve::sip
