// Puts each phone's leased address on the interface (rtnetlink via libnl-route) so the kernel
// stack can carry its TFTP, HTTP and SIP traffic; the box ARPs the address to the interface's MAC.
// Also the voice VLAN link a tagging phone sends through (--tag-voice-vlan).
#include <arpa/inet.h>
#include <net/if.h>

#include <algorithm>

#include <fmt/format.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vlan.h>
#include <netlink/route/route.h>

#include "phonesim/internal.hpp"
#include "ve/netlink_route.hpp"

namespace ve::phonesim::detail {

namespace {

using nl::AddrPtr;
using nl::LinkPtr;
using nl::NlAddrPtr;
using nl::RoutePtr;

NlAddrPtr v4(std::uint32_t host_order, int prefix) {
  const std::uint32_t be = htonl(host_order);
  NlAddrPtr a(nl_addr_build(AF_INET, &be, sizeof be));
  if (a) nl_addr_set_prefixlen(a.get(), prefix);
  return a;
}

AddrPtr address_object(int ifindex, std::uint32_t ip) {
  AddrPtr a(rtnl_addr_alloc());
  auto local = v4(ip, 32);
  if (!a || !local) return nullptr;
  rtnl_addr_set_ifindex(a.get(), ifindex);
  rtnl_addr_set_family(a.get(), AF_INET);
  rtnl_addr_set_local(a.get(), local.get());
  rtnl_addr_set_prefixlen(a.get(), 32);
  return a;
}

RoutePtr route_object(int ifindex, std::uint32_t network, int prefix) {
  RoutePtr r(rtnl_route_alloc());
  auto dst = v4(network, prefix);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!r || !dst || nh == nullptr) {
    if (nh != nullptr) rtnl_route_nh_free(nh);
    return nullptr;
  }
  rtnl_route_set_family(r.get(), AF_INET);
  rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(r.get(), RT_SCOPE_LINK);
  rtnl_route_set_protocol(r.get(), RTPROT_STATIC);
  rtnl_route_set_type(r.get(), RTN_UNICAST);
  rtnl_route_set_dst(r.get(), dst.get());
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_add_nexthop(r.get(), nh);  // the route owns nh from here
  return r;
}

}  // namespace

AddressTable::~AddressTable() {
  if (!keep_) remove_all();
  if (sock_ != nullptr) nl_socket_free(sock_);
}

Result<void, std::string> AddressTable::open(const std::string& interface) {
  interface_ = interface;
  ifindex_ = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex_ == 0) return unexpected("no interface " + interface);
  sock_ = nl_socket_alloc();
  if (sock_ == nullptr) return unexpected(std::string("cannot allocate a netlink socket"));
  if (int rc = nl_connect(sock_, NETLINK_ROUTE); rc < 0) return unexpected(std::string("netlink: ") + nl_geterror(rc));
  return {};
}

Result<void, std::string> AddressTable::add(std::uint32_t ip) {
  auto a = address_object(ifindex_, ip);
  if (!a) return unexpected(std::string("out of memory"));
  const int rc = rtnl_addr_add(sock_, a.get(), NLM_F_EXCL);
  if (rc == -NLE_EXIST) return {};  // already there (a previous run kept it): not ours to remove
  if (rc < 0) return unexpected(std::string(nl_geterror(rc)));
  owned_addresses_.push_back(ip);
  return {};
}

Result<void, std::string> AddressTable::ensure_route(std::uint32_t network, int prefix) {
  for (const auto& k : known_routes_) {
    if (k.first == network && k.second == prefix) return {};
  }
  auto r = route_object(ifindex_, network, prefix);
  if (!r) return unexpected(std::string("out of memory"));
  const int rc = rtnl_route_add(sock_, r.get(), NLM_F_EXCL);
  if (rc < 0 && rc != -NLE_EXIST) return unexpected(std::string(nl_geterror(rc)));
  known_routes_.emplace_back(network, prefix);
  if (rc >= 0) owned_routes_.emplace_back(network, prefix);
  return {};
}

