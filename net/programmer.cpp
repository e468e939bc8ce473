// The programmer: reads links, bridge VLANs and addresses from the kernel and applies a plan's
// actions, all over rtnetlink with libnl-route (libnl-3 messages where libnl-route 3.7 has no
// object for it: bridge VLAN filtering and per-port bridge VLANs). No shelling out.
#include <linux/ethtool.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cstring>

#include <fmt/format.h>
#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vlan.h>
#include <netlink/socket.h>

#include "net/net.hpp"
#include "ve/netlink_route.hpp"

namespace ve::net {

// IFF_LOWER_UP (carrier) lives in <linux/if.h>, which clashes with <net/if.h>.
constexpr unsigned kIffLowerUp = 1U << 16;

std::string NetError::to_string() const {
  return code != 0 ? fmt::format("{}: {} ({})", what, message, code) : fmt::format("{}: {}", what, message);
}

namespace {

using nl::AddrPtr;
using nl::CachePtr;
using nl::CbPtr;
using nl::LinkPtr;
using nl::MsgPtr;
using nl::NlAddrPtr;
using nl::SockPtr;

NetError nl_error(std::string what, int err) {
  int code = err < 0 ? -err : err;
  return NetError{std::move(what), code, nl_geterror(code)};
}

// An ifinfomsg-headed request; attributes are added by the caller.
MsgPtr link_request(int type, int flags, unsigned char family, int ifindex) {
  MsgPtr m(nlmsg_alloc_simple(type, flags));
  if (!m) return m;
  ifinfomsg ifi{};
  ifi.ifi_family = family;
  ifi.ifi_index = ifindex;
  if (nlmsg_append(m.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0) m.reset();
  return m;
}

}  // namespace

struct Programmer::Impl {
  SockPtr sk;

  // Sends a request and waits for the kernel's ack; returns 0 or a negative libnl error.
  int send_and_ack(nl_msg* msg) {
    int err = nl_send_auto(sk.get(), msg);
    if (err < 0) return err;
    return nl_wait_for_ack(sk.get());
  }

  Result<int, NetError> ifindex_of(const std::string& name) {
    rtnl_link* raw = nullptr;
    int err = rtnl_link_get_kernel(sk.get(), 0, name.c_str(), &raw);
    LinkPtr link(raw);
    if (err < 0) return unexpected(nl_error(fmt::format("look up {}", name), err));
    return rtnl_link_get_ifindex(link.get());
  }

  int create_bridge(const std::string& name, bool vlan_filtering) {
    MsgPtr m = link_request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC, 0);
    if (!m) return -NLE_NOMEM;
    if (nla_put_string(m.get(), IFLA_IFNAME, name.c_str()) < 0) return -NLE_MSGSIZE;
    nlattr* info = nla_nest_start(m.get(), IFLA_LINKINFO);
    if (info == nullptr || nla_put_string(m.get(), IFLA_INFO_KIND, "bridge") < 0) return -NLE_MSGSIZE;
    if (vlan_filtering) {
      nlattr* data = nla_nest_start(m.get(), IFLA_INFO_DATA);
      if (data == nullptr || nla_put_u8(m.get(), IFLA_BR_VLAN_FILTERING, 1) < 0 ||
          nla_put_u16(m.get(), IFLA_BR_VLAN_DEFAULT_PVID, 0) < 0)  // ports join with no VLAN
        return -NLE_MSGSIZE;
      nla_nest_end(m.get(), data);
    }
    nla_nest_end(m.get(), info);
    return send_and_ack(m.get());
  }

  int enable_vlan_filtering(int ifindex) {
    MsgPtr m = link_request(RTM_NEWLINK, 0, AF_UNSPEC, ifindex);
    if (!m) return -NLE_NOMEM;
    nlattr* info = nla_nest_start(m.get(), IFLA_LINKINFO);
    if (info == nullptr || nla_put_string(m.get(), IFLA_INFO_KIND, "bridge") < 0) return -NLE_MSGSIZE;
    nlattr* data = nla_nest_start(m.get(), IFLA_INFO_DATA);
    if (data == nullptr || nla_put_u8(m.get(), IFLA_BR_VLAN_FILTERING, 1) < 0) return -NLE_MSGSIZE;
    nla_nest_end(m.get(), data);
    nla_nest_end(m.get(), info);
    return send_and_ack(m.get());
  }

