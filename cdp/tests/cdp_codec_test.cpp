#include <gtest/gtest.h>

#include "cdp/cdp.hpp"
#include "cdp/tests/test_util.hpp"

namespace ve::cdp {
namespace {

using test::from_hex;

constexpr std::size_t kPduOffset = 22;  // 14 Ethernet + 8 LLC/SNAP

// A PDU built from raw TLV bytes with a correct checksum.
Bytes pdu_with_tlvs(std::string_view tlv_hex) {
  Bytes pdu = from_hex("02b40000");
  Bytes tlvs = from_hex(tlv_hex);
  pdu.insert(pdu.end(), tlvs.begin(), tlvs.end());
  const auto sum = cdp_checksum(pdu);
  pdu[2] = static_cast<std::uint8_t>(sum >> 8);
  pdu[3] = static_cast<std::uint8_t>(sum);
  return pdu;
}

CdpPdu every_tlv_pdu() {
  CdpPdu p;
  p.ttl_s = 120;
  p.device_id = "branch-01";
  p.addresses = std::vector<CdpAddress>{CdpAddress::ipv4(0x0a0a6401)};
  p.port_id = "eth1";
  p.capabilities = capability::kSwitch | capability::kIgmp;
  p.software_version = "voiceedge 0.1";
  p.platform = "voiceedge";
  p.native_vlan = 10;
  p.full_duplex = true;
  p.voip_vlan_reply = ApplianceVlan{1, 100};
  p.voip_vlan_query = from_hex("20020001");
  p.power_mw = 6300;
  p.mtu = 1500;
  p.trust_bitmap = 0;
  p.untrusted_cos = 0;
  p.management_addresses = std::vector<CdpAddress>{CdpAddress::ipv4(0x0a0a6401)};
  p.power_requested = PowerRequested{7, 0, {10250, 6300}};
  p.power_available = PowerAvailable{7, 2, 10250, 0xffffffff};
  p.unknown.push_back(RawTlv{0x1c, from_hex("000200")});
  return p;
}

TEST(CdpCodec, Decodes7970PhoneFrame) {
  auto frame = decode_cdp(test::phone_7970_frame());
  ASSERT_TRUE(frame) << to_string(frame.error());
  EXPECT_EQ(frame->source.to_string(), "00:12:da:db:d3:4e");
  EXPECT_FALSE(frame->vlan_tag.has_value());
  const CdpPdu& p = frame->pdu;
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.ttl_s, 180);
  EXPECT_EQ(p.checksum, 0x1e74);
  EXPECT_EQ(p.device_id, "SEP0012DADBD34E");
  ASSERT_TRUE(p.addresses);
  ASSERT_EQ(p.addresses->size(), 1u);
  EXPECT_EQ(p.addresses->at(0).to_string(), "10.10.33.65");
  EXPECT_EQ(p.port_id, "Port 1");
  EXPECT_EQ(p.capabilities, capability::kHost | capability::kPhone | capability::kMacRelay);
  EXPECT_EQ(p.software_version, "SIP70.8-5-3S");
  EXPECT_EQ(p.platform, "Cisco IP Phone 7970");
  ASSERT_TRUE(p.power_requested);
  EXPECT_EQ(p.power_requested->request_id, 0xd34e);
  EXPECT_EQ(p.power_requested->management_id, 0);
  EXPECT_EQ(p.power_requested->levels_mw, (std::vector<std::uint32_t>{10250, 6300}));
  EXPECT_EQ(p.full_duplex, true);
  EXPECT_EQ(p.power_mw, 6300);
  ASSERT_EQ(p.unknown.size(), 1u);  // 0x1c is kept, not fatal
  EXPECT_EQ(p.unknown[0].type, 0x1c);
  EXPECT_EQ(p.unknown[0].value, from_hex("000200"));
  EXPECT_FALSE(p.voip_vlan_reply);
  EXPECT_FALSE(p.power_available);
}

// Text TLVs come from any host: what is not UTF-8 (stray bytes, overlong forms, surrogates, a
// sequence cut short) becomes '?', byte for byte, so the name can go into JSON and still fits its
// TLV; valid UTF-8 is kept.
TEST(CdpCodec, TextThatIsNotUtf8IsReplacedNotPassedOn) {
  const auto pdu =
      decode_cdp_pdu(pdu_with_tlvs("0001000a534550fffe78"
                                   "0006000ec3a9e08080eda08041c3"));
  ASSERT_TRUE(pdu) << to_string(pdu.error());
  const std::string bad = "?";
  EXPECT_EQ(pdu->device_id, "SEP" + bad + bad + "x");
  EXPECT_EQ(pdu->platform, "\xC3\xA9" + bad + bad + bad + bad + bad + bad + "A" + bad);
}

TEST(CdpCodec, OddLengthChecksumOf7970FrameFollowsCiscoRule) {
  const Bytes frame = test::phone_7970_frame();
  ByteView pdu = ByteView(frame).subspan(kPduOffset);
  ASSERT_EQ(pdu.size() % 2, 1u);
  ASSERT_GE(pdu.back(), 0x80);  // exercises the signed-odd-byte branch
  EXPECT_EQ(cdp_checksum(pdu), 0x1e74);
}

TEST(CdpCodec, OddLengthChecksumWithLowLastByte) {
  // Ends in a Duplex TLV value 0x01 (< 0x80): the byte is added as-is to the low half.
  Bytes pdu = from_hex("02b40000 000b000501");
  // sum = 0x02b4 + 0x000b + 0x0005 + 0x0001 = 0x02c5 -> ~ = 0xfd3a
  EXPECT_EQ(cdp_checksum(pdu), 0xfd3a);
  pdu[2] = 0xfd;
  pdu[3] = 0x3a;
  EXPECT_TRUE(decode_cdp_pdu(pdu));
}

TEST(CdpCodec, OddByteAtExactly0x80UsesSignedRule) {
  // 0x80 is the first "negative" byte: added as 0xff00 + 0x80 - 1 = 0xff7f (scapy gets this wrong).
  Bytes pdu = from_hex("02b40000 00100005 80");
  std::uint32_t sum = 0x02b4 + 0x0010 + 0x0005 + 0xff7f;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(cdp_checksum(pdu), static_cast<std::uint16_t>(~sum));
}

TEST(CdpCodec, EncodesVoipVlanReplyAsOnTheWire) {
  CdpPdu p;
  p.voip_vlan_reply = ApplianceVlan{1, 100};
  const Bytes pdu = encode_cdp_pdu(p);
  EXPECT_EQ(Bytes(pdu.begin() + 4, pdu.end()), from_hex("000e0007010064"));
}

TEST(CdpCodec, DecodesCatalystPowerAvailableWithoutPhone) {
  auto p = decode_cdp_pdu(pdu_with_tlvs("001a 0010 0000 0001 00000000 ffffffff"));
  ASSERT_TRUE(p) << to_string(p.error());
  ASSERT_TRUE(p->power_available);
  EXPECT_EQ(*p->power_available, (PowerAvailable{0, 1, 0, 0xffffffff}));
}

TEST(CdpCodec, RoundTripsEveryTlv) {
  CdpFrame f;
  f.source = *MacAddress::parse("02:00:00:00:00:01");
  f.pdu = every_tlv_pdu();
  const Bytes wire = encode_cdp(f);
  auto back = decode_cdp(wire);
  ASSERT_TRUE(back) << to_string(back.error());
  CdpPdu expected = f.pdu;
  expected.checksum = back->pdu.checksum;
  EXPECT_EQ(back->pdu, expected);
  EXPECT_EQ(back->source, f.source);
  EXPECT_EQ(back->destination, MacAddress(kCdpMulticast));
}

TEST(CdpCodec, ReencodedPhoneFrameKeepsItsFields) {
  auto first = decode_cdp(test::phone_7970_frame());
  ASSERT_TRUE(first);
  auto second = decode_cdp(encode_cdp(first.value()));
  ASSERT_TRUE(second) << to_string(second.error());
  CdpPdu a = first->pdu, b = second->pdu;
  a.checksum = b.checksum = 0;
  EXPECT_EQ(a, b);
}

TEST(CdpCodec, AcceptsVlanTaggedFrameAndPadding) {
  Bytes frame = test::phone_7970_frame();
  const Bytes tag = from_hex("81000064");
  frame.insert(frame.begin() + 12, tag.begin(), tag.end());
  frame.resize(frame.size() + 20, 0);  // trailing padding past the 802.3 length
  auto f = decode_cdp(frame);
  ASSERT_TRUE(f) << to_string(f.error());
  EXPECT_EQ(f->vlan_tag, 100);
  EXPECT_EQ(f->pdu.device_id, "SEP0012DADBD34E");
}

TEST(CdpCodec, RejectsBadChecksum) {
  Bytes frame = test::phone_7970_frame();
  frame[kPduOffset + 10] ^= 0x01;
  auto f = decode_cdp(frame);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), DecodeError::BadChecksum);
}

