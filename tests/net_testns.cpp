// Test scaffolding for net/: namespaces and links (libnl-route), see net_testns.hpp.
#include "tests/net_testns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vlan.h>
#include <netlink/socket.h>

namespace ve::net::testing {

namespace {

int open_current_ns() { return ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC); }

struct Sock {
  nl_sock* sk = nl_socket_alloc();
  Sock() {
    if (sk != nullptr && nl_connect(sk, NETLINK_ROUTE) < 0) {
      nl_socket_free(sk);
      sk = nullptr;
    }
  }
  ~Sock() {
    if (sk != nullptr) nl_socket_free(sk);
  }
};

struct Link {
  rtnl_link* l;
  explicit Link(rtnl_link* raw) : l(raw) {}
  ~Link() {
    if (l != nullptr) rtnl_link_put(l);
  }
};

Result<void, std::string> check(int err, const std::string& what) {
  if (err < 0) return unexpected(what + ": " + nl_geterror(err));
  return {};
}

Result<int, std::string> ifindex(nl_sock* sk, const std::string& name) {
  rtnl_link* raw = nullptr;
  int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw);
  Link link(raw);
  if (err < 0) return unexpected("look up " + name + ": " + nl_geterror(err));
  return rtnl_link_get_ifindex(link.l);
}

}  // namespace

Result<std::unique_ptr<NetnsPair>, std::string> NetnsPair::create() {
  int orig = open_current_ns();
  if (orig < 0) return unexpected(std::string("open own netns: ") + std::strerror(errno));
  if (::unshare(CLONE_NEWNET) != 0) {
    int e = errno;
    ::close(orig);
    return unexpected(std::string("unshare(CLONE_NEWNET): ") + std::strerror(e));
  }
  int box = open_current_ns();
  if (::unshare(CLONE_NEWNET) != 0) {
    int e = errno;
    (void)::setns(orig, CLONE_NEWNET);
    ::close(orig);
    ::close(box);
    return unexpected(std::string("unshare(CLONE_NEWNET): ") + std::strerror(e));
  }
  int peer = open_current_ns();
  if (box < 0 || peer < 0 || ::setns(box, CLONE_NEWNET) != 0) {
    (void)::setns(orig, CLONE_NEWNET);
    ::close(orig);
    if (box >= 0) ::close(box);
    if (peer >= 0) ::close(peer);
    return unexpected(std::string("netns setup failed"));
  }
  // Loopback up in both, as any real namespace would have it.
  (void)set_link_up("lo", true);
  auto pair = std::unique_ptr<NetnsPair>(new NetnsPair(orig, box, peer));
  // Fresh namespaces number their links alike, so both ends of a veth would get ifindex 2. The
  // kernel then sees iflink == ifindex and treats carrier changes as non-urgent (linkwatch rate
  // limit, up to 1 s). A throwaway pair in the peer namespace keeps the numbers apart, as they
  // are between real hosts.
  auto padded = pair->in_peer([] {
    (void)set_link_up("lo", true);
    return add_veth("vepad0", "vepad1", -1);
  });
  if (!padded) return unexpected(padded.error());
  return pair;
}

NetnsPair::~NetnsPair() {
  if (orig_ >= 0 && ::setns(orig_, CLONE_NEWNET) != 0) std::abort();  // must never keep running elsewhere
  for (int fd : {orig_, box_, peer_})
    if (fd >= 0) ::close(fd);
}

void NetnsPair::enter(int fd) const {
  if (::setns(fd, CLONE_NEWNET) != 0) std::abort();
}

Result<void, std::string> add_veth(const std::string& name, const std::string& peer_name, int peer_ns_fd) {
  Sock s;
  if (s.sk == nullptr) return unexpected(std::string("netlink socket"));
  Link link(rtnl_link_veth_alloc());
  rtnl_link_set_name(link.l, name.c_str());
  rtnl_link* peer = rtnl_link_veth_get_peer(link.l);
  rtnl_link_set_name(peer, peer_name.c_str());
  if (peer_ns_fd >= 0) rtnl_link_set_ns_fd(peer, peer_ns_fd);
  rtnl_link_put(peer);
  return check(rtnl_link_add(s.sk, link.l, NLM_F_CREATE | NLM_F_EXCL), "add veth " + name);
}

Result<void, std::string> set_link_up(const std::string& name, bool up) {
  Sock s;
  if (s.sk == nullptr) return unexpected(std::string("netlink socket"));
  auto idx = ifindex(s.sk, name);
  if (!idx) return unexpected(idx.error());
  Link orig(rtnl_link_alloc());
  Link change(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.l, *idx);
  if (up)
    rtnl_link_set_flags(change.l, IFF_UP);
  else
    rtnl_link_unset_flags(change.l, IFF_UP);
  return check(rtnl_link_change(s.sk, orig.l, change.l, 0), "set " + name + (up ? " up" : " down"));
}

Result<void, std::string> rename_link(const std::string& from, const std::string& to) {
  Sock s;
  if (s.sk == nullptr) return unexpected(std::string("netlink socket"));
  auto idx = ifindex(s.sk, from);
  if (!idx) return unexpected(idx.error());
  Link orig(rtnl_link_alloc());
  Link change(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.l, *idx);
  rtnl_link_set_name(change.l, to.c_str());
  return check(rtnl_link_change(s.sk, orig.l, change.l, 0), "rename " + from);
}

Result<void, std::string> add_vlan(const std::string& name, const std::string& parent, int vid) {
  Sock s;
  if (s.sk == nullptr) return unexpected(std::string("netlink socket"));
  auto idx = ifindex(s.sk, parent);
  if (!idx) return unexpected(idx.error());
  Link link(rtnl_link_vlan_alloc());
  rtnl_link_set_name(link.l, name.c_str());
  rtnl_link_set_link(link.l, *idx);
  rtnl_link_vlan_set_id(link.l, static_cast<uint16_t>(vid));
  return check(rtnl_link_add(s.sk, link.l, NLM_F_CREATE | NLM_F_EXCL), "add vlan " + name);
}

Result<void, std::string> add_address(const std::string& name, const std::string& cidr) {
  Sock s;
  if (s.sk == nullptr) return unexpected(std::string("netlink socket"));
  auto idx = ifindex(s.sk, name);
  if (!idx) return unexpected(idx.error());
  nl_addr* local = nullptr;
  if (int err = nl_addr_parse(cidr.c_str(), AF_INET, &local); err < 0) return check(err, "parse " + cidr);
  rtnl_addr* a = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(a, *idx);
  rtnl_addr_set_local(a, local);
  int err = rtnl_addr_add(s.sk, a, 0);
  rtnl_addr_put(a);
  nl_addr_put(local);
  return check(err, "add address " + cidr + " to " + name);
}

bool link_exists(const std::string& name) {
  Sock s;
  return s.sk != nullptr && ifindex(s.sk, name).has_value();
}

}  // namespace ve::net::testing
