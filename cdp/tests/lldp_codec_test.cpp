#include <algorithm>

#include <gtest/gtest.h>

#include "cdp/cdp.hpp"
#include "cdp/tests/test_util.hpp"

namespace ve::cdp {
namespace {

using test::from_hex;

// chassis MAC, port ifname "eth1", TTL 120
constexpr std::string_view kMinimalHead = "0207 04 020000000001 0405 05 65746831 0602 0078";

LldpPdu med_switch_pdu() {
  LldpPdu p;
  p.chassis_id = LldpId{4, from_hex("020000000001")};
  p.port_id = LldpId{5, from_hex("65746831")};
  p.ttl_s = 120;
  p.port_description = "phone port";
  p.system_name = "branch-01";
  p.system_description = "voiceedge";
  p.system_capabilities = 0x0014;
  p.enabled_capabilities = 0x0004;
  p.management_addresses.push_back(LldpManagementAddress{1, from_hex("0a0a6401"), 2, 3, {}});
  p.med_capabilities = MedCapabilities{
      lldp_med_capability::kCapabilities | lldp_med_capability::kNetworkPolicy | lldp_med_capability::kPowerPse,
      MedDeviceType::NetworkConnectivity};
  p.network_policies.push_back(NetworkPolicy{1, false, true, 100, 5, 46});
  p.network_policies.push_back(NetworkPolicy{2, false, true, 100, 4, 32});
  p.extended_power = ExtendedPower{0, 1, 2, 154};
  p.inventory.software_revision = "0.1";
  p.inventory.model = "voiceedge";
  p.unknown.push_back(RawTlv{127, from_hex("00120f0405dc")});
  return p;
}

TEST(LldpCodec, DecodesLldpdCapturedFrameWithMedInventory) {
  auto f = decode_lldp(test::lldpd_med_inventory_frame());
  ASSERT_TRUE(f) << to_string(f.error());
  const LldpPdu& p = f->pdu;
  EXPECT_EQ(f->source.to_string(), "00:16:17:2f:a1:b6");
  EXPECT_EQ(p.chassis_id.subtype, 4);
  EXPECT_EQ(p.chassis_id.to_string(true), "00:16:17:2f:a1:b6");
  EXPECT_EQ(p.port_id.subtype, 3);
  EXPECT_EQ(p.port_id.to_string(false), "00:16:17:2f:a1:b6");
  EXPECT_EQ(p.ttl_s, 120);
  EXPECT_EQ(p.system_name, "naruto.XXXXXXXXXXXXXXXXXXX");
  EXPECT_EQ(p.system_description, "Linux 2.6.29-2-amd64 #1 SMP Sun May 17 17:15:47 UTC 2009 x86_64");
  EXPECT_EQ(p.system_capabilities, 0x001c);
  EXPECT_EQ(p.enabled_capabilities, 0x0014);
  ASSERT_EQ(p.management_addresses.size(), 1u);
  EXPECT_EQ(p.management_addresses[0].to_string(), "10.238.80.75");
  EXPECT_EQ(p.management_addresses[0].interface_number, 3u);
  EXPECT_EQ(p.port_description, "eth0");
  ASSERT_TRUE(p.med_capabilities);
  EXPECT_EQ(p.med_capabilities->capabilities, 0);
  EXPECT_EQ(p.med_capabilities->device_type, MedDeviceType::NotDefined);
  EXPECT_EQ(p.inventory.hardware_revision, "ND991789702");
  EXPECT_EQ(p.inventory.firmware_revision, "080012 ");
  EXPECT_EQ(p.inventory.software_revision, "2.6.29-2-amd64");
  EXPECT_EQ(p.inventory.serial_number, "105820850009");
  EXPECT_EQ(p.inventory.manufacturer, "NEC Computers SAS");
  EXPECT_EQ(p.inventory.model, "POWERMATE VL350");
  EXPECT_EQ(p.inventory.asset_id, "100207120");
  // The three IEEE 802.3 TLVs are kept raw with their OUI.
  ASSERT_EQ(p.unknown.size(), 3u);
  for (const auto& t : p.unknown) {
    EXPECT_EQ(t.type, 127);
    EXPECT_EQ(Bytes(t.value.begin(), t.value.begin() + 3), from_hex("00120f"));
  }
}

TEST(LldpCodec, EncodesVoiceNetworkPolicyAsOnTheWire) {
  LldpPdu p;
  p.chassis_id = LldpId{4, from_hex("020000000001")};
  p.port_id = LldpId{5, from_hex("65746831")};
  p.network_policies.push_back(NetworkPolicy{});  // voice, tagged, prio 5, DSCP 46
  p.network_policies[0].vlan = 100;
  const Bytes wire = encode_lldp_pdu(p);
  const Bytes expected = from_hex("fe080012bb020140c96e");
  EXPECT_NE(std::search(wire.begin(), wire.end(), expected.begin(), expected.end()), wire.end());
}

TEST(LldpCodec, DecodesNetworkPolicyBits) {
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "fe080012bb020140c96e 0000"));
  ASSERT_TRUE(p) << to_string(p.error());
  ASSERT_EQ(p->network_policies.size(), 1u);
  EXPECT_EQ(p->network_policies[0], (NetworkPolicy{1, false, true, 100, 5, 46}));
}

