// DHCP client frames: what a phone puts on the wire, and parsing what the server answers.
#include <gtest/gtest.h>

#include "phonesim/phonesim.hpp"

namespace ve::phonesim {
namespace {

const MacAddress kMac = *MacAddress::parse("00:11:22:33:44:55");

std::uint16_t be16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]); }
std::uint32_t be32(const Bytes& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

// Options of a BOOTP payload as code -> value (first occurrence).
std::map<int, Bytes> options_of(const Bytes& bootp) {
  std::map<int, Bytes> out;
  std::size_t i = 240;
  while (i < bootp.size() && bootp[i] != 255) {
    if (bootp[i] == 0) {
      ++i;
      continue;
    }
    const int code = bootp[i];
    const std::size_t len = bootp[i + 1];
    out.emplace(code, Bytes(bootp.begin() + static_cast<long>(i + 2), bootp.begin() + static_cast<long>(i + 2 + len)));
    i += 2 + len;
  }
  return out;
}

// A server reply as Kea would send it, built independently of the code under test.
Bytes server_reply(std::uint8_t type, std::uint32_t xid, const std::vector<std::pair<int, Bytes>>& options) {
  Bytes b(236, 0);
  b[0] = 2;
  b[1] = 1;
  b[2] = 6;
  for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<std::uint8_t>(xid >> (24 - 8 * i));
  const std::uint32_t yiaddr = 0x0a0a6464;  // 10.10.100.100
  for (int i = 0; i < 4; ++i) b[16 + i] = static_cast<std::uint8_t>(yiaddr >> (24 - 8 * i));
  std::copy(kMac.bytes().begin(), kMac.bytes().end(), b.begin() + 28);
  for (std::uint8_t c : {0x63, 0x82, 0x53, 0x63}) b.push_back(c);
  b.insert(b.end(), {53, 1, type});
  for (const auto& [code, value] : options) {
    b.push_back(static_cast<std::uint8_t>(code));
    b.push_back(static_cast<std::uint8_t>(value.size()));
    b.insert(b.end(), value.begin(), value.end());
  }
  b.push_back(255);
  return b;
}

// Ethernet + IPv4 + UDP around a payload (valid IP checksum).
Bytes wrap(const Bytes& payload, std::uint16_t dst_port = 68, bool tagged = false) {
  Bytes f{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1};
  if (tagged) f.insert(f.end(), {0x81, 0x00, 0x00, 0x64});
  f.insert(f.end(), {0x08, 0x00});
  const std::size_t ip = f.size();
  const auto total = static_cast<std::uint16_t>(28 + payload.size());
  f.insert(f.end(), {0x45,
                     0,
                     static_cast<std::uint8_t>(total >> 8),
                     static_cast<std::uint8_t>(total),
                     0,
                     0,
                     0,
                     0,
                     64,
                     17,
                     0,
                     0,
                     10,
                     10,
                     100,
                     1,
                     255,
                     255,
                     255,
                     255});
  const auto sum = internet_checksum(ByteView(f).subspan(ip, 20));
  f[ip + 10] = static_cast<std::uint8_t>(sum >> 8);
  f[ip + 11] = static_cast<std::uint8_t>(sum);
  const auto udp_len = static_cast<std::uint16_t>(8 + payload.size());
  f.insert(f.end(), {0, 67, static_cast<std::uint8_t>(dst_port >> 8), static_cast<std::uint8_t>(dst_port),
                     static_cast<std::uint8_t>(udp_len >> 8), static_cast<std::uint8_t>(udp_len), 0, 0});
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

TEST(DhcpCodec, DiscoverFrameCarriesThePhonesMacVendorClassAndPrl) {
  DhcpClientMessage m;
  m.type = DhcpMessageType::Discover;
  m.mac = kMac;
  m.xid = 0x12345678;
  m.vendor_class = vendor_class_for("CP-7841");
  const Bytes f = encode_dhcp_frame(m);

  // Ethernet: broadcast from the phone's own MAC.
  EXPECT_EQ(Bytes(f.begin(), f.begin() + 6), Bytes(6, 0xff));
  EXPECT_EQ(Bytes(f.begin() + 6, f.begin() + 12), Bytes(kMac.bytes().begin(), kMac.bytes().end()));
  EXPECT_EQ(be16(f, 12), 0x0800);
  // IPv4 0.0.0.0 -> 255.255.255.255, header checksum verifies, length matches.
  EXPECT_EQ(internet_checksum(ByteView(f).subspan(14, 20)), 0);
  EXPECT_EQ(be32(f, 26), 0u);
  EXPECT_EQ(be32(f, 30), 0xffffffffu);
  EXPECT_EQ(be16(f, 16), f.size() - 14);
  // UDP 68 -> 67 with a checksum that verifies over the pseudo-header.
  EXPECT_EQ(be16(f, 34), 68);
  EXPECT_EQ(be16(f, 36), 67);
  const std::uint16_t udp_len = be16(f, 38);
  EXPECT_EQ(udp_len, f.size() - 34);
  EXPECT_NE(be16(f, 40), 0);
  EXPECT_EQ(internet_checksum(ByteView(f).subspan(34), 0xffff + 0xffff + 17 + udp_len), 0);

  const Bytes bootp(f.begin() + 42, f.end());
  EXPECT_EQ(bootp[0], 1);  // BOOTREQUEST
  EXPECT_EQ(be32(bootp, 4), 0x12345678u);
  EXPECT_EQ(be16(bootp, 10), 0x8000);  // broadcast flag
  EXPECT_EQ(Bytes(bootp.begin() + 28, bootp.begin() + 34), Bytes(kMac.bytes().begin(), kMac.bytes().end()));
  EXPECT_EQ(be32(bootp, 236), 0x63825363u);
  EXPECT_GE(bootp.size(), 300u);
  auto opts = options_of(bootp);
  EXPECT_EQ(opts[53], Bytes{1});
  const std::string vc(opts[60].begin(), opts[60].end());
  EXPECT_EQ(vc, "Cisco Systems, Inc. IP Phone CP-7841");
  const Bytes& prl = opts[55];
  EXPECT_NE(std::find(prl.begin(), prl.end(), 150), prl.end());
  EXPECT_NE(std::find(prl.begin(), prl.end(), 66), prl.end());
  EXPECT_EQ(opts[61], (Bytes{1, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55}));
  EXPECT_EQ(opts.count(50), 0u);
  EXPECT_EQ(opts.count(54), 0u);
}

TEST(DhcpCodec, RequestNamesTheOfferedAddressAndTheServer) {
  DhcpClientMessage m;
  m.type = DhcpMessageType::Request;
  m.mac = kMac;
  m.requested_ip = 0x0a0a6464;
  m.server_id = 0x0a0a6401;
  const Bytes bootp = encode_dhcp_message(m);
  auto opts = options_of(bootp);
  EXPECT_EQ(opts[53], Bytes{3});
  EXPECT_EQ(opts[50], (Bytes{10, 10, 100, 100}));
  EXPECT_EQ(opts[54], (Bytes{10, 10, 100, 1}));
}

TEST(DhcpCodec, RenewalCarriesTheLeasedAddressAsCiaddrAndSource) {
  DhcpClientMessage m;
  m.type = DhcpMessageType::Request;
  m.mac = kMac;
  m.broadcast = false;
  m.ciaddr = 0x0a0a6464;
  const Bytes f = encode_dhcp_frame(m);
  EXPECT_EQ(be32(f, 26), 0x0a0a6464u);  // IPv4 source
  EXPECT_EQ(internet_checksum(ByteView(f).subspan(14, 20)), 0);
  const std::uint16_t udp_len = be16(f, 38);
  EXPECT_EQ(internet_checksum(ByteView(f).subspan(34), 0x0a0a + 0x6464 + 0xffff + 0xffff + 17 + udp_len), 0);
  const Bytes bootp(f.begin() + 42, f.end());
  EXPECT_EQ(be32(bootp, 12), 0x0a0a6464u);  // ciaddr
  EXPECT_EQ(be16(bootp, 10), 0);            // no broadcast flag
  auto opts = options_of(bootp);
  EXPECT_EQ(opts.count(50), 0u);  // RFC 2131 4.3.2: no requested address / server id when renewing
  EXPECT_EQ(opts.count(54), 0u);
}

TEST(DhcpCodec, DecodesAnOfferWithOption150And66) {
  const Bytes payload = server_reply(2, 0xabcdef01,
                                     {{1, {255, 255, 255, 0}},
                                      {3, {10, 10, 100, 1}},
                                      {6, {10, 10, 100, 1}},
                                      {51, {0, 0, 0x0e, 0x10}},
                                      {54, {10, 10, 100, 1}},
                                      {150, {10, 10, 100, 1, 10, 10, 100, 2}},
                                      {66, {'1', '0', '.', '1', '0', '.', '1', '0', '0', '.', '1', 0}}});
  for (bool tagged : {false, true}) {
    auto r = decode_dhcp_frame(wrap(payload, 68, tagged));
    ASSERT_TRUE(r) << to_string(r.error());
    EXPECT_EQ(r->type, DhcpMessageType::Offer);
    EXPECT_EQ(r->xid, 0xabcdef01u);
    EXPECT_EQ(r->chaddr, kMac);
    EXPECT_EQ(ipv4_to_string(r->yiaddr), "10.10.100.100");
    EXPECT_EQ(r->subnet_mask, 0xffffff00u);
    EXPECT_EQ(r->routers, std::vector<std::uint32_t>{0x0a0a6401});
    EXPECT_EQ(r->lease_time_s, 3600u);
    EXPECT_EQ(r->server_id, 0x0a0a6401u);
    EXPECT_EQ(r->tftp_servers, (std::vector<std::uint32_t>{0x0a0a6401, 0x0a0a6402}));
    EXPECT_EQ(r->tftp_server_name, "10.10.100.1");  // trailing NUL dropped
  }
}

TEST(DhcpCodec, DecodesANakWithItsMessage) {
  auto r = decode_dhcp_message(server_reply(6, 7, {{56, {'n', 'o'}}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, DhcpMessageType::Nak);
  EXPECT_EQ(r->message, "no");
}

TEST(DhcpCodec, RejectsMalformedReplies) {
  const Bytes good = server_reply(5, 1, {{54, {10, 10, 100, 1}}});
  ASSERT_TRUE(decode_dhcp_message(good));

  EXPECT_EQ(decode_dhcp_message(Bytes(good.begin(), good.begin() + 200)).error(), DhcpError::Truncated);
  Bytes request = good;
  request[0] = 1;
  EXPECT_EQ(decode_dhcp_message(request).error(), DhcpError::NotBootReply);
  Bytes cookie = good;
  cookie[236] = 0;
  EXPECT_EQ(decode_dhcp_message(cookie).error(), DhcpError::BadMagicCookie);
  Bytes overrun = good;
  overrun.pop_back();                              // drop the end option ...
  overrun.insert(overrun.end(), {150, 40, 1, 2});  // ... and claim 40 bytes that are not there
  EXPECT_EQ(decode_dhcp_message(overrun).error(), DhcpError::BadOption);
  Bytes bad_len = server_reply(5, 1, {{54, {10, 10, 100}}});
  EXPECT_EQ(decode_dhcp_message(bad_len).error(), DhcpError::BadOption);
  Bytes odd150 = server_reply(5, 1, {{150, {10, 10, 100, 1, 9}}});
  EXPECT_EQ(decode_dhcp_message(odd150).error(), DhcpError::BadOption);
  Bytes no_type(good.begin(), good.begin() + 240);
  no_type.push_back(255);
  EXPECT_EQ(decode_dhcp_message(no_type).error(), DhcpError::NoMessageType);

  EXPECT_EQ(decode_dhcp_frame(wrap(good, 67)).error(), DhcpError::NotToClientPort);
  Bytes bad_sum = wrap(good);
  bad_sum[14 + 10] ^= 0xff;
  EXPECT_EQ(decode_dhcp_frame(bad_sum).error(), DhcpError::BadIpHeader);
  Bytes arp = wrap(good);
  arp[12] = 0x08;
  arp[13] = 0x06;
  EXPECT_EQ(decode_dhcp_frame(arp).error(), DhcpError::NotIpv4Udp);
  EXPECT_EQ(decode_dhcp_frame(Bytes(10, 0)).error(), DhcpError::Truncated);
  Bytes short_ip = wrap(good);
  short_ip.resize(40);
  EXPECT_FALSE(decode_dhcp_frame(short_ip));
}

TEST(DhcpCodec, EveryTruncationOfAReplyIsRejectedWithoutReadingPastTheEnd) {
  const Bytes frame = wrap(server_reply(2, 9, {{150, {10, 10, 100, 1}}, {54, {10, 10, 100, 1}}}));
  for (std::size_t n = 0; n < frame.size(); ++n) {
    // A copy of exactly n bytes, so a sanitizer build sees any over-read.
    const Bytes cut(frame.begin(), frame.begin() + static_cast<long>(n));
    (void)decode_dhcp_frame(cut);
  }
  EXPECT_TRUE(decode_dhcp_frame(frame));
}

}  // namespace
}  // namespace ve::phonesim
