// The hook's only socket: a unix datagram socket connected to the daemon's event socket. Kea's
// threads send the first few reports of each window themselves and queue the rest (bounded); one
// sender thread sends those in batches and waits for room when the daemon's queue is full instead of
// dropping (a connected datagram socket polls writable when the peer has room).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {

using dhcp::LeaseReport;

using Clock = std::chrono::steady_clock;

LeaseReporter::LeaseReporter(std::string socket_path, Options options, DropHandler on_drop)
    : path_(std::move(socket_path)), options_(options), on_drop_(std::move(on_drop)) {
  // One socket for the reporter's life: re-connecting it (a new daemon at the path) never closes
  // the descriptor Kea's threads may be sending on.
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  connected_.store(try_connect(), std::memory_order_relaxed);
  thread_ = std::thread([this] { run(); });
}

LeaseReporter::~LeaseReporter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

bool LeaseReporter::send(const LeaseReport& report) noexcept {
  try {
    const auto now = Clock::now().time_since_epoch().count();
    if (now - window_start_.load(std::memory_order_relaxed) >=
        std::chrono::duration_cast<Clock::duration>(options_.coalesce).count()) {
      window_start_.store(now, std::memory_order_relaxed);
      window_sends_.store(0, std::memory_order_relaxed);
    }
    if (window_sends_.fetch_add(1, std::memory_order_relaxed) < options_.direct_per_window &&
        connected_.load(std::memory_order_relaxed)) {
      bool idle = false;
      {
        std::lock_guard lock(mutex_);
        idle = queue_.empty() && !sending_batch_;  // nothing earlier may be overtaken
      }
      if (idle && send_now(report)) return true;
    }
    bool was_empty = false;
    {
      std::lock_guard lock(mutex_);
      if (queue_.size() >= options_.queue_limit) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      was_empty = queue_.empty();
      queue_.push_back(report);
      ++queued_total_;
    }
    if (was_empty) wake_.notify_one();  // the sender takes whole batches
    return true;
  } catch (...) {  // bad_alloc: still never escape into Kea
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
}

// One non-blocking send on Kea's thread. False: queue it for the sender (EAGAIN: the daemon's
// queue is full and the sender waits for room; anything else: the daemon went away and the sender
// reconnects).
bool LeaseReporter::send_now(const LeaseReport& report) {
  const std::string datagram = encode_lease_report(report);
  if (::send(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL) ==
      static_cast<ssize_t>(datagram.size())) {
    last_send_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    sent_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) connected_.store(false, std::memory_order_relaxed);
  return false;
}

bool LeaseReporter::flush(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  const auto target = queued_total_;
  return idle_.wait_for(lock, limit, [&] { return done_total_ >= target; });
}

void LeaseReporter::drop(const LeaseReport& report, const char* why) {
  dropped_.fetch_add(1, std::memory_order_relaxed);
  if (!on_drop_) return;
  try {
    on_drop_(report, why);
  } catch (...) {  // a logging failure must not end the sender
  }
}

bool LeaseReporter::try_connect() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd_ < 0 || path_.empty() || path_.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  return ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

// One report, on the sender thread.
LeaseReporter::Delivery LeaseReporter::deliver(const LeaseReport& report, Clock::time_point& stall_until) {
  std::string datagram;
  try {
    datagram = encode_lease_report(report);
  } catch (...) {
    return Delivery::Dropped;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (;;) {
      if (::send(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL) ==
          static_cast<ssize_t>(datagram.size())) {
        const auto now = Clock::now();
        stall_until = now + options_.stall_timeout;  // progress: the daemon reads
        last_send_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
        return Delivery::Sent;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) break;
      // The daemon's queue is full: wait until it reads one, but not for a daemon that stopped.
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(stall_until - Clock::now()).count();
      if (left <= 0) return Delivery::Stalled;
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(left)) == 0) return Delivery::Stalled;
    }
    // ECONNREFUSED, ENOTCONN...: the daemon restarted (a new socket at the path) or left.
    const bool again = try_connect();
    connected_.store(again, std::memory_order_relaxed);
    if (!again) return Delivery::NoDaemon;
  }
  return Delivery::Dropped;
}

void LeaseReporter::run() {
  std::deque<LeaseReport> batch;
  // Reports queued within `coalesce` of the last send wait for the window to end and go out
  // together, so a storm costs one wake-up per window.
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    if (options_.coalesce.count() > 0 && !stopping_) {
      const Clock::time_point last{Clock::duration{last_send_.load(std::memory_order_relaxed)}};
      const auto window_end = last + options_.coalesce;
      if (Clock::now() < window_end) wake_.wait_until(lock, window_end, [&] { return stopping_; });
    }
    batch.swap(queue_);
    sending_batch_ = true;
    lock.unlock();
    if (!connected_.load(std::memory_order_relaxed)) connected_.store(try_connect(), std::memory_order_relaxed);
    bool no_daemon = !connected_.load(std::memory_order_relaxed);
    bool stalled = false;
    auto stall_until = Clock::now() + options_.stall_timeout;
    for (const auto& report : batch) {
      if (no_daemon) {
        drop(report, "no daemon at the socket");
        continue;
      }
      if (stalled) {
        drop(report, "daemon not reading");
        continue;
      }
      switch (deliver(report, stall_until)) {
        case Delivery::Sent: sent_.fetch_add(1, std::memory_order_relaxed); break;
        case Delivery::Dropped: drop(report, "send failed"); break;
        case Delivery::NoDaemon:
          no_daemon = true;
          drop(report, "no daemon at the socket");
          break;
        case Delivery::Stalled:
          stalled = true;
          drop(report, "daemon not reading");
          break;
      }
    }
    const auto n = batch.size();
    batch.clear();
    lock.lock();
    sending_batch_ = false;
    done_total_ += n;
    idle_.notify_all();
    if (no_daemon && !stopping_) {
      // Nobody at the path: look again in a while, not once per report (each look is a wake-up).
      wake_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
    }
  }
}

}  // namespace ve::kea_hooks
