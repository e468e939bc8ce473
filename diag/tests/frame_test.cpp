#include <gtest/gtest.h>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

const MacAddress kPhone = *MacAddress::parse("00:1e:7a:00:00:01");
const MacAddress kBox = *MacAddress::parse("02:00:00:00:00:01");

void put_mac(Bytes& f, const MacAddress& m) { f.insert(f.end(), m.bytes().begin(), m.bytes().end()); }
void put16(Bytes& f, std::uint16_t v) {
  f.push_back(static_cast<std::uint8_t>(v >> 8));
  f.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& f, std::uint32_t v) {
  put16(f, static_cast<std::uint16_t>(v >> 16));
  put16(f, static_cast<std::uint16_t>(v));
}

// Ethernet + IPv4 + UDP around `payload`.
Bytes udp_frame(const MacAddress& dst, const MacAddress& src, std::uint32_t ip_src, std::uint32_t ip_dst,
                std::uint16_t sport, std::uint16_t dport, const Bytes& payload, bool tagged = false) {
  Bytes f;
  put_mac(f, dst);
  put_mac(f, src);
  if (tagged) {
    put16(f, 0x8100);
    put16(f, 100);
  }
  put16(f, 0x0800);
  const auto total = static_cast<std::uint16_t>(20 + 8 + payload.size());
  f.push_back(0x45);
  f.push_back(0);
  put16(f, total);
  put32(f, 0);
  f.push_back(64);
  f.push_back(17);
  put16(f, 0);
  put32(f, ip_src);
  put32(f, ip_dst);
  put16(f, sport);
  put16(f, dport);
  put16(f, static_cast<std::uint16_t>(8 + payload.size()));
  put16(f, 0);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

Bytes bootp(std::uint8_t op, std::uint8_t type, const MacAddress& chaddr, std::uint32_t yiaddr) {
  Bytes b(236, 0);
  b[0] = op;
  b[1] = 1;
  b[2] = 6;
  for (int i = 0; i < 4; ++i) b[16 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(yiaddr >> (24 - 8 * i));
  for (std::size_t i = 0; i < 6; ++i) b[28 + i] = chaddr.bytes()[i];
  put32(b, 0x63825363);
  b.insert(b.end(), {0, 0, 53, 1, type, 255});  // two pads, then message type
  return b;
}

TEST(FrameTest, DhcpAckBroadcastNamesTheClientAndItsAddress) {
  auto f = udp_frame(*MacAddress::parse("ff:ff:ff:ff:ff:ff"), kBox, 0x0a0a6401, 0xffffffff, 67, 68,
                     bootp(2, 5, kPhone, 0x0a0a6464));
  auto info = classify_frame(f);
  ASSERT_TRUE(info && info->dhcp);
  EXPECT_EQ(info->dhcp->op, 2);
  EXPECT_EQ(info->dhcp->message_type, 5);
  EXPECT_EQ(info->dhcp->chaddr, kPhone);
  EXPECT_EQ(info->dhcp->yiaddr, 0x0a0a6464u);
  EXPECT_TRUE(is_multicast(info->destination));
}

TEST(FrameTest, TaggedDiscover) {
  auto f =
      udp_frame(*MacAddress::parse("ff:ff:ff:ff:ff:ff"), kPhone, 0, 0xffffffff, 68, 67, bootp(1, 1, kPhone, 0), true);
  auto info = classify_frame(f);
  ASSERT_TRUE(info && info->dhcp);
  EXPECT_EQ(info->vlan, 100);
  EXPECT_EQ(info->dhcp->message_type, 1);
  EXPECT_EQ(info->source, kPhone);
}

TEST(FrameTest, OptionRunningPastTheEndIsIgnored) {
  auto payload = bootp(1, 1, kPhone, 0);
  payload.resize(payload.size() - 1);  // drop END
  payload.back() = 200;                // option 53's value byte becomes... a length running off the end
  payload.insert(payload.end(), {61, 250, 1});
  auto info = classify_frame(udp_frame(kBox, kPhone, 1, 2, 68, 67, payload));
  ASSERT_TRUE(info && info->dhcp);
  EXPECT_EQ(info->dhcp->chaddr, kPhone);
}

TEST(FrameTest, ArpAndCdpAndLldp) {
  Bytes arp;
  put_mac(arp, *MacAddress::parse("ff:ff:ff:ff:ff:ff"));
  put_mac(arp, kBox);
  put16(arp, 0x0806);
  put16(arp, 1);
  put16(arp, 0x0800);
  arp.push_back(6);
  arp.push_back(4);
  put16(arp, 1);
  put_mac(arp, kBox);
  put32(arp, 0x0a0a6401);
  put_mac(arp, MacAddress{});
  put32(arp, 0x0a0a6464);
  auto a = classify_frame(arp);
  ASSERT_TRUE(a && a->arp);
  EXPECT_EQ(a->arp_sender_mac, kBox);
  EXPECT_EQ(a->arp_target_ip, 0x0a0a6464u);

  Bytes cdp;
  put_mac(cdp, *MacAddress::parse("01:00:0c:cc:cc:cc"));
  put_mac(cdp, kPhone);
  put16(cdp, 30);
  cdp.insert(cdp.end(), {0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00, 0x02, 0xb4});
  auto c = classify_frame(cdp);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->cdp);

  Bytes lldp;
  put_mac(lldp, *MacAddress::parse("01:80:c2:00:00:0e"));
  put_mac(lldp, kPhone);
  put16(lldp, 0x88cc);
  auto l = classify_frame(lldp);
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->lldp);
}

TEST(FrameTest, EveryTruncationIsSafe) {
  const auto full = udp_frame(kBox, kPhone, 0x0a0a6464, 0x0a0a6401, 68, 67, bootp(1, 3, kPhone, 0), true);
  for (std::size_t n = 0; n <= full.size(); ++n) {
    Bytes cut(full.begin(), full.begin() + static_cast<long>(n));
    auto info = classify_frame(cut);
    if (n < 14) {
      EXPECT_FALSE(info);
    } else {
      ASSERT_TRUE(info);
      EXPECT_LE(info->payload_offset + info->payload_length, n);
    }
  }
}

TEST(FrameTest, IpTotalLengthLargerThanFrameIsBoundedByTheFrame) {
  auto f = udp_frame(kBox, kPhone, 1, 2, 5060, 5060, Bytes(40, 'x'));
  f[16] = 0xff;  // total length 0xff.. > frame
  f[17] = 0xff;
  auto info = classify_frame(f);
  ASSERT_TRUE(info && info->ipv4);
  EXPECT_LE(info->payload_offset + info->payload_length, f.size());
}

}  // namespace
}  // namespace ve::diag
