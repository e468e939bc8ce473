// The hook's only socket: an unbound unix datagram socket that sends lease reports to the
// daemon. Non-blocking and fire-and-forget, so Kea never waits on voiceedged.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {

LeaseReporter::LeaseReporter(std::string socket_path) : path_(std::move(socket_path)) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // On failure fd_ stays -1 and every send() counts a drop: reporting is best effort.
}

LeaseReporter::~LeaseReporter() {
  if (fd_ >= 0) ::close(fd_);
}

bool LeaseReporter::send(const LeaseReport& report) noexcept {
  try {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.empty() || path_.size() >= sizeof(addr.sun_path)) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    const std::string datagram = encode_lease_report(report);
    // ENOENT/ECONNREFUSED: no daemon. EAGAIN: its queue is full. Either way: drop, never wait.
    const auto n = ::sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                            reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    if (n != static_cast<ssize_t>(datagram.size())) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    sent_.fetch_add(1, std::memory_order_relaxed);
    return true;
  } catch (...) {  // bad_alloc while encoding: still never escape into Kea
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
}

}  // namespace ve::kea_hooks