  int bridge_vlan(int type, int ifindex, const BridgeVlan& v, bool self) {
    MsgPtr m = link_request(type, 0, AF_BRIDGE, ifindex);
    if (!m) return -NLE_NOMEM;
    std::vector<std::byte> spec = encode_vlan_spec(v, self);
    if (nla_put(m.get(), IFLA_AF_SPEC, static_cast<int>(spec.size()), spec.data()) < 0) return -NLE_MSGSIZE;
    return send_and_ack(m.get());
  }

  int create_vlan(const std::string& name, int parent, int vid) {
    LinkPtr link(rtnl_link_vlan_alloc());
    if (!link) return -NLE_NOMEM;
    rtnl_link_set_name(link.get(), name.c_str());
    rtnl_link_set_link(link.get(), parent);
    if (int err = rtnl_link_vlan_set_id(link.get(), static_cast<uint16_t>(vid)); err < 0) return err;
    return rtnl_link_add(sk.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  }

  // Changes flags and/or the alias of an existing link, leaving everything else as it is.
  int change_link(int ifindex, unsigned up_flag, const char* alias) {
    LinkPtr orig(rtnl_link_alloc());
    LinkPtr change(rtnl_link_alloc());
    if (!orig || !change) return -NLE_NOMEM;
    rtnl_link_set_ifindex(orig.get(), ifindex);
    if (up_flag != 0) rtnl_link_set_flags(change.get(), up_flag);
    if (alias != nullptr) rtnl_link_set_ifalias(change.get(), alias);
    return rtnl_link_change(sk.get(), orig.get(), change.get(), 0);
  }

  int delete_link(int ifindex) {
    LinkPtr link(rtnl_link_alloc());
    if (!link) return -NLE_NOMEM;
    rtnl_link_set_ifindex(link.get(), ifindex);
    return rtnl_link_delete(sk.get(), link.get());
  }

  int address(bool add, int ifindex, const Ipv4Cidr& cidr) {
    AddrPtr a(rtnl_addr_alloc());
    std::uint32_t be = htonl(cidr.address);
    NlAddrPtr local(nl_addr_build(AF_INET, &be, sizeof be));
    if (!a || !local) return -NLE_NOMEM;
    rtnl_addr_set_ifindex(a.get(), ifindex);
    rtnl_addr_set_family(a.get(), AF_INET);
    if (int err = rtnl_addr_set_local(a.get(), local.get()); err < 0) return err;
    rtnl_addr_set_prefixlen(a.get(), cidr.prefix_len);
    return add ? rtnl_addr_add(sk.get(), a.get(), 0) : rtnl_addr_delete(sk.get(), a.get(), 0);
  }

  // A dump request whose every answer goes to `fn(nlmsghdr*)`.
  template <typename Fn>
  int dump(unsigned char family, std::uint32_t ext_mask, Fn fn) {
    MsgPtr m = link_request(RTM_GETLINK, NLM_F_DUMP, family, 0);
    if (!m) return -NLE_NOMEM;
    if (ext_mask != 0 && nla_put_u32(m.get(), IFLA_EXT_MASK, ext_mask) < 0) return -NLE_MSGSIZE;
    CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
    if (!cb) return -NLE_NOMEM;
    auto trampoline = [](nl_msg* msg, void* arg) -> int {
      (*static_cast<Fn*>(arg))(nlmsg_hdr(msg));
      return NL_OK;
    };
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, trampoline, &fn);
    if (int err = nl_send_auto(sk.get(), m.get()); err < 0) return err;
    return nl_recvmsgs(sk.get(), cb.get());
  }
};

Programmer::Programmer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Programmer::~Programmer() = default;

Result<std::unique_ptr<Programmer>, NetError> Programmer::open() {
  auto impl = std::make_unique<Impl>();
  impl->sk.reset(nl_socket_alloc());
  if (!impl->sk) return unexpected(NetError{"netlink socket", ENOMEM, "out of memory"});
  if (int err = nl_connect(impl->sk.get(), NETLINK_ROUTE); err < 0) return unexpected(nl_error("netlink connect", err));
  return std::unique_ptr<Programmer>(new Programmer(std::move(impl)));
}

KernelFeatures Programmer::probe_features() {
  KernelFeatures f;
  // Names unique per process so that parallel probes (tests) do not collide.
  std::string bridge = fmt::format("vep{}", static_cast<unsigned>(getpid()) % 1000000U);
  std::string vlan = vlan_interface_name(bridge, 1);
  // A probe left behind by a crashed process with the same pid would make creation fail.
  if (auto stale = impl_->ifindex_of(bridge)) (void)impl_->delete_link(*stale);
  int err = impl_->create_bridge(bridge, true);
  if (err >= 0) {
    f.bridge = f.bridge_vlan_filtering = true;
  } else if (impl_->create_bridge(bridge, false) >= 0) {
    f.bridge = true;
  }
  if (!f.bridge) return f;
  auto br = impl_->ifindex_of(bridge);
  if (br) {
    if (impl_->create_vlan(vlan, *br, 1) >= 0) {
      f.vlan_8021q = true;
      if (auto vi = impl_->ifindex_of(vlan)) (void)impl_->delete_link(*vi);
    }
    (void)impl_->delete_link(*br);
  }
  return f;
}

Result<Present, NetError> Programmer::read_present() {
  Present p;
  nl_cache* raw_cache = nullptr;
  if (int err = rtnl_link_alloc_cache(impl_->sk.get(), AF_UNSPEC, &raw_cache); err < 0)
    return unexpected(nl_error("read links", err));
  CachePtr links(raw_cache);
  for (nl_object* o = nl_cache_get_first(links.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    PresentLink pl;
    pl.ifindex = rtnl_link_get_ifindex(l);
    pl.name = rtnl_link_get_name(l) ? rtnl_link_get_name(l) : "";
    pl.kind = rtnl_link_get_type(l) ? rtnl_link_get_type(l) : "";
    pl.alias = rtnl_link_get_ifalias(l) ? rtnl_link_get_ifalias(l) : "";
    pl.master = rtnl_link_get_master(l);
    // IFLA_LINK names the lower device of stacked links (vlan, macvlan). A veth's IFLA_LINK is its
    // peer, and with IFLA_LINK_NETNSID the index is in another namespace: neither is a lower here.
    std::int32_t link_netnsid = 0;
    bool other_ns = rtnl_link_get_link_netnsid(l, &link_netnsid) == 0;
    if (!other_ns && pl.kind != "veth") pl.parent = rtnl_link_get_link(l);
    pl.admin_up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
    pl.carrier = (rtnl_link_get_flags(l) & kIffLowerUp) != 0;
    if (rtnl_link_is_vlan(l)) pl.vlan_id = rtnl_link_vlan_get_id(l);
    p.links.push_back(std::move(pl));
  }

  // Bridge VLAN filtering is not an attribute libnl-route 3.7 exposes: read IFLA_INFO_DATA.
  auto on_link = [&p](nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWLINK || !nlmsg_valid_hdr(h, sizeof(ifinfomsg))) return;
    const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(h));
    nlattr* tb[IFLA_MAX + 1] = {};
    if (nlmsg_parse(h, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0 || tb[IFLA_LINKINFO] == nullptr) return;
    nlattr* info[IFLA_INFO_MAX + 1] = {};
    if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], nullptr) < 0) return;
    if (info[IFLA_INFO_KIND] == nullptr || info[IFLA_INFO_DATA] == nullptr) return;
    if (std::string_view(static_cast<const char*>(nla_data(info[IFLA_INFO_KIND])),
                         strnlen(static_cast<const char*>(nla_data(info[IFLA_INFO_KIND])),
                                 nla_len(info[IFLA_INFO_KIND]))) != "bridge")
      return;
    nlattr* br[IFLA_BR_MAX + 1] = {};
    if (nla_parse_nested(br, IFLA_BR_MAX, info[IFLA_INFO_DATA], nullptr) < 0) return;
    nlattr* vf = br[IFLA_BR_VLAN_FILTERING];
    if (vf == nullptr || nla_len(vf) < 1) return;
    for (auto& l : p.links)
      if (l.ifindex == ifi->ifi_index) l.vlan_filtering = nla_get_u8(vf) != 0;
  };
  if (int err = impl_->dump(AF_UNSPEC, 0, on_link); err < 0) return unexpected(nl_error("read bridge attributes", err));

  // Per-port (and bridge self) VLAN tables.
  int malformed = 0;
  auto on_bridge = [&p, &malformed](nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWLINK || !nlmsg_valid_hdr(h, sizeof(ifinfomsg))) return;
    const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(h));
    nlattr* tb[IFLA_MAX + 1] = {};
    if (nlmsg_parse(h, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0 || tb[IFLA_AF_SPEC] == nullptr) return;
    auto spec = std::span<const std::byte>(static_cast<const std::byte*>(nla_data(tb[IFLA_AF_SPEC])),
                                           static_cast<std::size_t>(nla_len(tb[IFLA_AF_SPEC])));
    auto vlans = decode_vlan_spec(spec);
    if (!vlans) {
      ++malformed;
      return;
    }
    if (!vlans->empty()) p.bridge_vlans[ifi->ifi_index] = std::move(*vlans);
  };
  if (int err = impl_->dump(AF_BRIDGE, RTEXT_FILTER_BRVLAN, on_bridge); err < 0)
    return unexpected(nl_error("read bridge vlans", err));
  if (malformed != 0) return unexpected(NetError{"read bridge vlans", EPROTO, "malformed VLAN table from kernel"});

  if (int err = rtnl_addr_alloc_cache(impl_->sk.get(), &raw_cache); err < 0)
    return unexpected(nl_error("read addresses", err));
  CachePtr addrs(raw_cache);
  for (nl_object* o = nl_cache_get_first(addrs.get()); o != nullptr; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    nl_addr* local = rtnl_addr_get_local(a);
    if (rtnl_addr_get_family(a) != AF_INET || local == nullptr || nl_addr_get_len(local) != 4) continue;
    std::uint32_t be = 0;
    std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
    p.addresses[rtnl_addr_get_ifindex(a)].push_back({ntohl(be), rtnl_addr_get_prefixlen(a)});
  }
  return p;
}