TEST(LldpCodec, DecodesPdExtendedPower) {
  // PD (01), source PSE (01), priority high (2), 12.0 W
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "fe070012bb04 52 0078 0000"));
  ASSERT_TRUE(p) << to_string(p.error());
  ASSERT_TRUE(p->extended_power);
  EXPECT_EQ(*p->extended_power, (ExtendedPower{1, 1, 2, 120}));
  EXPECT_EQ(p->extended_power->power_mw(), 12000u);
}

TEST(LldpCodec, ManagementAddressesDecodeByFamilyAndKeepUnknownOnesAsHex) {
  // Management address TLV (type 8): length 17 = family + 16 bytes, IPv6 fe80::216:17ff:fe2f:a1b6
  // (what lldpd sends for a link-local), ifIndex 2, no OID.
  auto p =
      decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "1018 11 02 fe800000000000000216 17fffe2fa1b6 02 00000002 00"
                                                           "100e 07 06 00163e000001 02 00000003 00"
                                                           "100c 05 01 0a000001 02 00000001 00"
                                                           "100b 04 10 0a0b0c 01 00000000 00 0000"));
  ASSERT_TRUE(p) << to_string(p.error());
  ASSERT_EQ(p->management_addresses.size(), 4u);
  EXPECT_EQ(p->management_addresses[0].to_string(), "fe80::216:17ff:fe2f:a1b6");
  EXPECT_EQ(p->management_addresses[1].to_string(), "00:16:3e:00:00:01");
  EXPECT_EQ(p->management_addresses[2].to_string(), "10.0.0.1");
  EXPECT_EQ(p->management_addresses[3].to_string(), "family 16: 0a0b0c");
  // A family whose length does not fit is not guessed at.
  EXPECT_EQ(address_to_string(address_family::kIpv6, from_hex("fe80")), "family 2: fe80");
}

TEST(LldpCodec, NetworkAddressChassisIdDecodesIpv6AndBinaryIdsAsHex) {
  EXPECT_EQ((LldpId{5, from_hex("02 20010db8000000000000000000000001")}.to_string(true)), "2001:db8::1");
  EXPECT_EQ((LldpId{5, from_hex("01 c0a80001")}.to_string(true)), "192.168.0.1");
  EXPECT_EQ((LldpId{7, from_hex("00ff10")}.to_string(true)), "00ff10");
  EXPECT_EQ((LldpId{7, from_hex("657468")}.to_string(true)), "eth");
}

TEST(LldpCodec, SystemCapabilityBitsHaveNamesAndIosLetters) {
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "0e04 00a4 0024 0000"));
  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_EQ(p->system_capabilities, 0x00a4);
  EXPECT_EQ(p->enabled_capabilities, 0x0024);
  EXPECT_EQ(lldp_capability_names(*p->enabled_capabilities), (std::vector<std::string>{"Bridge", "Telephone"}));
  EXPECT_EQ(lldp_capability_names(*p->system_capabilities),
            (std::vector<std::string>{"Bridge", "Telephone", "Station only"}));
  EXPECT_EQ(lldp_capability_letters(0x00a4), "B T S");
  EXPECT_EQ(lldp_capability_names(0x1000), (std::vector<std::string>{"bit 12"}));
}

