// CDP v2 codec: pure, no sockets, clocks or logging. Layouts checked against Wireshark's
// packet-cdp.c and lldpd's cdp.c (read, not copied); facts in shared/docs/protocol-notes.md.
#include <cstdio>

#include "cdp/cdp.hpp"
#include "cdp/wire.hpp"
#include "ve/ipv4.hpp"

namespace ve::cdp {
namespace {

using wire::Reader;

constexpr std::uint8_t kSnapHeader[8] = {0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00};
constexpr std::size_t kSnapSize = sizeof(kSnapHeader);
constexpr std::size_t kTlvHeaderSize = 4;
constexpr std::size_t kMaxTlvValue = 0xffff - kTlvHeaderSize;

enum TlvType : std::uint16_t {
  kDeviceId = 0x01,
  kAddresses = 0x02,
  kPortId = 0x03,
  kCapabilities = 0x04,
  kSoftwareVersion = 0x05,
  kPlatform = 0x06,
  kNativeVlan = 0x0a,
  kDuplex = 0x0b,
  kVoipVlanReply = 0x0e,
  kVoipVlanQuery = 0x0f,
  kPower = 0x10,
  kMtu = 0x11,
  kTrustBitmap = 0x12,
  kUntrustedCos = 0x13,
  kManagementAddresses = 0x16,
  kPowerRequested = 0x19,
  kPowerAvailable = 0x1a,
};

// One's-complement sum of 16-bit words; `cisco_odd` selects how a trailing odd byte is added.
// Bytes 2..3 (the checksum field) count as zero.
std::uint16_t sum_pdu(ByteView pdu, bool cisco_odd) {
  std::uint32_t sum = 0;
  auto byte_at = [&](std::size_t i) -> std::uint32_t { return (i == 2 || i == 3) ? 0 : pdu[i]; };
  const std::size_t even = pdu.size() & ~std::size_t{1};
  for (std::size_t i = 0; i < even; i += 2) sum += (byte_at(i) << 8) | byte_at(i + 1);
  if (pdu.size() % 2 != 0) {
    const std::uint32_t last = byte_at(pdu.size() - 1);
    if (cisco_odd) {
      // Cisco adds the odd byte as a signed char in the low half (protocol-notes.md).
      sum += last < 0x80 ? last : 0xff00 + last - 1;
    } else {
      sum += last << 8;  // RFC 1071: pad with a zero byte
    }
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

Result<std::vector<CdpAddress>, DecodeError> decode_addresses(ByteView value) {
  Reader r(value);
  auto count = r.u32();
  if (!count) return unexpected(DecodeError::BadTlvLength);
  std::vector<CdpAddress> out;
  for (std::uint32_t i = 0; i < *count; ++i) {
    // Each entry needs at least 5 bytes, so a huge count fails on the data, not on memory.
    auto ptype = r.u8();
    auto plen = r.u8();
    if (!ptype || !plen) return unexpected(DecodeError::BadTlvValue);
    auto proto = r.bytes(*plen);
    auto alen = r.u16();
    if (!proto || !alen) return unexpected(DecodeError::BadTlvValue);
    auto addr = r.bytes(*alen);
    if (!addr) return unexpected(DecodeError::BadTlvValue);
    out.push_back(CdpAddress{*ptype, Bytes(proto->begin(), proto->end()), Bytes(addr->begin(), addr->end())});
  }
  return out;
}

void put_tlv(Bytes& out, std::uint16_t type, ByteView value) {
  if (value.size() > kMaxTlvValue) value = value.first(kMaxTlvValue);
  wire::put_u16(out, type);
  wire::put_u16(out, static_cast<std::uint16_t>(value.size() + kTlvHeaderSize));
  wire::put_bytes(out, value);
}

void put_text_tlv(Bytes& out, std::uint16_t type, const std::string& text) {
  put_tlv(out, type, ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

Bytes encode_addresses(const std::vector<CdpAddress>& addresses) {
  Bytes v;
  wire::put_u32(v, static_cast<std::uint32_t>(addresses.size()));
  for (const auto& a : addresses) {
    wire::put_u8(v, a.protocol_type);
    wire::put_u8(v, static_cast<std::uint8_t>(a.protocol.size()));
    wire::put_bytes(v, ByteView(a.protocol).first(std::min<std::size_t>(a.protocol.size(), 0xff)));
    wire::put_u16(v, static_cast<std::uint16_t>(a.address.size()));
    wire::put_bytes(v, a.address);
  }
  return v;
}

}  // namespace

std::string_view to_string(DecodeError e) {
  switch (e) {
    case DecodeError::Truncated: return "truncated";
    case DecodeError::WrongProtocol: return "wrong-protocol";
    case DecodeError::BadVersion: return "bad-version";
    case DecodeError::BadChecksum: return "bad-checksum";
    case DecodeError::TlvOverrun: return "tlv-overrun";
    case DecodeError::BadTlvLength: return "bad-tlv-length";
    case DecodeError::BadTlvValue: return "bad-tlv-value";
    case DecodeError::MissingTlv: return "missing-tlv";
  }
  return "?";
}

std::string capability_letters(std::uint32_t caps) {
  static constexpr std::pair<std::uint32_t, char> kLetters[] = {
      {capability::kRouter, 'R'},
      {capability::kTransparentBridge, 'T'},
      {capability::kSourceRouteBridge, 'B'},
      {capability::kSwitch, 'S'},
      {capability::kHost, 'H'},
      {capability::kIgmp, 'I'},
      {capability::kRepeater, 'r'},
      {capability::kPhone, 'P'},
      {capability::kRemotelyManaged, 'D'},
      {capability::kCvtaStpDispute, 'C'},
      {capability::kMacRelay, 'M'},
  };
  std::string out;
  for (const auto& [bit, letter] : kLetters) {
    if ((caps & bit) == 0) continue;
    if (!out.empty()) out.push_back(' ');
    out.push_back(letter);
  }
  return out;
}

CdpAddress CdpAddress::ipv4(std::uint32_t host_order) {
  return CdpAddress{1, Bytes{0xcc},
                    Bytes{static_cast<std::uint8_t>(host_order >> 24), static_cast<std::uint8_t>(host_order >> 16),
                          static_cast<std::uint8_t>(host_order >> 8), static_cast<std::uint8_t>(host_order)}};
}

std::string CdpAddress::to_string() const {
  if (is_ipv4()) return format_ipv4(std::span<const std::uint8_t>(address).first<4>());
  std::string out;
  char buf[3];
  for (auto b : address) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

std::uint16_t cdp_checksum(ByteView pdu) { return sum_pdu(pdu, true); }

Result<CdpPdu, DecodeError> decode_cdp_pdu(ByteView bytes) {
  Reader r(bytes);
  auto version = r.u8();
  auto ttl = r.u8();
  auto checksum = r.u16();
  if (!version || !ttl || !checksum) return unexpected(DecodeError::Truncated);
  if (*version != 1 && *version != 2) return unexpected(DecodeError::BadVersion);
  // Cisco's odd-byte rule is what real devices use; plain RFC 1071 is accepted too because some
  // non-Cisco senders compute it that way and the frame is otherwise intact.
  if (*checksum != sum_pdu(bytes, true) && *checksum != sum_pdu(bytes, false)) {
    return unexpected(DecodeError::BadChecksum);
  }

  CdpPdu pdu;
  pdu.version = *version;
  pdu.ttl_s = *ttl;
  pdu.checksum = *checksum;
  while (!r.empty()) {
    auto type = r.u16();
    auto length = r.u16();
    if (!type || !length) return unexpected(DecodeError::TlvOverrun);
    if (*length < kTlvHeaderSize) return unexpected(DecodeError::BadTlvLength);
    auto value_view = r.bytes(*length - kTlvHeaderSize);
    if (!value_view) return unexpected(DecodeError::TlvOverrun);
    const ByteView value = *value_view;
    Reader v(value);
    auto need = [&](std::size_t n) { return value.size() >= n; };

    switch (*type) {
      case kDeviceId: pdu.device_id = wire::to_text(value); break;
      case kPortId: pdu.port_id = wire::to_text(value); break;
      case kSoftwareVersion: pdu.software_version = wire::to_text(value); break;
      case kPlatform: pdu.platform = wire::to_text(value); break;
      case kAddresses:
      case kManagementAddresses: {
        auto list = decode_addresses(value);
        if (!list) return unexpected(list.error());
        (*type == kAddresses ? pdu.addresses : pdu.management_addresses) = std::move(list.value());
        break;
      }
      case kCapabilities:
        if (!need(4)) return unexpected(DecodeError::BadTlvLength);
        pdu.capabilities = *v.u32();
        break;
      case kNativeVlan:
        if (!need(2)) return unexpected(DecodeError::BadTlvLength);
        pdu.native_vlan = *v.u16();
        break;
      case kDuplex:
        if (!need(1)) return unexpected(DecodeError::BadTlvLength);
        pdu.full_duplex = *v.u8() != 0;
        break;
      case kVoipVlanReply: {
        if (!need(3)) return unexpected(DecodeError::BadTlvLength);
        ApplianceVlan a;
        a.appliance_type = *v.u8();
        a.vlan = *v.u16();
        pdu.voip_vlan_reply = a;
        break;
      }
      case kVoipVlanQuery: pdu.voip_vlan_query = Bytes(value.begin(), value.end()); break;
      case kPower:
        if (!need(2)) return unexpected(DecodeError::BadTlvLength);
        pdu.power_mw = *v.u16();
        break;
      case kMtu:
        if (!need(4)) return unexpected(DecodeError::BadTlvLength);
        pdu.mtu = *v.u32();
        break;
      case kTrustBitmap:
        if (!need(1)) return unexpected(DecodeError::BadTlvLength);
        pdu.trust_bitmap = *v.u8();
        break;
      case kUntrustedCos:
        if (!need(1)) return unexpected(DecodeError::BadTlvLength);
        pdu.untrusted_cos = *v.u8();
        break;
      case kPowerRequested: {
        // u16 request id, u16 management id, then whole u32 levels.
        if (!need(4) || (value.size() - 4) % 4 != 0) return unexpected(DecodeError::BadTlvLength);
        PowerRequested p;
        p.request_id = *v.u16();
        p.management_id = *v.u16();
        while (!v.empty()) p.levels_mw.push_back(*v.u32());
        pdu.power_requested = std::move(p);
        break;
      }
      case kPowerAvailable: {
        if (!need(8)) return unexpected(DecodeError::BadTlvLength);
        PowerAvailable p;
        p.request_id = *v.u16();
        p.management_id = *v.u16();
        p.available_mw = *v.u32();
        if (auto level = v.u32()) p.management_mw = *level;
        pdu.power_available = p;
        break;
      }
      default: pdu.unknown.push_back(RawTlv{*type, Bytes(value.begin(), value.end())}); break;
    }
  }
  return pdu;
}

Result<CdpFrame, DecodeError> decode_cdp(ByteView frame) {
  auto eth = wire::parse_ethernet(frame);
  if (!eth) return unexpected(DecodeError::Truncated);
  if (eth->destination != MacAddress(kCdpMulticast)) return unexpected(DecodeError::WrongProtocol);
  // 802.3: the type field is a length (<= 1500) covering LLC/SNAP + PDU; padding may follow.
  if (eth->type_or_length > 1500) return unexpected(DecodeError::WrongProtocol);
  const std::size_t length = eth->type_or_length;
  ByteView payload = frame.subspan(eth->payload_offset);
  if (length < kSnapSize || length > payload.size()) return unexpected(DecodeError::Truncated);
  for (std::size_t i = 0; i < kSnapSize; ++i) {
    if (payload[i] != kSnapHeader[i]) return unexpected(DecodeError::WrongProtocol);
  }
  auto pdu = decode_cdp_pdu(payload.subspan(kSnapSize, length - kSnapSize));
  if (!pdu) return unexpected(pdu.error());
  CdpFrame out;
  out.destination = eth->destination;
  out.source = eth->source;
  out.vlan_tag = eth->vlan_tag;
  out.pdu = std::move(pdu.value());
  return out;
}

Bytes encode_cdp_pdu(const CdpPdu& pdu) {
  Bytes out;
  wire::put_u8(out, pdu.version);
  wire::put_u8(out, pdu.ttl_s);
  wire::put_u16(out, 0);  // checksum, filled below

  Bytes v;
  auto scratch = [&v]() -> Bytes& {
    v.clear();
    return v;
  };
  if (pdu.device_id) put_text_tlv(out, kDeviceId, *pdu.device_id);
  if (pdu.addresses) put_tlv(out, kAddresses, encode_addresses(*pdu.addresses));
  if (pdu.port_id) put_text_tlv(out, kPortId, *pdu.port_id);
  if (pdu.capabilities) {
    wire::put_u32(scratch(), *pdu.capabilities);
    put_tlv(out, kCapabilities, v);
  }
  if (pdu.software_version) put_text_tlv(out, kSoftwareVersion, *pdu.software_version);
  if (pdu.platform) put_text_tlv(out, kPlatform, *pdu.platform);
  if (pdu.native_vlan) {
    wire::put_u16(scratch(), *pdu.native_vlan);
    put_tlv(out, kNativeVlan, v);
  }
  if (pdu.full_duplex) {
    wire::put_u8(scratch(), *pdu.full_duplex ? 1 : 0);
    put_tlv(out, kDuplex, v);
  }
  if (pdu.voip_vlan_reply) {
    wire::put_u8(scratch(), pdu.voip_vlan_reply->appliance_type);
    wire::put_u16(v, pdu.voip_vlan_reply->vlan);
    put_tlv(out, kVoipVlanReply, v);
  }
  if (pdu.voip_vlan_query) put_tlv(out, kVoipVlanQuery, *pdu.voip_vlan_query);
  if (pdu.power_mw) {
    wire::put_u16(scratch(), *pdu.power_mw);
    put_tlv(out, kPower, v);
  }
  if (pdu.mtu) {
    wire::put_u32(scratch(), *pdu.mtu);
    put_tlv(out, kMtu, v);
  }
  if (pdu.trust_bitmap) {
    wire::put_u8(scratch(), *pdu.trust_bitmap);
    put_tlv(out, kTrustBitmap, v);
  }
  if (pdu.untrusted_cos) {
    wire::put_u8(scratch(), *pdu.untrusted_cos);
    put_tlv(out, kUntrustedCos, v);
  }
  if (pdu.management_addresses) put_tlv(out, kManagementAddresses, encode_addresses(*pdu.management_addresses));
  if (pdu.power_requested) {
    wire::put_u16(scratch(), pdu.power_requested->request_id);
    wire::put_u16(v, pdu.power_requested->management_id);
    for (auto level : pdu.power_requested->levels_mw) wire::put_u32(v, level);
    put_tlv(out, kPowerRequested, v);
  }
  if (pdu.power_available) {
    wire::put_u16(scratch(), pdu.power_available->request_id);
    wire::put_u16(v, pdu.power_available->management_id);
    wire::put_u32(v, pdu.power_available->available_mw);
    wire::put_u32(v, pdu.power_available->management_mw);
    put_tlv(out, kPowerAvailable, v);
  }
  for (const auto& tlv : pdu.unknown) put_tlv(out, tlv.type, tlv.value);

  const std::uint16_t sum = cdp_checksum(out);
  out[2] = static_cast<std::uint8_t>(sum >> 8);
  out[3] = static_cast<std::uint8_t>(sum);
  return out;
}

Bytes encode_cdp(const CdpFrame& frame) {
  const Bytes pdu = encode_cdp_pdu(frame.pdu);
  Bytes out;
  out.reserve(14 + kSnapSize + pdu.size());
  wire::put_mac(out, frame.destination);
  wire::put_mac(out, frame.source);
  wire::put_u16(out, static_cast<std::uint16_t>(std::min<std::size_t>(kSnapSize + pdu.size(), 0xffff)));
  wire::put_bytes(out, ByteView(kSnapHeader, kSnapSize));
  wire::put_bytes(out, pdu);
  wire::pad_frame(out);
  return out;
}

}  // namespace ve::cdp