Result<void, NetError> Programmer::apply(const Action& a) {
  Impl& n = *impl_;
  std::string what = describe(a);
  auto fail = [&](int err) -> Result<void, NetError> { return unexpected(nl_error(what, err)); };
  auto index = [&](const std::string& name) { return n.ifindex_of(name); };

  int err = 0;
  switch (a.kind) {
    case ActionKind::CreateBridge: {
      if ((err = n.create_bridge(a.name, true)) < 0) return fail(err);
      auto br = index(a.name);
      if (!br) return unexpected(br.error());
      // The kernel ignores IFLA_IFALIAS on creation: mark it ours right after.
      err = n.change_link(*br, 0, kOwnerAlias.data());
      break;
    }
    case ActionKind::EnableVlanFiltering: {
      auto br = index(a.name);
      if (!br) return unexpected(br.error());
      err = n.enable_vlan_filtering(*br);
      break;
    }
    case ActionKind::SetMaster: {
      auto port = index(a.name);
      if (!port) return unexpected(port.error());
      auto br = index(a.peer);
      if (!br) return unexpected(br.error());
      err = rtnl_link_enslave_ifindex(n.sk.get(), *br, *port);
      break;
    }
    case ActionKind::ReleaseMaster: {
      auto port = index(a.name);
      if (!port) return unexpected(port.error());
      err = rtnl_link_release_ifindex(n.sk.get(), *port);
      break;
    }
    case ActionKind::AddBridgeVlan:
    case ActionKind::DelBridgeVlan: {
      auto dev = index(a.name);
      if (!dev) return unexpected(dev.error());
      err = n.bridge_vlan(a.kind == ActionKind::AddBridgeVlan ? RTM_SETLINK : RTM_DELLINK, *dev,
                          BridgeVlan{a.vid, a.pvid, a.untagged}, a.self);
      break;
    }
    case ActionKind::CreateVlanLink: {
      auto parent = index(a.peer);
      if (!parent) return unexpected(parent.error());
      if ((err = n.create_vlan(a.name, *parent, a.vid)) < 0) return fail(err);
      auto vi = index(a.name);
      if (!vi) return unexpected(vi.error());
      err = n.change_link(*vi, 0, kOwnerAlias.data());
      break;
    }
    case ActionKind::AddAddress:
    case ActionKind::DelAddress: {
      auto dev = index(a.name);
      if (!dev) return unexpected(dev.error());
      err = n.address(a.kind == ActionKind::AddAddress, *dev, a.address);
      break;
    }
    case ActionKind::SetUp: {
      auto dev = index(a.name);
      if (!dev) return unexpected(dev.error());
      err = n.change_link(*dev, IFF_UP, nullptr);
      break;
    }
    case ActionKind::DeleteLink: {
      auto dev = index(a.name);
      if (!dev) return unexpected(dev.error());
      err = n.delete_link(*dev);
      break;
    }
  }
  if (err < 0) return fail(err);
  return {};
}

std::optional<int> Programmer::speed_mbps(const std::string& ifname) {
  if (ifname.size() >= IFNAMSIZ) return std::nullopt;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  ethtool_cmd cmd{};
  cmd.cmd = ETHTOOL_GSET;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  ifr.ifr_data = reinterpret_cast<char*>(&cmd);
  int rc = ::ioctl(fd, SIOCETHTOOL, &ifr);
  ::close(fd);
  if (rc < 0) return std::nullopt;
  std::uint32_t speed = ethtool_cmd_speed(&cmd);
  if (speed == 0 || speed == static_cast<std::uint32_t>(SPEED_UNKNOWN)) return std::nullopt;
  return static_cast<int>(speed);
}

}  // namespace ve::net
