// The ethtool PSE messages we build must decode, with libnl's own parser, into the attribute layout
// the kernel expects; replies shaped like the kernel's must parse into the right status.
#include <linux/ethtool.h>
#include <linux/ethtool_netlink.h>
#include <linux/genetlink.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "poe/pse_codec.hpp"

namespace ve::poe::pse {
namespace {

// Where Debian's (6.1) headers have them, our constants must agree with the kernel's.
static_assert(kMsgPseGet == ETHTOOL_MSG_PSE_GET);
static_assert(kMsgPseSet == ETHTOOL_MSG_PSE_SET);
static_assert(kMsgPseGetReply == ETHTOOL_MSG_PSE_GET_REPLY);
static_assert(kAttrPseHeader == ETHTOOL_A_PSE_HEADER);
static_assert(kAttrPodlAdminState == ETHTOOL_A_PODL_PSE_ADMIN_STATE);
static_assert(kAttrPodlAdminControl == ETHTOOL_A_PODL_PSE_ADMIN_CONTROL);
static_assert(kAttrPodlPwDStatus == ETHTOOL_A_PODL_PSE_PW_D_STATUS);
static_assert(kAttrHeaderDevIndex == ETHTOOL_A_HEADER_DEV_INDEX);
static_assert(kAttrHeaderDevName == ETHTOOL_A_HEADER_DEV_NAME);
static_assert(kAttrHeaderFlags == ETHTOOL_A_HEADER_FLAGS);
static_assert(kAdminEnabled == ETHTOOL_PODL_PSE_ADMIN_STATE_ENABLED);
static_assert(kAdminDisabled == ETHTOOL_PODL_PSE_ADMIN_STATE_DISABLED);
static_assert(kPodlError == ETHTOOL_PODL_PSE_PW_D_STATUS_ERROR);

constexpr int kFamily = 0x1d;  // any id: the family is resolved at run time

struct Decoded {
  nlmsghdr* nlh = nullptr;
  genlmsghdr* genl = nullptr;
  std::array<nlattr*, kAttrPseMax + 1> tb{};
  std::array<nlattr*, kAttrHeaderMax + 1> header{};
  bool header_nested_flag = false;
  int attr_count = 0;
};

// Decodes with libnl's parser only (genlmsg_parse, nla_parse_nested), independently of our parser.
Decoded decode(nl_msg* msg) {
  Decoded d;
  d.nlh = nlmsg_hdr(msg);
  d.genl = static_cast<genlmsghdr*>(nlmsg_data(d.nlh));
  EXPECT_EQ(genlmsg_parse(d.nlh, 0, d.tb.data(), kAttrPseMax, nullptr), 0);
  nlattr* pos = nullptr;
  int rem = 0;
  nla_for_each_attr(pos, genlmsg_attrdata(d.genl, 0), genlmsg_attrlen(d.genl, 0), rem) {
    ++d.attr_count;
    if (nla_type(pos) == kAttrPseHeader) d.header_nested_flag = (pos->nla_type & NLA_F_NESTED) != 0;
  }
  if (d.tb[kAttrPseHeader] != nullptr) {
    EXPECT_EQ(nla_parse_nested(d.header.data(), kAttrHeaderMax, d.tb[kAttrPseHeader], nullptr), 0);
  }
  return d;
}

void expect_request_header(const Decoded& d, std::uint8_t cmd, const char* ifname) {
  EXPECT_EQ(d.nlh->nlmsg_type, kFamily);
  EXPECT_EQ(d.nlh->nlmsg_flags & (NLM_F_REQUEST | NLM_F_ACK), NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(d.genl->cmd, cmd);
  EXPECT_EQ(d.genl->version, ETHTOOL_GENL_VERSION);
  ASSERT_NE(d.tb[kAttrPseHeader], nullptr);
  EXPECT_TRUE(d.header_nested_flag) << "the kernel rejects nests without NLA_F_NESTED";
  ASSERT_NE(d.header[kAttrHeaderDevName], nullptr);
  EXPECT_STREQ(nla_get_string(d.header[kAttrHeaderDevName]), ifname);
  EXPECT_EQ(d.header[kAttrHeaderDevIndex], nullptr);
}

TEST(PseCodec, GetRequestCarriesOnlyTheDeviceHeader) {
  NlMsgPtr msg = build_get(kFamily, "eth7");
  ASSERT_TRUE(msg);
  const Decoded d = decode(msg.get());
  expect_request_header(d, ETHTOOL_MSG_PSE_GET, "eth7");
  EXPECT_EQ(d.attr_count, 1);
}

TEST(PseCodec, SetC33AdminCarriesAdminControl) {
  for (bool enable : {true, false}) {
    NlMsgPtr msg = build_set_c33_admin(kFamily, "eth1", enable);
    ASSERT_TRUE(msg);
    const Decoded d = decode(msg.get());
    expect_request_header(d, ETHTOOL_MSG_PSE_SET, "eth1");
    ASSERT_NE(d.tb[kAttrC33AdminControl], nullptr);
    EXPECT_EQ(nla_len(d.tb[kAttrC33AdminControl]), 4);
    EXPECT_EQ(nla_get_u32(d.tb[kAttrC33AdminControl]), enable ? 3u : 2u);
    EXPECT_EQ(d.tb[kAttrPodlAdminControl], nullptr);
    EXPECT_EQ(d.attr_count, 2);
  }
}

TEST(PseCodec, SetPodlAdminCarriesPodlControl) {
  NlMsgPtr msg = build_set_podl_admin(kFamily, "t1s0", true);
  ASSERT_TRUE(msg);
  const Decoded d = decode(msg.get());
  expect_request_header(d, ETHTOOL_MSG_PSE_SET, "t1s0");
  ASSERT_NE(d.tb[ETHTOOL_A_PODL_PSE_ADMIN_CONTROL], nullptr);
  EXPECT_EQ(nla_get_u32(d.tb[ETHTOOL_A_PODL_PSE_ADMIN_CONTROL]), ETHTOOL_PODL_PSE_ADMIN_STATE_ENABLED);
  EXPECT_EQ(d.tb[kAttrC33AdminControl], nullptr);
}

TEST(PseCodec, SetPowerLimitCarriesMilliwatts) {
  NlMsgPtr msg = build_set_power_limit(kFamily, "eth2", 12900);
  ASSERT_TRUE(msg);
  const Decoded d = decode(msg.get());
  expect_request_header(d, ETHTOOL_MSG_PSE_SET, "eth2");
  ASSERT_NE(d.tb[kAttrC33AvailPwLimit], nullptr);
  EXPECT_EQ(nla_get_u32(d.tb[kAttrC33AvailPwLimit]), 12900u);
  EXPECT_EQ(d.attr_count, 2);
}

// A reply shaped like the kernel's pse_fill_reply(), built with libnl.
NlMsgPtr kernel_reply(std::uint8_t cmd, const std::function<void(nl_msg*)>& body) {
  NlMsgPtr msg(nlmsg_alloc());
  genlmsg_put(msg.get(), 0, 1, kFamily, 0, 0, cmd, 1);
  nlattr* h = nla_nest_start(msg.get(), kAttrPseHeader | NLA_F_NESTED);
  nla_put_u32(msg.get(), kAttrHeaderDevIndex, 7);
  nla_put_string(msg.get(), kAttrHeaderDevName, "eth1");
  nla_nest_end(msg.get(), h);
  body(msg.get());
  return msg;
}

std::vector<std::byte> copy_bytes(nl_msg* msg) {
  auto span = bytes_of(msg);
  return {span.begin(), span.end()};
}

TEST(PseCodec, ParsesC33ReplyWithClassPowerLimitsAndPriority) {
  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, kAttrC33AdminState, kAdminEnabled);
    nla_put_u32(m, kAttrC33PwDStatus, kC33Delivering);
    nla_put_u32(m, kAttrC33PwClass, 2);
    nla_put_u32(m, kAttrC33ActualPw, 6300);
    nla_put_u32(m, kAttrC33AvailPwLimit, 7000);
    for (auto [lo, hi] : {std::pair<std::uint32_t, std::uint32_t>{0, 15400}, {15400, 30000}}) {
      nlattr* r = nla_nest_start(m, kAttrC33PwLimitRanges | NLA_F_NESTED);
      nla_put_u32(m, kAttrRangeMin, lo);
      nla_put_u32(m, kAttrRangeMax, hi);
      nla_nest_end(m, r);
    }
    nla_put_u32(m, kAttrPwDId, 1);
    nla_put_u32(m, kAttrPrioMax, 2);
    nla_put_u32(m, kAttrPrio, 1);
  });
  const auto bytes = copy_bytes(msg.get());
  auto r = parse_reply(bytes);
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->cmd, kMsgPseGetReply);
  EXPECT_EQ(r->ifname, "eth1");
  EXPECT_EQ(r->ifindex, 7u);
  EXPECT_EQ(r->c33_pw_class, 2u);
  EXPECT_EQ(r->c33_actual_pw_mw, 6300u);
  ASSERT_EQ(r->c33_pw_limit_ranges.size(), 2u);
  EXPECT_EQ(r->c33_pw_limit_ranges[1].max_mw, 30000u);
  EXPECT_EQ(r->prio, 1u);
  EXPECT_EQ(r->prio_max, 2u);

  const PortStatus s = to_port_status(*r, "eth1");
  EXPECT_EQ(s.admin, AdminState::Enabled);
  EXPECT_EQ(s.detection, Detection::Delivering);
  EXPECT_EQ(s.power_class, 2);
  EXPECT_EQ(s.actual_mw, 6300u);
  EXPECT_EQ(s.limit_mw, 7000u);
  EXPECT_EQ(s.limit_max_mw, 30000u);
  EXPECT_EQ(s.priority, 1u);
}

