// DHCP client frames as a phone sends them, and the server's replies. Pure: bytes in, values out.
#include <algorithm>
#include <cstdio>

#include "phonesim/phonesim.hpp"

namespace ve::phonesim {

namespace {

constexpr std::size_t kEthernetHeader = 14;
constexpr std::size_t kIpv4Header = 20;
constexpr std::size_t kUdpHeader = 8;
constexpr std::size_t kBootpFixed = 236;  // op .. file, before the magic cookie
constexpr std::uint32_t kMagicCookie = 0x63825363;
constexpr std::uint16_t kClientPort = 68;
constexpr std::uint16_t kServerPort = 67;

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(v >> shift));
}
void set16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
std::uint16_t get16(ByteView b, std::size_t at) { return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]); }
std::uint32_t get32(ByteView b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) |
         std::uint32_t{b[at + 3]};
}

void option(Bytes& b, std::uint8_t code, ByteView value) {
  // Longer values would need RFC 3396 splitting; nothing a phone sends is that long.
  const auto n = std::min<std::size_t>(value.size(), 255);
  b.push_back(code);
  b.push_back(static_cast<std::uint8_t>(n));
  b.insert(b.end(), value.begin(), value.begin() + static_cast<std::ptrdiff_t>(n));
}
void option32(Bytes& b, std::uint8_t code, std::uint32_t v) {
  Bytes value;
  put32(value, v);
  option(b, code, value);
}
ByteView text_view(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

}  // namespace

std::string_view to_string(DhcpMessageType t) {
  switch (t) {
    case DhcpMessageType::Discover: return "DISCOVER";
    case DhcpMessageType::Offer: return "OFFER";
    case DhcpMessageType::Request: return "REQUEST";
    case DhcpMessageType::Decline: return "DECLINE";
    case DhcpMessageType::Ack: return "ACK";
    case DhcpMessageType::Nak: return "NAK";
    case DhcpMessageType::Release: return "RELEASE";
    case DhcpMessageType::Inform: return "INFORM";
  }
  return "?";
}

std::string_view to_string(DhcpError e) {
  switch (e) {
    case DhcpError::Truncated: return "truncated";
    case DhcpError::NotIpv4Udp: return "not IPv4/UDP";
    case DhcpError::NotToClientPort: return "not to UDP port 68";
    case DhcpError::BadIpHeader: return "bad IPv4 header";
    case DhcpError::NotBootReply: return "not a BOOTREPLY";
    case DhcpError::BadMagicCookie: return "bad magic cookie";
    case DhcpError::BadOption: return "bad option";
    case DhcpError::NoMessageType: return "no message type";
  }
  return "?";
}

std::string vendor_class_for(std::string_view model) { return "Cisco Systems, Inc. IP Phone " + std::string(model); }

