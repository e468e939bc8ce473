// LLDP (IEEE 802.1AB) with the LLDP-MED extensions (TIA-1057): pure codec. Layouts checked against
// Wireshark's packet-lldp.c and lldpd's lldp.c (read, not copied).
#include <arpa/inet.h>

#include <cstdio>

#include <algorithm>
#include <iterator>
#include <utility>

#include "cdp/cdp.hpp"
#include "cdp/wire.hpp"
#include "ve/ipv4.hpp"

namespace ve::cdp {
namespace {

using wire::Reader;

constexpr std::size_t kMaxTlvValue = 0x1ff;  // 9-bit length
constexpr std::uint8_t kMedOui[3] = {0x00, 0x12, 0xbb};

enum LldpType : std::uint8_t {
  kEnd = 0,
  kChassisId = 1,
  kPortId = 2,
  kTtl = 3,
  kPortDescription = 4,
  kSystemName = 5,
  kSystemDescription = 6,
  kSystemCapabilities = 7,
  kManagementAddress = 8,
  kOrgSpecific = 127,
};

enum MedSubtype : std::uint8_t {
  kMedCapabilities = 1,
  kMedNetworkPolicy = 2,
  kMedExtendedPower = 4,
  kMedHardwareRevision = 5,
  kMedFirmwareRevision = 6,
  kMedSoftwareRevision = 7,
  kMedSerialNumber = 8,
  kMedManufacturer = 9,
  kMedModel = 10,
  kMedAssetId = 11,
};

std::string dotted(ByteView v) { return format_ipv4(v.first<4>()); }

std::string hex(ByteView v) {
  std::string out;
  char buf[3];
  for (auto b : v) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

bool printable(ByteView v) {
  return std::all_of(v.begin(), v.end(), [](std::uint8_t b) { return b >= 0x20 && b < 0x7f; });
}

// Decodes an organisationally specific TLV of the MED OUI into `pdu`; false if it is not MED.
Result<bool, DecodeError> decode_med(ByteView value, LldpPdu& pdu) {
  if (value.size() < 4 || value[0] != kMedOui[0] || value[1] != kMedOui[1] || value[2] != kMedOui[2]) {
    return false;
  }
  const std::uint8_t subtype = value[3];
  Reader r(value.subspan(4));
  auto text = [&r]() { return wire::to_text(r.rest()); };
  switch (subtype) {
    case kMedCapabilities: {
      if (r.remaining() < 3) return unexpected(DecodeError::BadTlvLength);
      MedCapabilities c;
      c.capabilities = *r.u16();
      c.device_type = static_cast<MedDeviceType>(*r.u8());
      pdu.med_capabilities = c;
      return true;
    }
    case kMedNetworkPolicy: {
      if (r.remaining() < 4) return unexpected(DecodeError::BadTlvLength);
      const std::uint32_t word = *r.u32();
      NetworkPolicy p;
      p.application = static_cast<std::uint8_t>(word >> 24);
      p.unknown = (word >> 23) & 1;
      p.tagged = (word >> 22) & 1;
      p.vlan = static_cast<std::uint16_t>((word >> 9) & 0xfff);
      p.l2_priority = static_cast<std::uint8_t>((word >> 6) & 0x7);
      p.dscp = static_cast<std::uint8_t>(word & 0x3f);
      pdu.network_policies.push_back(p);
      return true;
    }
    case kMedExtendedPower: {
      if (r.remaining() < 3) return unexpected(DecodeError::BadTlvLength);
      const std::uint8_t flags = *r.u8();
      ExtendedPower p;
      p.power_type = static_cast<std::uint8_t>(flags >> 6);
      p.source = static_cast<std::uint8_t>((flags >> 4) & 0x3);
      p.priority = static_cast<std::uint8_t>(flags & 0xf);
      p.power_dw = *r.u16();
      pdu.extended_power = p;
      return true;
    }
    case kMedHardwareRevision: pdu.inventory.hardware_revision = text(); return true;
    case kMedFirmwareRevision: pdu.inventory.firmware_revision = text(); return true;
    case kMedSoftwareRevision: pdu.inventory.software_revision = text(); return true;
    case kMedSerialNumber: pdu.inventory.serial_number = text(); return true;
    case kMedManufacturer: pdu.inventory.manufacturer = text(); return true;
    case kMedModel: pdu.inventory.model = text(); return true;
    case kMedAssetId: pdu.inventory.asset_id = text(); return true;
    default: return false;  // location and future subtypes are kept raw
  }
}

Result<LldpManagementAddress, DecodeError> decode_management_address(ByteView value) {
  Reader r(value);
  auto string_length = r.u8();  // subtype + address
  if (!string_length || *string_length < 2 || *string_length > 32) return unexpected(DecodeError::BadTlvValue);
  LldpManagementAddress m;
  auto subtype = r.u8();
  auto address = r.bytes(*string_length - 1u);
  auto if_subtype = r.u8();
  auto if_number = r.u32();
  auto oid_length = r.u8();
  if (!subtype || !address || !if_subtype || !if_number || !oid_length) {
    return unexpected(DecodeError::BadTlvValue);
  }
  auto oid = r.bytes(*oid_length);
  if (!oid) return unexpected(DecodeError::BadTlvValue);
  m.subtype = *subtype;
  m.address.assign(address->begin(), address->end());
  m.interface_subtype = *if_subtype;
  m.interface_number = *if_number;
  m.oid.assign(oid->begin(), oid->end());
  return m;
}

void put_tlv(Bytes& out, std::uint8_t type, ByteView value) {
  if (value.size() > kMaxTlvValue) value = value.first(kMaxTlvValue);
  wire::put_u16(out, static_cast<std::uint16_t>((type << 9) | value.size()));
  wire::put_bytes(out, value);
}

void put_text_tlv(Bytes& out, std::uint8_t type, const std::string& s) {
  put_tlv(out, type, ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

Bytes med_header(std::uint8_t subtype) { return Bytes{kMedOui[0], kMedOui[1], kMedOui[2], subtype}; }

void put_med_text(Bytes& out, std::uint8_t subtype, const std::optional<std::string>& s) {
  if (!s) return;
  Bytes v = med_header(subtype);
  wire::put_string(v, *s);  // TIA-1057 says at most 32 bytes; ours are short, received ones kept whole
  put_tlv(out, kOrgSpecific, v);
}

}  // namespace

std::string address_to_string(std::uint8_t family, ByteView address) {
  if (family == address_family::kIpv4 && address.size() == 4) return dotted(address);
  if (family == address_family::kIpv6 && address.size() == 16) {
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, address.data(), buf, sizeof buf) != nullptr) return buf;
  }
  if (family == address_family::kMac && address.size() == 6) return wire::mac_at(address).to_string();
  return "family " + std::to_string(family) + ": " + hex(address);
}

std::string lldp_capability_letters(std::uint16_t caps) {
  // IOS "show lldp neighbors": (R) Router, (B) Bridge, (T) Telephone, (C) DOCSIS Cable Device,
  // (W) WLAN Access Point, (P) Repeater, (S) Station, (O) Other.
  static constexpr std::pair<std::uint16_t, char> kLetters[] = {
      {lldp_capability::kRouter, 'R'},          {lldp_capability::kBridge, 'B'},
      {lldp_capability::kTelephone, 'T'},       {lldp_capability::kDocsis, 'C'},
      {lldp_capability::kWlanAccessPoint, 'W'}, {lldp_capability::kRepeater, 'P'},
      {lldp_capability::kStation, 'S'},         {lldp_capability::kOther, 'O'}};
  std::string out;
  for (const auto& [bit, letter] : kLetters) {
    if ((caps & bit) == 0) continue;
    if (!out.empty()) out += ' ';
    out += letter;
  }
  return out;
}

std::vector<std::string> lldp_capability_names(std::uint16_t caps) {
  static constexpr const char* kNames[] = {
      "Other",  "Repeater", "Bridge", "WLAN access point", "Router", "Telephone", "DOCSIS cable device", "Station only",
      "C-VLAN", "S-VLAN",   "TPMR"};
  std::vector<std::string> out;
  for (unsigned bit = 0; bit < 16; ++bit) {
    if ((caps & (1u << bit)) == 0) continue;
    out.emplace_back(bit < std::size(kNames) ? std::string(kNames[bit]) : "bit " + std::to_string(bit));
  }
  return out;
}

std::string LldpId::to_string(bool is_chassis) const {
  const std::uint8_t mac_subtype = is_chassis ? 4 : 3;
  const std::uint8_t network_subtype = is_chassis ? 5 : 4;
  if (subtype == mac_subtype && value.size() == 6) return wire::mac_at(value).to_string();
  if (subtype == network_subtype && !value.empty()) return address_to_string(value[0], ByteView(value).subspan(1));
  // Names (interface, local, chassis component) are text; anything else is shown as hex.
  if (printable(value)) return wire::to_text(value);
  return hex(value);
}

std::string LldpManagementAddress::to_string() const { return address_to_string(subtype, address); }

Result<LldpPdu, DecodeError> decode_lldp_pdu(ByteView bytes) {
  Reader r(bytes);
  LldpPdu pdu;
  int mandatory_seen = 0;  // chassis, port, ttl must be the first three TLVs
  while (!r.empty()) {
    auto header = r.u16();
    if (!header) return unexpected(DecodeError::TlvOverrun);
    const auto type = static_cast<std::uint8_t>(*header >> 9);
    const std::size_t length = *header & 0x1ff;
    auto value_view = r.bytes(length);
    if (!value_view) return unexpected(DecodeError::TlvOverrun);
    const ByteView value = *value_view;

    if (type == kEnd) {
      if (length != 0) return unexpected(DecodeError::BadTlvLength);
      break;
    }
    if (mandatory_seen < 3) {
      if (type != mandatory_seen + 1) return unexpected(DecodeError::MissingTlv);
      ++mandatory_seen;
    } else if (type == kChassisId || type == kPortId || type == kTtl) {
      return unexpected(DecodeError::BadTlvValue);  // a second copy: 802.1AB says discard
    }

    switch (type) {
      case kChassisId:
      case kPortId: {
        if (length < 2 || length > 256) return unexpected(DecodeError::BadTlvLength);
        LldpId id{value[0], Bytes(value.begin() + 1, value.end())};
        (type == kChassisId ? pdu.chassis_id : pdu.port_id) = std::move(id);
        break;
      }
      case kTtl:
        if (length < 2) return unexpected(DecodeError::BadTlvLength);
        pdu.ttl_s = static_cast<std::uint16_t>((value[0] << 8) | value[1]);
        break;
      case kPortDescription: pdu.port_description = wire::to_text(value); break;
      case kSystemName: pdu.system_name = wire::to_text(value); break;
      case kSystemDescription: pdu.system_description = wire::to_text(value); break;
      case kSystemCapabilities: {
        if (length < 4) return unexpected(DecodeError::BadTlvLength);
        Reader v(value);
        pdu.system_capabilities = *v.u16();
        pdu.enabled_capabilities = *v.u16();
        break;
      }
      case kManagementAddress: {
        auto m = decode_management_address(value);
        if (!m) return unexpected(m.error());
        pdu.management_addresses.push_back(std::move(m.value()));
        break;
      }
      case kOrgSpecific: {
        if (length < 4) return unexpected(DecodeError::BadTlvLength);
        auto med = decode_med(value, pdu);
        if (!med) return unexpected(med.error());
        if (!med.value()) pdu.unknown.push_back(RawTlv{type, Bytes(value.begin(), value.end())});
        break;
      }
      default: pdu.unknown.push_back(RawTlv{type, Bytes(value.begin(), value.end())}); break;
    }
  }
  if (mandatory_seen < 3) return unexpected(DecodeError::MissingTlv);
  return pdu;
}

Result<LldpFrame, DecodeError> decode_lldp(ByteView frame) {
  auto eth = wire::parse_ethernet(frame);
  if (!eth) return unexpected(DecodeError::Truncated);
  if (eth->type_or_length != kLldpEthertype) return unexpected(DecodeError::WrongProtocol);
  auto pdu = decode_lldp_pdu(frame.subspan(eth->payload_offset));
  if (!pdu) return unexpected(pdu.error());
  LldpFrame out;
  out.destination = eth->destination;
  out.source = eth->source;
  out.vlan_tag = eth->vlan_tag;
  out.pdu = std::move(pdu.value());
  return out;
}

Bytes encode_lldp_pdu(const LldpPdu& pdu) {
  Bytes out;
  Bytes v;
  auto id_value = [&v](const LldpId& id) -> Bytes& {
    v.clear();
    wire::put_u8(v, id.subtype);
    wire::put_bytes(v, ByteView(id.value).first(std::min<std::size_t>(id.value.size(), 255)));
    return v;
  };
  put_tlv(out, kChassisId, id_value(pdu.chassis_id));
  put_tlv(out, kPortId, id_value(pdu.port_id));
  v.clear();
  wire::put_u16(v, pdu.ttl_s);
  put_tlv(out, kTtl, v);
  if (pdu.port_description) put_text_tlv(out, kPortDescription, *pdu.port_description);
  if (pdu.system_name) put_text_tlv(out, kSystemName, *pdu.system_name);
  if (pdu.system_description) put_text_tlv(out, kSystemDescription, *pdu.system_description);
  if (pdu.system_capabilities) {
    v.clear();
    wire::put_u16(v, *pdu.system_capabilities);
    wire::put_u16(v, pdu.enabled_capabilities.value_or(0));
    put_tlv(out, kSystemCapabilities, v);
  }
  for (const auto& m : pdu.management_addresses) {
    v.clear();
    const std::size_t addr_len = std::min<std::size_t>(m.address.size(), 31);
    wire::put_u8(v, static_cast<std::uint8_t>(addr_len + 1));
    wire::put_u8(v, m.subtype);
    wire::put_bytes(v, ByteView(m.address).first(addr_len));
    wire::put_u8(v, m.interface_subtype);
    wire::put_u32(v, m.interface_number);
    const std::size_t oid_len = std::min<std::size_t>(m.oid.size(), 255);
    wire::put_u8(v, static_cast<std::uint8_t>(oid_len));
    wire::put_bytes(v, ByteView(m.oid).first(oid_len));
    put_tlv(out, kManagementAddress, v);
  }
  if (pdu.med_capabilities) {
    v = med_header(kMedCapabilities);
    wire::put_u16(v, pdu.med_capabilities->capabilities);
    wire::put_u8(v, static_cast<std::uint8_t>(pdu.med_capabilities->device_type));
    put_tlv(out, kOrgSpecific, v);
  }
  for (const auto& p : pdu.network_policies) {
    v = med_header(kMedNetworkPolicy);
    const std::uint32_t word = (std::uint32_t{p.application} << 24) | (std::uint32_t{p.unknown} << 23) |
                               (std::uint32_t{p.tagged} << 22) | (std::uint32_t{p.vlan & 0xfffu} << 9) |
                               (std::uint32_t{p.l2_priority & 0x7u} << 6) | (p.dscp & 0x3fu);
    wire::put_u32(v, word);
    put_tlv(out, kOrgSpecific, v);
  }
  if (pdu.extended_power) {
    v = med_header(kMedExtendedPower);
    const auto& p = *pdu.extended_power;
    wire::put_u8(v,
                 static_cast<std::uint8_t>(((p.power_type & 0x3) << 6) | ((p.source & 0x3) << 4) | (p.priority & 0xf)));
    wire::put_u16(v, p.power_dw);
    put_tlv(out, kOrgSpecific, v);
  }
  put_med_text(out, kMedHardwareRevision, pdu.inventory.hardware_revision);
  put_med_text(out, kMedFirmwareRevision, pdu.inventory.firmware_revision);
  put_med_text(out, kMedSoftwareRevision, pdu.inventory.software_revision);
  put_med_text(out, kMedSerialNumber, pdu.inventory.serial_number);
  put_med_text(out, kMedManufacturer, pdu.inventory.manufacturer);
  put_med_text(out, kMedModel, pdu.inventory.model);
  put_med_text(out, kMedAssetId, pdu.inventory.asset_id);
  for (const auto& tlv : pdu.unknown) put_tlv(out, static_cast<std::uint8_t>(tlv.type & 0x7f), tlv.value);
  put_tlv(out, kEnd, {});
  return out;
}

Bytes encode_lldp(const LldpFrame& frame) {
  Bytes out;
  wire::put_mac(out, frame.destination);
  wire::put_mac(out, frame.source);
  wire::put_u16(out, kLldpEthertype);
  wire::put_bytes(out, encode_lldp_pdu(frame.pdu));
  wire::pad_frame(out);
  return out;
}

}  // namespace ve::cdp