TEST(PseCodec, FaultReplyNamesTheExtendedState) {
  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, kAttrC33AdminState, kAdminEnabled);
    nla_put_u32(m, kAttrC33PwDStatus, kC33Fault);
    nla_put_u32(m, kAttrC33ExtState, kExtOvldDetected);
  });
  const auto bytes = copy_bytes(msg.get());
  auto r = parse_reply(bytes);
  ASSERT_TRUE(r);
  const PortStatus s = to_port_status(*r, "eth1");
  EXPECT_EQ(s.detection, Detection::Fault);
  EXPECT_EQ(s.fault, "over-current");
  EXPECT_EQ(s.ext_state, kExtOvldDetected);
}

TEST(PseCodec, PowerDomainAndPrioritiesMapToTheStatus) {
  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, kAttrC33AdminState, kAdminEnabled);
    nla_put_u32(m, kAttrC33PwDStatus, kC33Disabled);
    nla_put_u32(m, kAttrC33ExtState, kExtPowerNotAvailable);
    nla_put_u32(m, kAttrPwDId, 3);
    nla_put_u32(m, kAttrPrioMax, 7);
    nla_put_u32(m, kAttrPrio, 5);
  });
  const auto bytes = copy_bytes(msg.get());
  auto r = parse_reply(bytes);
  ASSERT_TRUE(r) << to_string(r.error());
  const PortStatus s = to_port_status(*r, "eth1");
  EXPECT_EQ(s.power_domain, 3u);
  EXPECT_EQ(s.priority_max, 7u);
  EXPECT_EQ(s.priority, 5u);
  EXPECT_EQ(s.ext_state, kExtPowerNotAvailable);

  // 6.11-6.16: a domain but no priorities (the kernel sends PRIO_MAX only when > 0).
  auto older = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, kAttrC33PwDStatus, kC33Searching);
    nla_put_u32(m, kAttrPwDId, 0);
  });
  const auto older_bytes = copy_bytes(older.get());
  auto o = parse_reply(older_bytes);
  ASSERT_TRUE(o);
  const PortStatus os = to_port_status(*o, "eth1");
  EXPECT_EQ(os.power_domain, 0u);
  EXPECT_FALSE(os.priority_max);
  EXPECT_FALSE(os.priority);
}