std::uint16_t internet_checksum(ByteView data, std::uint32_t initial) {
  std::uint32_t sum = initial;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += static_cast<std::uint32_t>((data[i] << 8) | data[i + 1]);
  if (i < data.size()) sum += static_cast<std::uint32_t>(data[i] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

Bytes encode_dhcp_message(const DhcpClientMessage& m) {
  Bytes b;
  b.reserve(300);
  b.push_back(1);  // BOOTREQUEST
  b.push_back(1);  // Ethernet
  b.push_back(6);
  b.push_back(0);  // hops
  put32(b, m.xid);
  put16(b, m.secs);
  put16(b, m.broadcast ? 0x8000 : 0);
  put32(b, m.ciaddr);
  put32(b, 0);  // yiaddr
  put32(b, 0);  // siaddr
  put32(b, 0);  // giaddr
  b.insert(b.end(), m.mac.bytes().begin(), m.mac.bytes().end());
  b.resize(b.size() + 10 + 64 + 128, 0);  // chaddr padding, sname, file
  put32(b, kMagicCookie);

  const std::uint8_t type = static_cast<std::uint8_t>(m.type);
  option(b, kOptionMessageType, ByteView(&type, 1));
  Bytes client_id{1};
  client_id.insert(client_id.end(), m.mac.bytes().begin(), m.mac.bytes().end());
  option(b, kOptionClientId, client_id);
  if (m.requested_ip) option32(b, kOptionRequestedIp, *m.requested_ip);
  if (m.server_id) option32(b, kOptionServerId, *m.server_id);
  if (!m.hostname.empty()) option(b, kOptionHostname, text_view(m.hostname));
  if (!m.vendor_class.empty()) option(b, kOptionVendorClass, text_view(m.vendor_class));
  if (!m.parameter_list.empty()) option(b, kOptionPrl, m.parameter_list);
  b.push_back(255);
  // Some servers drop requests shorter than a BOOTP packet (300 bytes).
  if (b.size() < 300) b.resize(300, 0);
  return b;
}

Bytes encode_dhcp_frame(const DhcpClientMessage& m) {
  const Bytes payload = encode_dhcp_message(m);
  Bytes f;
  f.reserve(kEthernetHeader + kIpv4Header + kUdpHeader + payload.size());
  for (int i = 0; i < 6; ++i) f.push_back(0xff);
  f.insert(f.end(), m.mac.bytes().begin(), m.mac.bytes().end());
  put16(f, 0x0800);

  const std::size_t ip = f.size();
  const auto udp_length = static_cast<std::uint16_t>(kUdpHeader + payload.size());
  f.push_back(0x45);
  f.push_back(0x10);  // low delay, as ISC dhclient does
  put16(f, static_cast<std::uint16_t>(kIpv4Header + udp_length));
  put16(f, 0);           // id
  put16(f, 0);           // flags, fragment offset
  f.push_back(64);       // TTL
  f.push_back(17);       // UDP
  put16(f, 0);           // checksum, below
  put32(f, m.ciaddr);    // 0.0.0.0 until the phone has a lease
  put32(f, 0xffffffff);  // 255.255.255.255
  set16(f, ip + 10, internet_checksum(ByteView(f).subspan(ip, kIpv4Header)));

  const std::size_t udp = f.size();
  put16(f, kClientPort);
  put16(f, kServerPort);
  put16(f, udp_length);
  put16(f, 0);
  f.insert(f.end(), payload.begin(), payload.end());
  // Pseudo-header sum: source, destination 0xffffffff, protocol, UDP length.
  const std::uint32_t pseudo = (m.ciaddr >> 16) + (m.ciaddr & 0xffff) + 0xffff + 0xffff + 17 + udp_length;
  std::uint16_t sum = internet_checksum(ByteView(f).subspan(udp), pseudo);
  if (sum == 0) sum = 0xffff;  // 0 means "no checksum"
  set16(f, udp + 6, sum);
  return f;
}

Result<DhcpServerMessage, DhcpError> decode_dhcp_message(ByteView b) {
  if (b.size() < kBootpFixed + 4) return unexpected(DhcpError::Truncated);
  if (b[0] != 2 || b[1] != 1 || b[2] != 6) return unexpected(DhcpError::NotBootReply);
  if (get32(b, kBootpFixed) != kMagicCookie) return unexpected(DhcpError::BadMagicCookie);
  DhcpServerMessage m;
  m.xid = get32(b, 4);
  m.yiaddr = get32(b, 16);
  m.siaddr = get32(b, 20);
  std::array<std::uint8_t, 6> chaddr{};
  std::copy_n(b.begin() + 28, 6, chaddr.begin());
  m.chaddr = MacAddress(chaddr);

  std::optional<std::uint8_t> type;
  auto addresses = [](ByteView v, std::vector<std::uint32_t>& out) {
    if (v.empty() || v.size() % 4 != 0) return false;
    for (std::size_t i = 0; i < v.size(); i += 4) out.push_back(get32(v, i));
    return true;
  };
  auto one_address = [](ByteView v, std::optional<std::uint32_t>& out) {
    if (v.size() != 4) return false;
    out = get32(v, 0);
    return true;
  };
  std::size_t i = kBootpFixed + 4;
  while (i < b.size()) {
    const std::uint8_t code = b[i++];
    if (code == 0) continue;  // pad
    if (code == 255) break;   // end
    if (i >= b.size()) return unexpected(DhcpError::BadOption);
    const std::size_t len = b[i++];
    if (i + len > b.size()) return unexpected(DhcpError::BadOption);
    const ByteView v = b.subspan(i, len);
    i += len;
    ++m.option_count;
    bool ok = true;
    switch (code) {
      case kOptionMessageType:
        ok = len == 1;
        if (ok) type = v[0];
        break;
      case kOptionSubnetMask: ok = one_address(v, m.subnet_mask); break;
      case kOptionServerId: ok = one_address(v, m.server_id); break;
      case kOptionRouter: ok = addresses(v, m.routers); break;
      case kOptionDns: ok = addresses(v, m.dns); break;
      case kOptionTftpServers: ok = addresses(v, m.tftp_servers); break;
      case kOptionLeaseTime: {
        std::optional<std::uint32_t> t;
        ok = one_address(v, t);
        m.lease_time_s = t;
        break;
      }
      case kOptionTftpServerName:
        m.tftp_server_name = std::string(v.begin(), v.end());
        // Some servers NUL-terminate text options.
        while (!m.tftp_server_name->empty() && m.tftp_server_name->back() == '\0') m.tftp_server_name->pop_back();
        break;
      case kOptionMessage: m.message = std::string(v.begin(), v.end()); break;
      default: break;  // everything else is not needed by a phone
    }
    if (!ok) return unexpected(DhcpError::BadOption);
  }
  if (!type) return unexpected(DhcpError::NoMessageType);
  if (*type < 1 || *type > 8) return unexpected(DhcpError::BadOption);
  m.type = static_cast<DhcpMessageType>(*type);
  return m;
}

Result<DhcpServerMessage, DhcpError> decode_dhcp_frame(ByteView f) {
  if (f.size() < kEthernetHeader) return unexpected(DhcpError::Truncated);
  std::size_t at = 12;
  std::uint16_t ethertype = get16(f, at);
  if (ethertype == 0x8100) {
    if (f.size() < kEthernetHeader + 4) return unexpected(DhcpError::Truncated);
    at += 4;
    ethertype = get16(f, at);
  }
  if (ethertype != 0x0800) return unexpected(DhcpError::NotIpv4Udp);
  const std::size_t ip = at + 2;
  if (f.size() < ip + kIpv4Header) return unexpected(DhcpError::Truncated);
  if ((f[ip] >> 4) != 4) return unexpected(DhcpError::NotIpv4Udp);
  const std::size_t ihl = std::size_t{f[ip] & 0x0fu} * 4;
  if (ihl < kIpv4Header || f.size() < ip + ihl) return unexpected(DhcpError::BadIpHeader);
  if (f[ip + 9] != 17) return unexpected(DhcpError::NotIpv4Udp);
  const std::size_t total = get16(f, ip + 2);
  if (total < ihl + kUdpHeader || f.size() < ip + total) return unexpected(DhcpError::BadIpHeader);
  if (internet_checksum(f.subspan(ip, ihl)) != 0) return unexpected(DhcpError::BadIpHeader);
  if ((get16(f, ip + 6) & 0x3fff) != 0) return unexpected(DhcpError::BadIpHeader);  // fragments: not for us
  const std::size_t udp = ip + ihl;
  if (get16(f, udp + 2) != kClientPort) return unexpected(DhcpError::NotToClientPort);
  const std::size_t udp_length = get16(f, udp + 4);
  if (udp_length < kUdpHeader || udp + udp_length > ip + total) return unexpected(DhcpError::Truncated);
  return decode_dhcp_message(f.subspan(udp + kUdpHeader, udp_length - kUdpHeader));
}

}  // namespace ve::phonesim
