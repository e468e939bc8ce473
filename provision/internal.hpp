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
#include <boost/asio/steady_timer.hpp>

#include "provision/provision.hpp"
#include "ve/accept_guard.hpp"

namespace ve::provision {

// Who is asking, from evidence a host on the VLAN cannot forge by naming a file: the DHCP lease
// of its address, or a phone's static `ip:` binding in the site file.
struct Requester {
  std::optional<MacAddress> lease_mac;
  const config::Phone* bound = nullptr;  // the site's phone whose `ip:` this address is
  // The verified MAC (lease first), if any.
  std::optional<MacAddress> mac() const {
    if (lease_mac) return lease_mac;
    if (bound != nullptr) return bound->mac;
    return std::nullopt;
  }
  // One of the site's phones: may use the reserved TFTP slots.
  bool is_site_phone(const config::SiteConfig& site) const {
    return bound != nullptr || (lease_mac && site.find_phone(*lease_mac) != nullptr);
  }
};

// What to do with a request under provisioning.config_access.
enum class Gate {
  Open,    // not a phone's config, or the phone itself asks, or the site is `open`
  Wait,    // a phone's config from an address with no lease yet: ask again until lease_wait ends
  Refuse,  // a phone's config from an address that belongs to someone else: answer "not found"
};

// Counters, the recent-transfer ring and phone events. Guarded by a mutex: besides the io_context
// thread, the TFTP worker threads count into it (bump() from a running transfer, tftp_server.cpp).
class Activity {
 public:
  Activity(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity);
  Requester requester(const config::SiteConfig& site, const std::string& ip) const;
  static Gate gate(const config::SiteConfig& site, const Requester& who, std::string_view filename);
  // Which phone asked, for the record: the verified MAC; on an `open` site without a lease, the
  // site's phone named in the file (SEP<MAC>), then what this IP asked for before.
  std::optional<MacAddress> identify(const config::SiteConfig& site, const Requester& who, const std::string& ip,
                                     std::string_view filename);
  // A phone's config refused to `ip`: counted, logged (rate-limited) and, for a phone of the
  // site, noted in its history without touching its steps or facts (at most one notice per
  // phone per 10 s; the rest are counted in the next).
  void config_refused(const config::SiteConfig& site, Protocol protocol, const MacAddress& owner, const std::string& ip,
                      const Requester& who, std::string_view file);
  // Counts the outcome, keeps it in the recent list and reports a PhoneEvent when the phone and
  // the step are known.
  void record(TransferRecord record);
  void bump(std::uint64_t Counters::*field, std::uint64_t n = 1);
  Counters counters() const;
  std::vector<TransferRecord> recent() const;

 private:
  struct Notice {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t suppressed = 0;
  };
  EventSink& events_;
  MacLookup mac_for_ip_;
  std::size_t recent_capacity_;
  mutable std::mutex mutex_;
  Counters counters_;
  std::deque<TransferRecord> recent_;
  std::map<std::string, MacAddress> learned_;  // ip -> mac, from SEP<MAC> requests (open sites only)
  std::map<MacAddress, Notice> notices_;       // refusal notices per phone of the site
  std::chrono::steady_clock::time_point last_refusal_log_{};
  std::uint64_t refusals_unlogged_ = 0;
};

// Netascii copies: converted once per file version and shared by every transfer that asks for
// it while any holds it; their total size stays within a budget.
class NetasciiCache {
 public:
  explicit NetasciiCache(std::size_t budget) : budget_(budget) {}
  // nullptr when a new copy would exceed the budget (the request is answered "Server busy").
  Bytes get(const Bytes& source, Activity& activity);
  std::size_t live_bytes() const { return live_->load(); }

 private:
  struct Entry {
    std::weak_ptr<const std::vector<std::byte>> source;
    std::weak_ptr<const std::vector<std::byte>> converted;
  };
  std::size_t budget_;
  std::map<const void*, Entry> entries_;
  std::shared_ptr<std::atomic<std::size_t>> live_ = std::make_shared<std::atomic<std::size_t>>(0);
};

// What every server and session holds: outlives the Provisioner if handlers are still queued.
struct Shared {
  Shared(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity, std::size_t netascii_budget,
         std::chrono::milliseconds wait)
      : activity(events, std::move(mac_for_ip), recent_capacity), netascii(netascii_budget), lease_wait(wait) {}
  Activity activity;
  NetasciiCache netascii;
  std::chrono::milliseconds lease_wait;
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

class TftpWorker;
class HttpSession;

class TftpServer : public std::enable_shared_from_this<TftpServer> {
 public:
  TftpServer(boost::asio::io_context& io, TftpOptions options, std::shared_ptr<Shared> shared);
  ~TftpServer();
  TftpServer(const TftpServer&) = delete;
  TftpServer& operator=(const TftpServer&) = delete;
  Result<void, std::string> start();
  void stop();
  std::uint16_t port() const { return port_; }
  std::size_t active() const { return active_count_.load(); }
  void transfer_finished(std::uint64_t id, const boost::asio::ip::address& client);

 private:
  // A read request for a phone's config waiting for its address's lease to become known.
  struct Parked {
    tftp::Request request;
    boost::asio::ip::udp::endpoint from;
    std::chrono::steady_clock::time_point until;
  };
  static constexpr std::size_t kMaxParked = 1024;

  void receive();
  void handle(std::span<const std::byte> datagram, const boost::asio::ip::udp::endpoint& from);
  void handle_read(const tftp::Request& request, const boost::asio::ip::udp::endpoint& from);
  void serve_read(const tftp::Request& request, const boost::asio::ip::udp::endpoint& from, bool refuse_config);
  void park(const tftp::Request& request, const boost::asio::ip::udp::endpoint& from);
  void check_parked();
  void arm_park_timer();
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
  // Transfers run on the workers; the io_context thread keeps only what the limits need.
  std::vector<std::unique_ptr<TftpWorker>> workers_;
  std::unordered_map<std::uint64_t, boost::asio::ip::address> transfers_;
  std::map<boost::asio::ip::address, int> per_client_;
  std::atomic<std::size_t> active_count_{0};
  std::chrono::steady_clock::time_point last_warn_{};
  std::vector<Parked> parked_;
  boost::asio::steady_timer park_timer_;
  bool park_timer_armed_ = false;
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
