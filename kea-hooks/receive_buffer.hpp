#pragma once
// Gives Kea's raw sockets room for a boot storm's burst of DISCOVERs.
//
// Kea 2.2 never sizes its sockets, so each gets net.core.rmem_default (212 992 bytes on Debian:
// about 167 DISCOVERs as the kernel accounts them). A branch's phones booting together after a
// power cut send more than that before Kea has read one, and the rest are dropped by the kernel:
// each such phone waits 4 s for its own retransmission (the 2-second plateau of issue 21 was
// exactly those drops). Kea has no setting for it, so the hook sizes the sockets Kea opened.
#include <string>

namespace ve::kea_hooks {

struct ReceiveBufferOutcome {
  bool ok = false;
  int bytes = 0;        // the socket's receive buffer afterwards, as the kernel reports it
  bool forced = false;  // SO_RCVBUFFORCE worked (beyond net.core.rmem_max)
  std::string error;    // why, when !ok
};

// Raises `fd`'s receive buffer to at least `bytes` as the kernel accounts it (the figure
// SO_RCVBUF reports and net.core.rmem_default sets; the kernel counts each frame's overhead in
// it). Tries SO_RCVBUFFORCE first (CAP_NET_ADMIN, which the daemon's Kea has), then SO_RCVBUF
// (capped at net.core.rmem_max). Never shrinks a buffer.
ReceiveBufferOutcome raise_receive_buffer(int fd, int bytes);

}  // namespace ve::kea_hooks
