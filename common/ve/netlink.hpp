#pragma once
// Owning pointers for libnl-3's core objects, shared by the route netlink user (net/) and the
// generic netlink one (poe/). Include only where libnl-3 is linked.
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <memory>

namespace ve::nl {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct MsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
struct CbDeleter {
  void operator()(nl_cb* c) const { nl_cb_put(c); }
};

using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;
using CbPtr = std::unique_ptr<nl_cb, CbDeleter>;

}  // namespace ve::nl
