// IFLA_AF_SPEC payload of AF_BRIDGE link messages: the per-port VLAN table. Pure codec.
// Layout (linux/if_bridge.h): netlink attributes; IFLA_BRIDGE_VLAN_INFO carries
// struct bridge_vlan_info { __u16 flags; __u16 vid; } in host byte order.
#include <cstring>

#include <linux/if_bridge.h>
#include <linux/netlink.h>

#include "net/net.hpp"

namespace ve::net {

std::string_view to_string(VlanSpecError e) {
  switch (e) {
    case VlanSpecError::Truncated: return "truncated attribute";
    case VlanSpecError::BadLength: return "bad attribute length";
    case VlanSpecError::BadVid: return "VLAN id out of range";
    case VlanSpecError::UnterminatedRange: return "VLAN range without end";
  }
  return "?";
}

namespace {

constexpr std::size_t kAttrHeader = 4;
constexpr std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

std::uint16_t read_u16(const std::byte* p) {
  std::uint16_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void put_attr(std::vector<std::byte>& out, std::uint16_t type, const void* data, std::uint16_t len) {
  std::uint16_t total = static_cast<std::uint16_t>(kAttrHeader + len);
  std::size_t at = out.size();
  out.resize(at + align4(total));
  std::memcpy(out.data() + at, &total, 2);
  std::memcpy(out.data() + at + 2, &type, 2);
  std::memcpy(out.data() + at + kAttrHeader, data, len);
}

}  // namespace

Result<std::vector<BridgeVlan>, VlanSpecError> decode_vlan_spec(std::span<const std::byte> spec) {
  std::vector<BridgeVlan> out;
  int range_begin = 0;  // vid of an open RANGE_BEGIN entry, 0 = none
  std::size_t off = 0;
  while (off < spec.size()) {
    if (spec.size() - off < kAttrHeader) return unexpected(VlanSpecError::Truncated);
    std::uint16_t len = read_u16(spec.data() + off);
    std::uint16_t type = read_u16(spec.data() + off + 2) & NLA_TYPE_MASK;
    if (len < kAttrHeader) return unexpected(VlanSpecError::BadLength);
    if (len > spec.size() - off) return unexpected(VlanSpecError::Truncated);
    if (type == IFLA_BRIDGE_VLAN_INFO) {
      if (len - kAttrHeader < 4) return unexpected(VlanSpecError::BadLength);
      std::uint16_t flags = read_u16(spec.data() + off + kAttrHeader);
      int vid = read_u16(spec.data() + off + kAttrHeader + 2);
      if (vid < 1 || vid > 4094) return unexpected(VlanSpecError::BadVid);
      BridgeVlan v{vid, (flags & BRIDGE_VLAN_INFO_PVID) != 0, (flags & BRIDGE_VLAN_INFO_UNTAGGED) != 0};
      if ((flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) != 0) {
        if (range_begin != 0) return unexpected(VlanSpecError::UnterminatedRange);
        range_begin = vid;
      } else if ((flags & BRIDGE_VLAN_INFO_RANGE_END) != 0) {
        if (range_begin == 0 || vid < range_begin) return unexpected(VlanSpecError::UnterminatedRange);
        for (int r = range_begin; r <= vid; ++r) out.push_back({r, false, v.untagged});
        range_begin = 0;
      } else {
        if (range_begin != 0) return unexpected(VlanSpecError::UnterminatedRange);
        out.push_back(v);
      }
    }
    off += align4(len);  // the last attribute may lack its padding
  }
  if (range_begin != 0) return unexpected(VlanSpecError::UnterminatedRange);
  return out;
}

std::vector<std::byte> encode_vlan_spec(const BridgeVlan& vlan, bool self) {
  std::vector<std::byte> out;
  std::uint16_t bridge_flags = self ? BRIDGE_FLAGS_SELF : BRIDGE_FLAGS_MASTER;
  put_attr(out, IFLA_BRIDGE_FLAGS, &bridge_flags, sizeof bridge_flags);
  bridge_vlan_info info{};
  info.vid = static_cast<std::uint16_t>(vlan.vid);
  info.flags = static_cast<std::uint16_t>((vlan.pvid ? BRIDGE_VLAN_INFO_PVID : 0) |
                                          (vlan.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0));
  put_attr(out, IFLA_BRIDGE_VLAN_INFO, &info, sizeof info);
  return out;
}

}  // namespace ve::net
