// Puts each phone's leased address on the interface (rtnetlink via libnl-route) so the kernel
// stack can carry its TFTP, HTTP and SIP traffic; the box ARPs the address to the interface's MAC.
#include <arpa/inet.h>
#include <net/if.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>

#include "phonesim/internal.hpp"
#include "ve/netlink_route.hpp"

namespace ve::phonesim::detail {

namespace {

using nl::AddrPtr;
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

}  // namespace ve::phonesim::detail
