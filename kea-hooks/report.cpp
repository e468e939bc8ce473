// The hook's only socket: a unix datagram socket connected to the daemon's event socket, written
// by one sender thread. Kea's threads only queue; the sender waits for the daemon when its queue
// is full instead of dropping (a connected datagram socket polls writable when the peer has room).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {

using Clock = std::chrono::steady_clock;

LeaseReporter::LeaseReporter(std::string socket_path, Options options, DropHandler on_drop)
    : path_(std::move(socket_path)), options_(options), on_drop_(std::move(on_drop)) {
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
    {
      std::lock_guard lock(mutex_);
      if (queue_.size() >= options_.queue_limit) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      queue_.push_back(report);
      ++queued_total_;
    }
    wake_.notify_one();
    return true;
  } catch (...) {  // bad_alloc: still never escape into Kea
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
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

bool LeaseReporter::connect_socket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  return true;
}

// One report. `tried_connect`: a (re)connect was already attempted for this batch, so a daemon
// that is not there costs one connect() per batch, not one per report.
LeaseReporter::Delivery LeaseReporter::deliver(const LeaseReport& report, bool& tried_connect,
                                               Clock::time_point& stall_until) {
  std::string datagram;
  try {
    datagram = encode_lease_report(report);
  } catch (...) {
    return Delivery::Dropped;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fd_ < 0) {
      if (tried_connect) return Delivery::Dropped;
      tried_connect = true;
      if (!connect_socket()) return Delivery::Dropped;
    }
    for (;;) {
      if (::send(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL) ==
          static_cast<ssize_t>(datagram.size())) {
        stall_until = Clock::now() + options_.stall_timeout;  // progress: the daemon reads
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
    ::close(fd_);
    fd_ = -1;
    if (tried_connect) return Delivery::Dropped;
  }
  return Delivery::Dropped;
}

void LeaseReporter::run() {
  std::deque<LeaseReport> batch;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    batch.swap(queue_);
    lock.unlock();
    bool tried_connect = false;
    bool stalled = false;
    auto stall_until = Clock::now() + options_.stall_timeout;
    for (const auto& report : batch) {
      if (stalled) {
        drop(report, "daemon not reading");
        continue;
      }
      switch (deliver(report, tried_connect, stall_until)) {
        case Delivery::Sent: sent_.fetch_add(1, std::memory_order_relaxed); break;
        case Delivery::Dropped: drop(report, "no daemon at the socket"); break;
        case Delivery::Stalled:
          stalled = true;
          drop(report, "daemon not reading");
          break;
      }
    }
    const auto n = batch.size();
    batch.clear();
    lock.lock();
    done_total_ += n;
    idle_.notify_all();
  }
}

}  // namespace ve::kea_hooks
