#pragma once
// Private to provision/: the state both servers share, and the two servers.
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include "provision/provision.hpp"
#include "ve/accept_guard.hpp"

namespace ve::provision {

// Counters, the recent-transfer ring and phone events. Guarded by a mutex only because tests and
// the control socket read it while the loop writes; the loop itself is single-threaded.
class Activity {
 public:
  Activity(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity);
  // Which phone asked: SEP<MAC> in the name, then what this IP asked for before, then DHCP.
  std::optional<MacAddress> identify(const std::string& ip, std::string_view filename);
  // Counts the outcome, keeps it in the recent list and reports a PhoneEvent when the phone and
  // the step are known.
  void record(TransferRecord record);
  void bump(std::uint64_t Counters::*field, std::uint64_t n = 1);
  Counters counters() const;
  std::vector<TransferRecord> recent() const;

 private:
  EventSink& events_;
  MacLookup mac_for_ip_;
  std::size_t recent_capacity_;
  mutable std::mutex mutex_;
  Counters counters_;
  std::deque<TransferRecord> recent_;
  std::map<std::string, MacAddress> learned_;  // ip -> mac, from SEP<MAC> requests
};

// What every server and session holds: outlives the Provisioner if handlers are still queued.
struct Shared {
  Shared(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity)
      : activity(events, std::move(mac_for_ip), recent_capacity) {}
  Activity activity;
  std::shared_ptr<const FileTree> tree() const {
    std::lock_guard lock(tree_mutex);
    return current_tree;
  }
  void set_tree(std::shared_ptr<const FileTree> t) {
    std::lock_guard lock(tree_mutex);
    current_tree = std::move(t);
  }
  mutable std::mutex tree_mutex;
  std::shared_ptr<const FileTree> current_tree;
};

// How a lookup failure is recorded: outcome and result word.
struct LookupOutcome {
  Outcome outcome;
  std::string result;
};
LookupOutcome outcome_of(const LookupError& e, std::optional<Step> step);

class TftpTransfer;
class HttpSession;

class TftpServer : public std::enable_shared_from_this<TftpServer> {
 public:
  TftpServer(boost::asio::io_context& io, TftpOptions options, std::shared_ptr<Shared> shared);
  Result<void, std::string> start();
  void stop();
  std::uint16_t port() const { return port_; }
  std::size_t active() const { return active_count_.load(); }
  void transfer_finished(std::uint64_t id, const boost::asio::ip::address& client);

 private:
  void receive();
  void handle(std::span<const std::byte> datagram, const boost::asio::ip::udp::endpoint& from);
  void handle_read(const tftp::Request& request, const boost::asio::ip::udp::endpoint& from);
  void reply_error(const boost::asio::ip::udp::endpoint& to, tftp::ErrorCode code, std::string_view message);
  bool warn_allowed();

  boost::asio::io_context& io_;
  TftpOptions options_;
  std::shared_ptr<Shared> shared_;
  boost::asio::ip::udp::socket socket_;
  boost::asio::ip::udp::endpoint sender_;
  std::array<std::byte, 2048> buffer_{};
  std::uint16_t port_ = 0;
  bool stopped_ = false;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::shared_ptr<TftpTransfer>> transfers_;
  std::map<boost::asio::ip::address, int> per_client_;
  std::atomic<std::size_t> active_count_{0};
  std::chrono::steady_clock::time_point last_warn_{};
};

class HttpServer : public std::enable_shared_from_this<HttpServer> {
 public:
  HttpServer(boost::asio::io_context& io, HttpOptions options, std::shared_ptr<Shared> shared);
  Result<void, std::string> start();
  void stop();
  std::uint16_t port() const { return port_; }
  std::size_t connections() const { return connections_->load(); }

 private:
  void accept();
  boost::asio::io_context& io_;
  HttpOptions options_;
  std::shared_ptr<Shared> shared_;
  boost::asio::ip::tcp::acceptor acceptor_;
  ve::AcceptGuard accept_guard_;                             // EMFILE: pause, do not spin
  ve::ConnectionLimiter<boost::asio::ip::address> limiter_;  // max_connections, max_per_client
  ve::RateLimitedLog refusal_log_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;
  std::vector<std::weak_ptr<HttpSession>> sessions_;  // to close them on stop
  // Shared with sessions so a session that outlives the server can still count itself out.
  std::shared_ptr<std::atomic<std::size_t>> connections_ = std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace ve::provision