TEST(PseCodec, SetPriorityCarriesPrio) {
  NlMsgPtr msg = build_set_priority(kFamily, "eth3", 2);
  ASSERT_TRUE(msg);
  const Decoded d = decode(msg.get());
  expect_request_header(d, ETHTOOL_MSG_PSE_SET, "eth3");
  ASSERT_NE(d.tb[kAttrPrio], nullptr);
  EXPECT_EQ(nla_get_u32(d.tb[kAttrPrio]), 2u);
  EXPECT_EQ(d.attr_count, 2);
}

// A PSE_NTF as the kernel's ethnl_pse_send_ntf() builds it: the header nest, then the events as
// an NLA_UINT (nla_put_uint: 4 bytes when the value fits, else 8).
NlMsgPtr kernel_ntf(const std::function<void(nl_msg*)>& body) {
  NlMsgPtr msg(nlmsg_alloc());
  genlmsg_put(msg.get(), 0, 0, kFamily, 0, 0, kMsgPseNtf, 1);
  nlattr* h = nla_nest_start(msg.get(), kAttrNtfHeader | NLA_F_NESTED);
  nla_put_u32(msg.get(), kAttrHeaderDevIndex, 7);
  nla_put_string(msg.get(), kAttrHeaderDevName, "eth1");
  nla_nest_end(msg.get(), h);
  body(msg.get());
  return msg;
}

