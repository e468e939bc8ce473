#pragma once
// Private to poe/: ethtool generic-netlink PSE messages (build requests, parse replies and
// notifications). Pure: bytes in, values out; no sockets. Built into ve_poe_codec.
//
// Our own copies of the kernel's numbers, because distribution headers lag (Debian 12's 6.1
// headers have only the PoDL attributes). Sources: Linux include/uapi/linux/ethtool_netlink.h
// (6.10-6.15), include/uapi/linux/ethtool_netlink_generated.h (generated from
// Documentation/netlink/specs/ethtool.yaml since 6.16; read at torvalds/linux 6.17: attribute-set
// "pse" for PW_D_ID/PRIO_MAX/PRIO, attribute-set "pse-ntf" and enum "pse-event" for PSE_NTF),
// include/uapi/linux/ethtool.h for the C33 enums, Documentation/networking/ethtool-netlink.rst
// "PSE_GET", "PSE_SET" (priority: 0 is the highest, up to PRIO_MAX) and "PSE_NTF"; summarised in
// shared/docs/protocol-notes.md "Linux PSE". UAPI enum values never change once released.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "poe/poe.hpp"
#include "ve/netlink.hpp"
#include "ve/result.hpp"

namespace ve::poe::pse {

inline constexpr const char* kFamilyName = "ethtool";    // ETHTOOL_GENL_NAME
inline constexpr std::uint8_t kFamilyVersion = 1;        // ETHTOOL_GENL_VERSION
inline constexpr const char* kMonitorGroup = "monitor";  // ETHTOOL_MCGRP_MONITOR_NAME

// Commands: user -> kernel (enum ETHTOOL_MSG_*), kernel -> user (enum ETHTOOL_MSG_*_REPLY / _NTF).
inline constexpr std::uint8_t kMsgPseGet = 36;       // ETHTOOL_MSG_PSE_GET, 6.1
inline constexpr std::uint8_t kMsgPseSet = 37;       // ETHTOOL_MSG_PSE_SET, 6.1
inline constexpr std::uint8_t kMsgPseGetReply = 37;  // ETHTOOL_MSG_PSE_GET_REPLY, 6.1
inline constexpr std::uint8_t kMsgPseNtf = 49;       // ETHTOOL_MSG_PSE_NTF, 6.17 (after TSCONFIG_SET_REPLY)

// Request header nest (enum ETHTOOL_A_HEADER_*).
inline constexpr int kAttrHeaderDevIndex = 1;  // u32
inline constexpr int kAttrHeaderDevName = 2;   // string
inline constexpr int kAttrHeaderFlags = 3;     // u32
inline constexpr int kAttrHeaderMax = 4;       // ETHTOOL_A_HEADER_PHY_INDEX (6.12)

// PSE attributes (enum ETHTOOL_A_PSE_*).
inline constexpr int kAttrPseHeader = 1;          // nest, 6.1
inline constexpr int kAttrPodlAdminState = 2;     // u32, 6.1
inline constexpr int kAttrPodlAdminControl = 3;   // u32, 6.1
inline constexpr int kAttrPodlPwDStatus = 4;      // u32, 6.1
inline constexpr int kAttrC33AdminState = 5;      // u32, 6.10
inline constexpr int kAttrC33AdminControl = 6;    // u32, 6.10
inline constexpr int kAttrC33PwDStatus = 7;       // u32, 6.10
inline constexpr int kAttrC33PwClass = 8;         // u32, 6.11
inline constexpr int kAttrC33ActualPw = 9;        // u32 mW, 6.11
inline constexpr int kAttrC33ExtState = 10;       // u32, 6.11
inline constexpr int kAttrC33ExtSubstate = 11;    // u32, 6.11
inline constexpr int kAttrC33AvailPwLimit = 12;   // u32 mW, get/set, 6.11
inline constexpr int kAttrC33PwLimitRanges = 13;  // nest (repeated), 6.11
inline constexpr int kAttrPwDId = 14;             // u32 ETHTOOL_A_PSE_PW_D_ID power domain index, 6.17
inline constexpr int kAttrPrioMax = 15;           // u32 ETHTOOL_A_PSE_PRIO_MAX, only when > 0, 6.17
inline constexpr int kAttrPrio = 16;              // u32 ETHTOOL_A_PSE_PRIO, get/set, 6.17
inline constexpr int kAttrPseMax = 16;

// PSE_NTF attributes (attribute-set "pse-ntf", enum ETHTOOL_A_PSE_NTF_*), 6.17.
inline constexpr int kAttrNtfHeader = 1;  // nest, like ETHTOOL_A_PSE_HEADER
inline constexpr int kAttrNtfEvents = 2;  // "uint" (NLA_UINT: 4 or 8 bytes), enum ethtool_pse_event bits
inline constexpr int kAttrNtfMax = 2;

// enum ethtool_pse_event (flags), 6.17.
namespace event {
inline constexpr std::uint64_t kOverCurrent = 1;        // ETHTOOL_PSE_EVENT_OVER_CURRENT
inline constexpr std::uint64_t kOverTemp = 2;           // ETHTOOL_PSE_EVENT_OVER_TEMP
inline constexpr std::uint64_t kDetection = 4;          // ETHTOOL_C33_PSE_EVENT_DETECTION
inline constexpr std::uint64_t kClassification = 8;     // ETHTOOL_C33_PSE_EVENT_CLASSIFICATION
inline constexpr std::uint64_t kDisconnection = 16;     // ETHTOOL_C33_PSE_EVENT_DISCONNECTION
inline constexpr std::uint64_t kOverBudget = 32;        // ETHTOOL_PSE_EVENT_OVER_BUDGET
inline constexpr std::uint64_t kSwPwControlError = 64;  // ETHTOOL_PSE_EVENT_SW_PW_CONTROL_ERROR
}  // namespace event

// Inside a limit range nest (enum ETHTOOL_A_C33_PSE_PW_LIMIT_*).
inline constexpr int kAttrRangeMin = 1;
inline constexpr int kAttrRangeMax = 2;

// enum ethtool_podl_pse_admin_state / ethtool_c33_pse_admin_state (same values).
inline constexpr std::uint32_t kAdminUnknown = 1;
inline constexpr std::uint32_t kAdminDisabled = 2;
inline constexpr std::uint32_t kAdminEnabled = 3;

// enum ethtool_c33_pse_pw_d_status.
inline constexpr std::uint32_t kC33Unknown = 1;
inline constexpr std::uint32_t kC33Disabled = 2;
inline constexpr std::uint32_t kC33Searching = 3;
inline constexpr std::uint32_t kC33Delivering = 4;
inline constexpr std::uint32_t kC33Test = 5;
inline constexpr std::uint32_t kC33Fault = 6;
inline constexpr std::uint32_t kC33OtherFault = 7;

// enum ethtool_podl_pse_pw_d_status.
inline constexpr std::uint32_t kPodlUnknown = 1;
inline constexpr std::uint32_t kPodlDisabled = 2;
inline constexpr std::uint32_t kPodlSearching = 3;
inline constexpr std::uint32_t kPodlDelivering = 4;
inline constexpr std::uint32_t kPodlSleep = 5;
inline constexpr std::uint32_t kPodlIdle = 6;
inline constexpr std::uint32_t kPodlError = 7;

// enum ethtool_c33_pse_ext_state (6.11).
inline constexpr std::uint32_t kExtErrorCondition = 1;
inline constexpr std::uint32_t kExtMrMpsValid = 2;
inline constexpr std::uint32_t kExtMrPseEnable = 3;
inline constexpr std::uint32_t kExtOptionDetectTed = 4;
inline constexpr std::uint32_t kExtOptionVportLim = 5;
inline constexpr std::uint32_t kExtOvldDetected = 6;
inline constexpr std::uint32_t kExtPdDllPowerType = 7;
inline constexpr std::uint32_t kExtPowerNotAvailable = 8;
inline constexpr std::uint32_t kExtShortDetected = 9;

using NlMsgPtr = nl::MsgPtr;

// Requests. `family` is the resolved id of "ethtool". Each carries the device by name in the
// ETHTOOL_A_PSE_HEADER nest. Null only when libnl cannot allocate.
NlMsgPtr build_get(int family, std::string_view ifname);
NlMsgPtr build_set_c33_admin(int family, std::string_view ifname, bool enabled);
NlMsgPtr build_set_podl_admin(int family, std::string_view ifname, bool enabled);
NlMsgPtr build_set_power_limit(int family, std::string_view ifname, std::uint32_t mw);
NlMsgPtr build_set_priority(int family, std::string_view ifname, std::uint32_t prio);

// A PSE_GET_REPLY or PSE_NTF, attribute by attribute.
struct Reply {
  std::uint8_t cmd = 0;
  std::optional<std::uint32_t> ifindex;
  std::string ifname;
  std::optional<std::uint32_t> podl_admin_state;
  std::optional<std::uint32_t> podl_pw_d_status;
  std::optional<std::uint32_t> c33_admin_state;
  std::optional<std::uint32_t> c33_pw_d_status;
  std::optional<std::uint32_t> c33_pw_class;
  std::optional<std::uint32_t> c33_actual_pw_mw;
  std::optional<std::uint32_t> c33_ext_state;
  std::optional<std::uint32_t> c33_ext_substate;
  std::optional<std::uint32_t> c33_avail_pw_limit_mw;
  struct Range {
    std::uint32_t min_mw = 0;
    std::uint32_t max_mw = 0;
  };
  std::vector<Range> c33_pw_limit_ranges;
  std::optional<std::uint32_t> pw_d_id;
  std::optional<std::uint32_t> prio_max;
  std::optional<std::uint32_t> prio;
};

// A PSE_NTF: which device, which events (enum ethtool_pse_event bits).
struct Notification {
  std::optional<std::uint32_t> ifindex;
  std::string ifname;
  std::uint64_t events = 0;
};

enum class ParseError { Truncated, NotGenetlink, WrongCommand, BadAttributes };
std::string_view to_string(ParseError e);

// One whole netlink message (nlmsghdr + genlmsghdr + attributes) as received: a PSE_GET_REPLY.
Result<Reply, ParseError> parse_reply(std::span<const std::byte> message);
// The generic netlink command of a whole message (to dispatch monitor traffic), if it has one.
std::optional<std::uint8_t> command_of(std::span<const std::byte> message);
// A PSE_NTF (header + events). Other ethtool notifications on the monitor group: WrongCommand.
Result<Notification, ParseError> parse_notification(std::span<const std::byte> message);
// "over-budget, over-current" for the bits set (unknown bits as 0x..).
std::string event_names(std::uint64_t events);

// The driver-neutral view of a reply.
PortStatus to_port_status(const Reply& reply, const std::string& port);
// The driver-neutral view of a notification's events.
PseEvents to_pse_events(std::uint64_t events);
std::string_view ext_state_text(std::uint32_t ext_state);

// The wire bytes of a built message (for tests and tracing).
std::span<const std::byte> bytes_of(nl_msg* msg);

}  // namespace ve::poe::pse
