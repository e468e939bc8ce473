// IFLA_AF_SPEC bridge VLAN table: encode, decode, malformed input.
#include <cstring>

#include <gtest/gtest.h>
#include <linux/if_bridge.h>

#include "net/net.hpp"

namespace ve::net {
namespace {

std::vector<std::byte> attr(std::uint16_t type, std::uint16_t flags, std::uint16_t vid) {
  std::vector<std::byte> out(8);
  std::uint16_t len = 8;
  std::memcpy(out.data(), &len, 2);
  std::memcpy(out.data() + 2, &type, 2);
  std::memcpy(out.data() + 4, &flags, 2);
  std::memcpy(out.data() + 6, &vid, 2);
  return out;
}

std::vector<std::byte> cat(std::initializer_list<std::vector<std::byte>> parts) {
  std::vector<std::byte> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(VlanSpec, RoundTripsPvidUntagged) {
  auto bytes = encode_vlan_spec({10, true, true}, false);
  auto v = decode_vlan_spec(bytes);
  ASSERT_TRUE(v.has_value());
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0], (BridgeVlan{10, true, true}));
}

TEST(VlanSpec, EncodesSelfFlagForBridgeDevice) {
  auto bytes = encode_vlan_spec({100, false, false}, true);
  ASSERT_GE(bytes.size(), 8u);
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  std::memcpy(&type, bytes.data() + 2, 2);
  std::memcpy(&flags, bytes.data() + 4, 2);
  EXPECT_EQ(type, IFLA_BRIDGE_FLAGS);
  EXPECT_EQ(flags, BRIDGE_FLAGS_SELF);
  auto v = decode_vlan_spec(bytes);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, (std::vector<BridgeVlan>{{100, false, false}}));
}

TEST(VlanSpec, ExpandsRanges) {
  auto bytes = cat({attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, 1),
                    attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO_RANGE_BEGIN, 100),
                    attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO_RANGE_END, 102)});
  auto v = decode_vlan_spec(bytes);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v,
            (std::vector<BridgeVlan>{{1, true, true}, {100, false, false}, {101, false, false}, {102, false, false}}));
}

TEST(VlanSpec, SkipsUnknownAttributes) {
  auto bytes = cat({attr(99, 0, 0), attr(IFLA_BRIDGE_VLAN_INFO, 0, 7)});
  auto v = decode_vlan_spec(bytes);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, (std::vector<BridgeVlan>{{7, false, false}}));
}

TEST(VlanSpec, RejectsMalformed) {
  auto good = attr(IFLA_BRIDGE_VLAN_INFO, 0, 7);
  EXPECT_EQ(decode_vlan_spec(std::span(good).first(3)).error(), VlanSpecError::Truncated);
  EXPECT_EQ(decode_vlan_spec(std::span(good).first(6)).error(), VlanSpecError::Truncated);
  auto short_len = good;
  short_len[0] = std::byte{2};
  EXPECT_EQ(decode_vlan_spec(short_len).error(), VlanSpecError::BadLength);
  auto short_info = good;
  short_info[0] = std::byte{6};
  EXPECT_EQ(decode_vlan_spec(short_info).error(), VlanSpecError::BadLength);
  EXPECT_EQ(decode_vlan_spec(attr(IFLA_BRIDGE_VLAN_INFO, 0, 0)).error(), VlanSpecError::BadVid);
  EXPECT_EQ(decode_vlan_spec(attr(IFLA_BRIDGE_VLAN_INFO, 0, 4095)).error(), VlanSpecError::BadVid);
  EXPECT_EQ(decode_vlan_spec(attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO_RANGE_BEGIN, 5)).error(),
            VlanSpecError::UnterminatedRange);
  EXPECT_EQ(decode_vlan_spec(attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO_RANGE_END, 5)).error(),
            VlanSpecError::UnterminatedRange);
}

TEST(VlanSpec, EmptyIsNoVlans) {
  auto v = decode_vlan_spec({});
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->empty());
}

}  // namespace
}  // namespace ve::net