TEST(PseCodec, NotificationCarriesTheEventBits) {
  auto msg =
      kernel_ntf([](nl_msg* m) { nla_put_u32(m, kAttrNtfEvents, static_cast<std::uint32_t>(event::kOverBudget)); });
  const auto bytes = copy_bytes(msg.get());
  ASSERT_EQ(command_of(bytes), kMsgPseNtf);
  auto n = parse_notification(bytes);
  ASSERT_TRUE(n) << to_string(n.error());
  EXPECT_EQ(n->ifname, "eth1");
  EXPECT_EQ(n->ifindex, 7u);
  EXPECT_EQ(n->events, event::kOverBudget);
  const PseEvents e = to_pse_events(n->events);
  EXPECT_TRUE(e.over_budget);
  EXPECT_FALSE(e.over_current);
  EXPECT_EQ(event_names(n->events), "over-budget");
  // Not a GET reply: its attribute 2 is not PODL_ADMIN_STATE.
  auto wrong = parse_reply(bytes);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), ParseError::WrongCommand);
}

TEST(PseCodec, NotificationEventsMayBeSixtyFourBitsWide) {
  const std::uint64_t bits = event::kOverCurrent | event::kDisconnection | (std::uint64_t{1} << 40);
  auto msg = kernel_ntf([bits](nl_msg* m) { nla_put_u64(m, kAttrNtfEvents, bits); });
  const auto bytes = copy_bytes(msg.get());
  auto n = parse_notification(bytes);
  ASSERT_TRUE(n) << to_string(n.error());
  EXPECT_EQ(n->events, bits);
  const PseEvents e = to_pse_events(n->events);
  EXPECT_TRUE(e.over_current);
  EXPECT_TRUE(e.disconnection);
  EXPECT_EQ(e.unknown, std::uint64_t{1} << 40);
  EXPECT_EQ(event_names(bits), "over-current, disconnection, 0x10000000000");
}

