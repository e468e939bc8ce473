// Frame classification: reads only what attribution needs, every offset bounds-checked.
#include "diag/diag.hpp"

namespace ve::diag {
namespace {

std::uint16_t be16(ByteView b, std::size_t at) { return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]); }
std::uint32_t be32(ByteView b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) |
         std::uint32_t{b[at + 3]};
}
MacAddress mac_at(ByteView b, std::size_t at) {
  std::array<std::uint8_t, 6> m{};
  for (std::size_t i = 0; i < 6; ++i) m[i] = b[at + i];
  return MacAddress(m);
}

constexpr std::uint16_t kVlanTag = 0x8100;
constexpr std::uint16_t kArp = 0x0806;
constexpr std::uint16_t kIpv4 = 0x0800;
constexpr std::uint16_t kLldp = 0x88cc;
constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;
constexpr std::size_t kBootpFixed = 236;  // op .. file, before the magic cookie
constexpr std::uint32_t kDhcpMagic = 0x63825363;

void classify_dhcp(ByteView udp_payload, FrameInfo& out) {
  if (udp_payload.size() < kBootpFixed) return;
  DhcpInfo d;
  d.op = udp_payload[0];
  const std::uint8_t htype = udp_payload[1];
  const std::uint8_t hlen = udp_payload[2];
  d.ciaddr = be32(udp_payload, 12);
  d.yiaddr = be32(udp_payload, 16);
  if (htype == 1 && hlen == 6) d.chaddr = mac_at(udp_payload, 28);
  // Options: only 53 (message type) matters; walk the TLVs until END or the buffer ends.
  if (udp_payload.size() >= kBootpFixed + 4 && be32(udp_payload, kBootpFixed) == kDhcpMagic) {
    std::size_t i = kBootpFixed + 4;
    while (i < udp_payload.size()) {
      const std::uint8_t code = udp_payload[i];
      if (code == 0) {  // pad
        ++i;
        continue;
      }
      if (code == 255 || i + 1 >= udp_payload.size()) break;
      const std::size_t len = udp_payload[i + 1];
      if (i + 2 + len > udp_payload.size()) break;
      if (code == 53 && len == 1) d.message_type = udp_payload[i + 2];
      i += 2 + len;
    }
  }
  out.dhcp = d;
}

void classify_ipv4(ByteView frame, std::size_t at, FrameInfo& out) {
  if (frame.size() < at + 20) return;
  const std::uint8_t version = frame[at] >> 4;
  const std::size_t ihl = std::size_t{frame[at] & 0x0fu} * 4;
  if (version != 4 || ihl < 20 || frame.size() < at + ihl) return;
  out.ipv4 = true;
  out.ip_protocol = frame[at + 9];
  out.ip_source = be32(frame, at + 12);
  out.ip_destination = be32(frame, at + 16);
  // The IP total length bounds the payload (Ethernet padding is not payload).
  std::size_t end = at + be16(frame, at + 2);
  if (end > frame.size() || end < at + ihl) end = frame.size();
  const bool first_fragment = (be16(frame, at + 6) & 0x1fff) == 0;
  if (!first_fragment) return;
  const std::size_t l4 = at + ihl;
  if (out.ip_protocol == kUdp && end >= l4 + 8) {
    out.source_port = be16(frame, l4);
    out.destination_port = be16(frame, l4 + 2);
    out.payload_offset = l4 + 8;
    out.payload_length = end - (l4 + 8);
    const bool bootp =
        (out.source_port == 67 || out.source_port == 68) && (out.destination_port == 67 || out.destination_port == 68);
    if (bootp) classify_dhcp(frame.subspan(out.payload_offset, out.payload_length), out);
  } else if (out.ip_protocol == kTcp && end >= l4 + 20) {
    out.source_port = be16(frame, l4);
    out.destination_port = be16(frame, l4 + 2);
    const std::size_t data_offset = static_cast<std::size_t>(frame[l4 + 12] >> 4) * 4;
    if (data_offset >= 20 && end >= l4 + data_offset) {
      out.payload_offset = l4 + data_offset;
      out.payload_length = end - out.payload_offset;
    }
  }
}

}  // namespace

bool is_multicast(const MacAddress& mac) { return (mac.bytes()[0] & 0x01) != 0; }

std::optional<FrameInfo> classify_frame(ByteView frame) {
  if (frame.size() < 14) return std::nullopt;
  FrameInfo out;
  out.destination = mac_at(frame, 0);
  out.source = mac_at(frame, 6);
  std::size_t at = 12;
  std::uint16_t type = be16(frame, at);
  // At most two tags (QinQ); more is not something a phone sends.
  for (int tags = 0; tags < 2 && (type == kVlanTag || type == 0x88a8) && frame.size() >= at + 6; ++tags) {
    if (!out.vlan) out.vlan = static_cast<std::uint16_t>(be16(frame, at + 2) & 0x0fff);
    at += 4;
    type = be16(frame, at);
  }
  at += 2;
  if (type <= 1500) {
    // 802.3 length field: CDP is LLC AA AA 03, OUI 00 00 0C, PID 0x2000.
    if (frame.size() >= at + 8 && frame[at] == 0xaa && frame[at + 1] == 0xaa && frame[at + 2] == 0x03 &&
        frame[at + 3] == 0x00 && frame[at + 4] == 0x00 && frame[at + 5] == 0x0c && be16(frame, at + 6) == 0x2000) {
      out.cdp = true;
    }
    return out;
  }
  if (type == kLldp) {
    out.lldp = true;
  } else if (type == kArp) {
    // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4.
    if (frame.size() >= at + 28 && be16(frame, at) == 1 && be16(frame, at + 2) == kIpv4 && frame[at + 4] == 6 &&
        frame[at + 5] == 4) {
      out.arp = true;
      out.arp_sender_mac = mac_at(frame, at + 8);
      out.arp_sender_ip = be32(frame, at + 14);
      out.arp_target_ip = be32(frame, at + 24);
    }
  } else if (type == kIpv4) {
    classify_ipv4(frame, at, out);
  }
  return out;
}

}  // namespace ve::diag
