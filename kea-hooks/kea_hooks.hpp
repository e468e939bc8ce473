#pragma once
// The Kea hooks library's own part of the DHCP side (libdhcp_voiceedge.so runs inside kea-dhcp4):
// the lease-report sender. The vocabulary it speaks with the daemon (phone matcher, option
// builder, lease-report codec) is dhcp/'s pure ve_dhcp_codec (dhcp/codec.hpp).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "dhcp/codec.hpp"

namespace ve::kea_hooks {

// Sends lease reports to the daemon's unix datagram socket without ever making Kea wait. The first
// `direct_per_window` reports of each `coalesce` window go out at once from Kea's own thread (one
// non-blocking send each, no hand-off: a hand-off cost Kea about 5 futex calls per report, the
// wake of the sender, its timed wait and the mutex hand-over; bench/dhcp MODE=instructions), so a
// phone's OFFER and ACK at a normal pace cost one syscall each. Beyond that, in a storm, reports
// are queued (bounded) and a sender thread sends them as one batch, back to back over the
// connected socket, when the window ends, so the daemon (and the sender) wake once per window,
// not per report: each cross-process wake-up costs the sending Kea thread tens of
// microseconds on a busy box (bench/dhcp MODE=cpu). A daemon that is briefly behind (a boot storm
// fills its 10-datagram queue, net.unix.max_dgram_qlen) costs no report: a direct send that
// meets a full queue is queued, and the sender waits for room (poll POLLOUT on the connected
// socket), in order. Reports are dropped, counted and passed to on_drop only when nobody is bound
// at the path, when the daemon does not read for stall_timeout, or when the queue is at
// queue_limit. Thread-safe.
class LeaseReporter {
 public:
  struct Options {
    std::size_t queue_limit = 16384;                // reports waiting for the sender
    std::chrono::milliseconds stall_timeout{1000};  // a daemon that reads nothing this long
    // Reports within this long of the last send are collected and sent back to back (one
    // wake-up of the daemon per window, not per report); 0: every report is sent at once.
    std::chrono::milliseconds coalesce{10};
    // Reports per window sent at once by the caller's thread (while nothing is queued).
    int direct_per_window = 4;
  };
  // Called on the sender thread for every dropped report (the hook logs it).
  using DropHandler = std::function<void(const dhcp::LeaseReport&, const char* why)>;

  explicit LeaseReporter(std::string socket_path) : LeaseReporter(std::move(socket_path), Options{}) {}
  LeaseReporter(std::string socket_path, Options options, DropHandler on_drop = {});
  // Delivers what is queued (each batch bounded by stall_timeout), then stops the sender.
  ~LeaseReporter();
  LeaseReporter(const LeaseReporter&) = delete;
  LeaseReporter& operator=(const LeaseReporter&) = delete;

  // False (and one drop) if the queue is full; otherwise queued for the sender. Never blocks on
  // the daemon, never throws.
  bool send(const dhcp::LeaseReport& report) noexcept;
  // Waits until every report queued before the call was delivered or dropped, at most `limit`.
  bool flush(std::chrono::milliseconds limit);

  std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  const std::string& path() const { return path_; }

 private:
  enum class Delivery { Sent, Dropped, NoDaemon, Stalled };
  void run();
  Delivery deliver(const dhcp::LeaseReport& report, std::chrono::steady_clock::time_point& stall_until);
  bool try_connect();
  bool send_now(const dhcp::LeaseReport& report);
  void drop(const dhcp::LeaseReport& report, const char* why);

  std::string path_;
  Options options_;
  DropHandler on_drop_;
  int fd_ = -1;                         // created once, closed in the destructor only
  std::atomic<bool> connected_{false};  // false: Kea's threads queue, the sender reconnects
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> dropped_{0};
  // steady_clock ticks of the last datagram sent, by Kea's threads or the sender.
  std::atomic<std::chrono::steady_clock::rep> last_send_{0};
  // The current window of direct sends: its start (steady_clock ticks) and the sends in it. Kea's
  // threads race on these only to the effect of a send more or less in a window.
  std::atomic<std::chrono::steady_clock::rep> window_start_{0};
  std::atomic<int> window_sends_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<dhcp::LeaseReport> queue_;  // guarded by mutex_
  std::uint64_t queued_total_ = 0;       // guarded by mutex_: reports ever queued
  std::uint64_t done_total_ = 0;         // guarded by mutex_: of those, delivered or dropped
  bool stopping_ = false;                // guarded by mutex_
  bool sending_batch_ = false;           // guarded by mutex_: the sender holds reports
  std::thread thread_;                   // last: starts after everything above exists
};

}  // namespace ve::kea_hooks