TEST(PseCodec, NotificationWithoutOrWithBadEventsIsRejected) {
  auto none = kernel_ntf([](nl_msg*) {});
  const auto none_bytes = copy_bytes(none.get());
  auto r = parse_notification(none_bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadAttributes);

  auto short_events = kernel_ntf([](nl_msg* m) {
    const std::uint16_t two = 1;
    nla_put(m, kAttrNtfEvents, sizeof two, &two);
  });
  const auto short_bytes = copy_bytes(short_events.get());
  r = parse_notification(short_bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadAttributes);

  auto reply = kernel_reply(kMsgPseGetReply, [](nl_msg*) {});
  const auto reply_bytes = copy_bytes(reply.get());
  r = parse_notification(reply_bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::WrongCommand);

  auto good = kernel_ntf([](nl_msg* m) { nla_put_u32(m, kAttrNtfEvents, 1); });
  const auto good_bytes = copy_bytes(good.get());
  for (std::size_t n = 0; n < good_bytes.size(); ++n) {
    EXPECT_FALSE(parse_notification(std::span<const std::byte>(good_bytes.data(), n))) << n << " bytes parsed";
  }
}

TEST(PseCodec, PodlOnlyReplyMapsToTheSameStatus) {
  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, ETHTOOL_A_PODL_PSE_ADMIN_STATE, ETHTOOL_PODL_PSE_ADMIN_STATE_ENABLED);
    nla_put_u32(m, ETHTOOL_A_PODL_PSE_PW_D_STATUS, ETHTOOL_PODL_PSE_PW_D_STATUS_DELIVERING);
  });
  const auto bytes = copy_bytes(msg.get());
  auto r = parse_reply(bytes);
  ASSERT_TRUE(r);
  const PortStatus s = to_port_status(*r, "t1s0");
  EXPECT_EQ(s.admin, AdminState::Enabled);
  EXPECT_EQ(s.detection, Detection::Delivering);
  EXPECT_EQ(s.power_class, -1);
}

TEST(PseCodec, RejectsOtherCommandsAndEveryTruncation) {
  auto other = kernel_reply(2 /* LINKINFO_GET_REPLY */, [](nl_msg*) {});
  const auto other_bytes = copy_bytes(other.get());
  auto wrong = parse_reply(other_bytes);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), ParseError::WrongCommand);

  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    nla_put_u32(m, kAttrC33PwDStatus, kC33Searching);
    nlattr* r = nla_nest_start(m, kAttrC33PwLimitRanges | NLA_F_NESTED);
    nla_put_u32(m, kAttrRangeMin, 0);
    nla_put_u32(m, kAttrRangeMax, 30000);
    nla_nest_end(m, r);
  });
  const auto bytes = copy_bytes(msg.get());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = parse_reply(std::span<const std::byte>(bytes.data(), n));
    EXPECT_FALSE(r) << "prefix of " << n << " bytes parsed";
  }
}

TEST(PseCodec, RejectsAttributeShorterThanItsType) {
  auto msg = kernel_reply(kMsgPseGetReply, [](nl_msg* m) {
    const std::uint16_t two = 3;
    nla_put(m, kAttrC33PwClass, sizeof two, &two);  // a u32 attribute with 2 bytes
  });
  const auto bytes = copy_bytes(msg.get());
  auto r = parse_reply(bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ParseError::BadAttributes);
}

}  // namespace
}  // namespace ve::poe::pse

namespace ve::poe::pse {
namespace {

// The fuzz seeds are real-shaped kernel messages (GET replies and notifications): each must parse.
TEST(PseCodec, FuzzSeedsParse) {
  const auto dir = std::filesystem::path(VE_SOURCE_DIR) / "fuzz" / "corpus" / "poe";
  int parsed = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(raw.size());
    std::memcpy(bytes.data(), raw.data(), raw.size());
    if (command_of(bytes) == kMsgPseNtf) {
      auto n = parse_notification(bytes);
      ASSERT_TRUE(n) << e.path() << ": " << to_string(n.error());
      EXPECT_EQ(n->ifname, "eth1");
      EXPECT_NE(n->events, 0u);
    } else {
      auto r = parse_reply(bytes);
      ASSERT_TRUE(r) << e.path() << ": " << to_string(r.error());
      EXPECT_EQ(r->ifname, "eth1");
    }
    ++parsed;
  }
  EXPECT_EQ(parsed, 5);
}

}  // namespace
}  // namespace ve::poe::pse