void AddressTable::remove_all() {
  if (sock_ == nullptr) return;
  for (const auto& [network, prefix] : owned_routes_) {
    if (auto r = route_object(ifindex_, network, prefix)) (void)rtnl_route_delete(sock_, r.get(), 0);
  }
  owned_routes_.clear();
  known_routes_.clear();
  for (std::uint32_t ip : owned_addresses_) {
    if (auto a = address_object(ifindex_, ip)) (void)rtnl_addr_delete(sock_, a.get(), 0);
  }
  owned_addresses_.clear();
}

std::string vlan_link_name(const std::string& parent, int vid) {
  const std::string suffix = "." + std::to_string(vid);
  constexpr std::size_t kMax = IFNAMSIZ - 1;
  return parent.substr(0, kMax - std::min(kMax, suffix.size())) + suffix;
}

VlanLink::~VlanLink() {
  if (!keep_) remove();
  if (sock_ != nullptr) nl_socket_free(sock_);
}

Result<void, std::string> VlanLink::open(const std::string& parent, int vid) {
  const int parent_index = static_cast<int>(if_nametoindex(parent.c_str()));
  if (parent_index == 0) return unexpected("no interface " + parent);
  if (sock_ == nullptr) {
    sock_ = nl_socket_alloc();
    if (sock_ == nullptr) return unexpected(std::string("cannot allocate a netlink socket"));
    if (int rc = nl_connect(sock_, NETLINK_ROUTE); rc < 0) {
      nl_socket_free(sock_);
      sock_ = nullptr;
      return unexpected(std::string("netlink: ") + nl_geterror(rc));
    }
  }
  const std::string name = vlan_link_name(parent, vid);
  LinkPtr link(rtnl_link_vlan_alloc());
  if (!link) return unexpected(std::string("out of memory"));
  rtnl_link_set_link(link.get(), parent_index);
  rtnl_link_set_name(link.get(), name.c_str());
  rtnl_link_vlan_set_id(link.get(), vid);
  const int rc = rtnl_link_add(sock_, link.get(), NLM_F_CREATE | NLM_F_EXCL);
  bool owned = true;
  if (rc == -NLE_EXIST) {
    owned = false;  // left by an earlier run, or made by the operator: used, never deleted
  } else if (rc < 0) {
    return unexpected(fmt::format("cannot create {} (802.1Q VLAN {} on {}): {}", name, vid, parent, nl_geterror(rc)));
  }
  // Up: the kernel sends nothing through a VLAN link that is down.
  rtnl_link* found = nullptr;
  if (int g = rtnl_link_get_kernel(sock_, 0, name.c_str(), &found); g < 0 || found == nullptr)
    return unexpected(fmt::format("{} vanished after creation: {}", name, nl_geterror(g)));
  LinkPtr existing(found);
  if (!owned && rtnl_link_is_vlan(existing.get()) &&
      (rtnl_link_vlan_get_id(existing.get()) != vid || rtnl_link_get_link(existing.get()) != parent_index))
    return unexpected(fmt::format("{} exists but is not VLAN {} on {}", name, vid, parent));
  LinkPtr change(rtnl_link_alloc());
  if (!change) return unexpected(std::string("out of memory"));
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int c = rtnl_link_change(sock_, existing.get(), change.get(), 0); c < 0) {
    if (owned) (void)rtnl_link_delete(sock_, existing.get());
    return unexpected(fmt::format("cannot set {} up: {}", name, nl_geterror(c)));
  }
  name_ = name;
  vid_ = vid;
  owned_ = owned;
  return {};
}

void VlanLink::remove() {
  if (sock_ == nullptr || !owned_ || name_.empty()) return;
  LinkPtr link(rtnl_link_alloc());
  if (link) {
    rtnl_link_set_name(link.get(), name_.c_str());
    (void)rtnl_link_delete(sock_, link.get());
  }
  owned_ = false;
}

}  // namespace ve::phonesim::detail
