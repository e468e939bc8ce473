#include "kea-hooks/receive_buffer.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace ve::kea_hooks {
namespace {

int current_size(int fd, std::string& error) {
  int size = 0;
  socklen_t len = sizeof(size);
  if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len) != 0) {
    error = std::string("SO_RCVBUF: ") + std::strerror(errno);
    return -1;
  }
  return size;
}

}  // namespace

ReceiveBufferOutcome raise_receive_buffer(int fd, int bytes) {
  ReceiveBufferOutcome out;
  const int before = current_size(fd, out.error);
  if (before < 0) return out;
  if (before >= bytes) {
    out.ok = true;
    out.bytes = before;
    return out;
  }
  // The kernel doubles what it is given (room for its own overhead); ask for half so that the
  // figure it reports, the one rmem_default is compared with, is `bytes`.
  const int request = bytes / 2 + bytes % 2;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &request, sizeof(request)) == 0) {
    out.forced = true;
  } else if (errno != EPERM) {
    out.error = std::string("SO_RCVBUFFORCE: ") + std::strerror(errno);
    return out;
  } else if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &request, sizeof(request)) != 0) {
    out.error = std::string("SO_RCVBUF: ") + std::strerror(errno);
    return out;
  }
  out.bytes = current_size(fd, out.error);
  if (out.bytes < 0) return out;
  out.ok = true;
  if (out.bytes < bytes)
    out.error = "capped at " + std::to_string(out.bytes) + " bytes by net.core.rmem_max (no CAP_NET_ADMIN)";
  return out;
}

}  // namespace ve::kea_hooks