TEST(LldpCodec, EncodesVoiceSignalingPolicy) {
  LldpPdu p;
  p.chassis_id = LldpId{4, from_hex("020000000001")};
  p.port_id = LldpId{5, from_hex("65746831")};
  p.network_policies.push_back(NetworkPolicy{2, false, true, 100, 3, 24});
  const Bytes wire = encode_lldp_pdu(p);
  // app 2, T=1, VLAN 100, prio 3, DSCP 24: 02 40 c8 d8
  const Bytes expected = from_hex("fe080012bb020240c8d8");
  EXPECT_NE(std::search(wire.begin(), wire.end(), expected.begin(), expected.end()), wire.end());
  auto back = decode_lldp_pdu(wire);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->network_policies[0], (NetworkPolicy{2, false, true, 100, 3, 24}));
}

TEST(LldpCodec, RoundTripsMedSwitchPdu) {
  LldpFrame f;
  f.source = *MacAddress::parse("02:00:00:00:00:01");
  f.pdu = med_switch_pdu();
  auto back = decode_lldp(encode_lldp(f));
  ASSERT_TRUE(back) << to_string(back.error());
  EXPECT_EQ(back->pdu, f.pdu);
  EXPECT_EQ(back->destination, MacAddress(kLldpMulticast));
}

TEST(LldpCodec, ReencodedCapturedFrameKeepsItsFields) {
  auto first = decode_lldp(test::lldpd_med_inventory_frame());
  ASSERT_TRUE(first);
  auto second = decode_lldp(encode_lldp(first.value()));
  ASSERT_TRUE(second) << to_string(second.error());
  EXPECT_EQ(first->pdu, second->pdu);
}

TEST(LldpCodec, RequiresChassisPortTtlFirst) {
  auto p = decode_lldp_pdu(from_hex("0405 05 65746831 0207 04 020000000001 0602 0078 0000"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::MissingTlv);
  auto empty = decode_lldp_pdu(from_hex("0000"));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), DecodeError::MissingTlv);
}

TEST(LldpCodec, RejectsSecondChassisId) {
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "0207 04 020000000002 0000"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::BadTlvValue);
}

TEST(LldpCodec, RejectsTlvLongerThanFrame) {
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "0a20 6162"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::TlvOverrun);
}

TEST(LldpCodec, RejectsShortIdAndShortMedTlvs) {
  auto id = decode_lldp_pdu(from_hex("0201 04"));
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error(), DecodeError::BadTlvLength);
  for (const char* med : {"fe070012bb020140c9", "fe060012bb0452", "fe050012bb01"}) {
    auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + med + "0000"));
    ASSERT_FALSE(p) << med;
    EXPECT_EQ(p.error(), DecodeError::BadTlvLength) << med;
  }
}

TEST(LldpCodec, RejectsInconsistentManagementAddress) {
  // Address string length 0x20 but only 5 bytes follow.
  auto p = decode_lldp_pdu(from_hex(std::string(kMinimalHead) + "1006 20 010a0a6401 0000"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), DecodeError::BadTlvValue);
}

TEST(LldpCodec, IgnoresOtherEthertypes) {
  Bytes frame = test::lldpd_med_inventory_frame();
  frame[13] = 0xcd;
  auto f = decode_lldp(frame);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), DecodeError::WrongProtocol);
}

TEST(LldpCodec, EveryPrefixOfARealFrameNeverOverreads) {
  const Bytes frame = test::lldpd_med_inventory_frame();
  // Prefixes that cut a TLV must fail; the decoder must never read past the span (ASan checks).
  std::size_t accepted = 0;
  for (std::size_t n = 0; n < frame.size(); ++n) {
    Bytes copy(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
    if (decode_lldp(copy)) ++accepted;
  }
  // Only prefixes ending exactly on a TLV boundary after the mandatory three can decode.
  EXPECT_LT(accepted, 25u);
}

}  // namespace
}  // namespace ve::cdp