TEST(CdpCodec, RejectsBadVersion) {
  auto p = decode_cdp_pdu(from_hex("03b40000"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::BadVersion);
}

TEST(CdpCodec, RejectsTruncatedPduHeader) {
  auto p = decode_cdp_pdu(from_hex("02b4"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::Truncated);
}

TEST(CdpCodec, RejectsTlvLongerThanFrame) {
  auto p = decode_cdp_pdu(pdu_with_tlvs("00010020 53455030"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::TlvOverrun);
}

TEST(CdpCodec, RejectsPartialTlvHeader) {
  auto p = decode_cdp_pdu(pdu_with_tlvs("000b000501 0001"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::TlvOverrun);
}

TEST(CdpCodec, RejectsTlvLengthBelowHeader) {
  auto p = decode_cdp_pdu(pdu_with_tlvs("00010002"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::BadTlvLength);
}

TEST(CdpCodec, RejectsShortFixedTlvs) {
  for (const char* tlv :
       {"000e0006 0100", "00040007 000004", "00190006 d34e", "0019000a d34e0000 0000", "001a000a 00000001 0000"}) {
    auto p = decode_cdp_pdu(pdu_with_tlvs(tlv));
    ASSERT_FALSE(p) << tlv;
    EXPECT_EQ(p.error(), DecodeError::BadTlvLength) << tlv;
  }
}

TEST(CdpCodec, RejectsAddressCountBeyondData) {
  auto p = decode_cdp_pdu(pdu_with_tlvs("00020011 ffffffff 0101cc00040a0a2141"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::BadTlvValue);
}

TEST(CdpCodec, IgnoresOtherCiscoSnapProtocols) {
  Bytes frame = test::phone_7970_frame();
  frame[21] = 0x04;  // PID 0x2004 = DTP
  auto f = decode_cdp(frame);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), DecodeError::WrongProtocol);
}

TEST(CdpCodec, RejectsLengthFieldBeyondFrame) {
  Bytes frame = test::phone_7970_frame();
  frame.pop_back();
  auto f = decode_cdp(frame);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), DecodeError::Truncated);
}

TEST(CdpCodec, EveryPrefixOfARealFrameFailsCleanly) {
  const Bytes frame = test::phone_7970_frame();
  for (std::size_t n = 0; n < frame.size(); ++n) {
    auto f = decode_cdp(ByteView(frame).first(n));
    EXPECT_FALSE(f) << "prefix " << n;
  }
}

TEST(CdpCodec, CapabilityLettersLikeIos) {
  EXPECT_EQ(capability_letters(0x490), "H P M");
  EXPECT_EQ(capability_letters(capability::kRouter | capability::kSwitch | capability::kIgmp), "R S I");
  EXPECT_EQ(capability_letters(0), "");
}

}  // namespace
}  // namespace ve::cdp
