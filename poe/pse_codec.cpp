// ethtool PSE generic-netlink messages: built with libnl's message API, parsed with its attribute
// parser. No sockets here.
#include <algorithm>
#include "poe/pse_codec.hpp"

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <utility>

namespace ve::poe::pse {

namespace {

// Starts a request to `family` with the device header every PSE request carries.
NlMsgPtr start_request(int family, std::uint8_t cmd, std::string_view ifname) {
  NlMsgPtr msg(nlmsg_alloc());
  if (!msg) return nullptr;
  // NLM_F_ACK so that every exchange ends with an explicit ack or error.
  if (genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, NLM_F_REQUEST | NLM_F_ACK, cmd, kFamilyVersion) ==
      nullptr) {
    return nullptr;
  }
  // The kernel validates ethtool nests strictly: NLA_F_NESTED must be set.
  nlattr* header = nla_nest_start(msg.get(), kAttrPseHeader | NLA_F_NESTED);
  if (header == nullptr) return nullptr;
  const std::string name(ifname);
  if (nla_put_string(msg.get(), kAttrHeaderDevName, name.c_str()) < 0) return nullptr;
  if (nla_nest_end(msg.get(), header) < 0) return nullptr;
  return msg;
}

NlMsgPtr with_u32(NlMsgPtr msg, int attr, std::uint32_t value) {
  if (!msg) return msg;
  if (nla_put_u32(msg.get(), attr, value) < 0) return nullptr;
  return msg;
}

std::optional<std::uint32_t> get_u32(nlattr* const* tb, int attr) {
  if (tb[attr] == nullptr) return std::nullopt;
  return nla_get_u32(tb[attr]);
}

}  // namespace

NlMsgPtr build_get(int family, std::string_view ifname) { return start_request(family, kMsgPseGet, ifname); }

NlMsgPtr build_set_c33_admin(int family, std::string_view ifname, bool enabled) {
  return with_u32(start_request(family, kMsgPseSet, ifname), kAttrC33AdminControl,
                  enabled ? kAdminEnabled : kAdminDisabled);
}

NlMsgPtr build_set_podl_admin(int family, std::string_view ifname, bool enabled) {
  return with_u32(start_request(family, kMsgPseSet, ifname), kAttrPodlAdminControl,
                  enabled ? kAdminEnabled : kAdminDisabled);
}

NlMsgPtr build_set_power_limit(int family, std::string_view ifname, std::uint32_t mw) {
  return with_u32(start_request(family, kMsgPseSet, ifname), kAttrC33AvailPwLimit, mw);
}

NlMsgPtr build_set_priority(int family, std::string_view ifname, std::uint32_t prio) {
  return with_u32(start_request(family, kMsgPseSet, ifname), kAttrPrio, prio);
}

std::span<const std::byte> bytes_of(nl_msg* msg) {
  nlmsghdr* hdr = nlmsg_hdr(msg);
  return {reinterpret_cast<const std::byte*>(hdr), hdr->nlmsg_len};
}

std::string_view to_string(ParseError e) {
  switch (e) {
    case ParseError::Truncated: return "truncated";
    case ParseError::NotGenetlink: return "not a generic netlink message";
    case ParseError::WrongCommand: return "not a PSE reply or notification";
    case ParseError::BadAttributes: return "bad attributes";
  }
  return "?";
}

namespace {

// A received message copied to 4-byte alignment (netlink structures need it; the input may be any
// slice: fuzzing, tests), with its headers checked.
struct Aligned {
  std::vector<std::uint32_t> words;
  nlmsghdr* nlh = nullptr;
  const genlmsghdr* genl = nullptr;
};

Result<Aligned, ParseError> align(std::span<const std::byte> message) {
  if (message.size() < NLMSG_HDRLEN + GENL_HDRLEN) return unexpected(ParseError::Truncated);
  // A netlink message is far below 1 MiB; the explicit bound also lets GCC 12 see that the copy
  // below fits (it otherwise warns -Wstringop-overflow on an impossible size range).
  const std::size_t size = message.size();
  if (size > (std::size_t{1} << 20)) return unexpected(ParseError::Truncated);
  Aligned a;
  a.words.resize((size + 3) / 4);
  std::memcpy(a.words.data(), message.data(), size);
  a.nlh = reinterpret_cast<nlmsghdr*>(a.words.data());
  if (a.nlh->nlmsg_len < NLMSG_HDRLEN + GENL_HDRLEN || a.nlh->nlmsg_len > message.size()) {
    return unexpected(ParseError::Truncated);
  }
  if (!genlmsg_valid_hdr(a.nlh, 0)) return unexpected(ParseError::NotGenetlink);
  a.genl = static_cast<const genlmsghdr*>(nlmsg_data(a.nlh));
  return a;
}

// The ETHTOOL_A_HEADER_* nest every reply and notification starts with.
bool parse_header(nlattr* nest, std::optional<std::uint32_t>& ifindex, std::string& ifname) {
  std::array<nla_policy, kAttrHeaderMax + 1> hpol{};
  hpol[kAttrHeaderDevIndex].type = NLA_U32;
  hpol[kAttrHeaderDevName].type = NLA_UNSPEC;  // read by length below
  hpol[kAttrHeaderFlags].type = NLA_U32;
  std::array<nlattr*, kAttrHeaderMax + 1> htb{};
  if (nla_parse_nested(htb.data(), kAttrHeaderMax, nest, hpol.data()) < 0) return false;
  ifindex = get_u32(htb.data(), kAttrHeaderDevIndex);
  if (nlattr* name = htb[kAttrHeaderDevName]) {
    const auto* data = static_cast<const char*>(nla_data(name));
    const auto len = static_cast<std::size_t>(nla_len(name));
    ifname.assign(data, strnlen(data, len));
  }
  return true;
}

}  // namespace

std::optional<std::uint8_t> command_of(std::span<const std::byte> message) {
  auto a = align(message);
  if (!a) return std::nullopt;
  return a->genl->cmd;
}

Result<Notification, ParseError> parse_notification(std::span<const std::byte> message) {
  auto a = align(message);
  if (!a) return unexpected(a.error());
  if (a->genl->cmd != kMsgPseNtf) return unexpected(ParseError::WrongCommand);
  std::array<nla_policy, kAttrNtfMax + 1> policy{};
  policy[kAttrNtfHeader].type = NLA_NESTED;
  policy[kAttrNtfEvents].type = NLA_UNSPEC;  // NLA_UINT (4 or 8 bytes): libnl 3.7 has no type for it
  std::array<nlattr*, kAttrNtfMax + 1> tb{};
  if (genlmsg_parse(a->nlh, 0, tb.data(), kAttrNtfMax, policy.data()) < 0) {
    return unexpected(ParseError::BadAttributes);
  }
  Notification n;
  if (tb[kAttrNtfHeader] != nullptr && !parse_header(tb[kAttrNtfHeader], n.ifindex, n.ifname)) {
    return unexpected(ParseError::BadAttributes);
  }
  nlattr* events = tb[kAttrNtfEvents];
  if (events == nullptr) return unexpected(ParseError::BadAttributes);  // the kernel never sends none
  if (nla_len(events) == 4) {
    n.events = nla_get_u32(events);
  } else if (nla_len(events) == 8) {
    n.events = nla_get_u64(events);
  } else {
    return unexpected(ParseError::BadAttributes);
  }
  return n;
}

std::string event_names(std::uint64_t events) {
  static constexpr std::pair<std::uint64_t, const char*> kNames[] = {{event::kOverBudget, "over-budget"},
                                                                     {event::kOverCurrent, "over-current"},
                                                                     {event::kOverTemp, "over-temperature"},
                                                                     {event::kDisconnection, "disconnection"},
                                                                     {event::kDetection, "detection"},
                                                                     {event::kClassification, "classification"},
                                                                     {event::kSwPwControlError, "power control error"}};
  std::string out;
  std::uint64_t known = 0;
  for (const auto& [bit, name] : kNames) {
    known |= bit;
    if ((events & bit) == 0) continue;
    if (!out.empty()) out += ", ";
    out += name;
  }
  if ((events & ~known) != 0) {
    if (!out.empty()) out += ", ";
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(events & ~known));
    out += buf;
  }
  return out;
}

PseEvents to_pse_events(std::uint64_t events) {
  PseEvents e;
  e.over_current = (events & event::kOverCurrent) != 0;
  e.over_temperature = (events & event::kOverTemp) != 0;
  e.detection = (events & event::kDetection) != 0;
  e.classification = (events & event::kClassification) != 0;
  e.disconnection = (events & event::kDisconnection) != 0;
  e.over_budget = (events & event::kOverBudget) != 0;
  e.power_control_error = (events & event::kSwPwControlError) != 0;
  e.unknown = events & ~(event::kOverCurrent | event::kOverTemp | event::kDetection | event::kClassification |
                         event::kDisconnection | event::kOverBudget | event::kSwPwControlError);
  return e;
}

Result<Reply, ParseError> parse_reply(std::span<const std::byte> message) {
  auto aligned = align(message);
  if (!aligned) return unexpected(aligned.error());
  nlmsghdr* nlh = aligned->nlh;
  const genlmsghdr* genl = aligned->genl;
  // A PSE_NTF has its own attribute set (pse-ntf); only PSE_GET_REPLY carries this one.
  if (genl->cmd != kMsgPseGetReply) return unexpected(ParseError::WrongCommand);

  std::array<nla_policy, kAttrPseMax + 1> policy{};
  policy[kAttrPseHeader].type = NLA_NESTED;
  for (int a : {kAttrPodlAdminState, kAttrPodlAdminControl, kAttrPodlPwDStatus, kAttrC33AdminState,
                kAttrC33AdminControl, kAttrC33PwDStatus, kAttrC33PwClass, kAttrC33ActualPw, kAttrC33ExtState,
                kAttrC33ExtSubstate, kAttrC33AvailPwLimit, kAttrPwDId, kAttrPrioMax, kAttrPrio}) {
    policy[static_cast<std::size_t>(a)].type = NLA_U32;
  }
  policy[kAttrC33PwLimitRanges].type = NLA_NESTED;

  std::array<nlattr*, kAttrPseMax + 1> tb{};
  if (genlmsg_parse(nlh, 0, tb.data(), kAttrPseMax, policy.data()) < 0) {
    return unexpected(ParseError::BadAttributes);
  }

  Reply reply;
  reply.cmd = genl->cmd;
  if (tb[kAttrPseHeader] != nullptr && !parse_header(tb[kAttrPseHeader], reply.ifindex, reply.ifname)) {
    return unexpected(ParseError::BadAttributes);
  }
  reply.podl_admin_state = get_u32(tb.data(), kAttrPodlAdminState);
  reply.podl_pw_d_status = get_u32(tb.data(), kAttrPodlPwDStatus);
  reply.c33_admin_state = get_u32(tb.data(), kAttrC33AdminState);
  reply.c33_pw_d_status = get_u32(tb.data(), kAttrC33PwDStatus);
  reply.c33_pw_class = get_u32(tb.data(), kAttrC33PwClass);
  reply.c33_actual_pw_mw = get_u32(tb.data(), kAttrC33ActualPw);
  reply.c33_ext_state = get_u32(tb.data(), kAttrC33ExtState);
  reply.c33_ext_substate = get_u32(tb.data(), kAttrC33ExtSubstate);
  reply.c33_avail_pw_limit_mw = get_u32(tb.data(), kAttrC33AvailPwLimit);
  reply.pw_d_id = get_u32(tb.data(), kAttrPwDId);
  reply.prio_max = get_u32(tb.data(), kAttrPrioMax);
  reply.prio = get_u32(tb.data(), kAttrPrio);

  // Limit ranges repeat at the top level; nla_parse keeps only the last, so walk them all.
  const int attrs_len = genlmsg_attrlen(genl, 0);
  nlattr* head = genlmsg_attrdata(genl, 0);
  nlattr* pos = nullptr;
  int rem = 0;
  nla_for_each_attr(pos, head, attrs_len, rem) {
    if (nla_type(pos) != kAttrC33PwLimitRanges) continue;
    std::array<nla_policy, kAttrRangeMax + 1> rpol{};
    rpol[kAttrRangeMin].type = NLA_U32;
    rpol[kAttrRangeMax].type = NLA_U32;
    std::array<nlattr*, kAttrRangeMax + 1> rtb{};
    if (nla_parse_nested(rtb.data(), kAttrRangeMax, pos, rpol.data()) < 0) {
      return unexpected(ParseError::BadAttributes);
    }
    if (rtb[kAttrRangeMin] == nullptr || rtb[kAttrRangeMax] == nullptr) {
      return unexpected(ParseError::BadAttributes);
    }
    reply.c33_pw_limit_ranges.push_back({nla_get_u32(rtb[kAttrRangeMin]), nla_get_u32(rtb[kAttrRangeMax])});
  }
  return reply;
}

std::string_view ext_state_text(std::uint32_t ext_state) {
  switch (ext_state) {
    case kExtErrorCondition: return "error condition";
    case kExtMrMpsValid: return "no maintain power signature";
    case kExtMrPseEnable: return "disabled by management";
    case kExtOptionDetectTed: return "detection timing";
    case kExtOptionVportLim: return "port voltage out of range";
    case kExtOvldDetected: return "over-current";
    case kExtPdDllPowerType: return "PD power type";
    case kExtPowerNotAvailable: return "power not available";
    case kExtShortDetected: return "short circuit";
    default: return "fault";
  }
}

namespace {

AdminState admin_of(std::uint32_t v) {
  switch (v) {
    case kAdminDisabled: return AdminState::Disabled;
    case kAdminEnabled: return AdminState::Enabled;
    default: return AdminState::Unknown;
  }
}

Detection c33_detection(std::uint32_t v) {
  switch (v) {
    case kC33Disabled: return Detection::Disabled;
    case kC33Searching: return Detection::Searching;
    case kC33Delivering: return Detection::Delivering;
    case kC33Test: return Detection::Test;
    case kC33Fault: return Detection::Fault;
    case kC33OtherFault: return Detection::OtherFault;
    default: return Detection::Unknown;
  }
}

Detection podl_detection(std::uint32_t v) {
  switch (v) {
    case kPodlDisabled: return Detection::Disabled;
    case kPodlSearching:
    case kPodlSleep:
    case kPodlIdle: return Detection::Searching;
    case kPodlDelivering: return Detection::Delivering;
    case kPodlError: return Detection::Fault;
    default: return Detection::Unknown;
  }
}

}  // namespace

PortStatus to_port_status(const Reply& reply, const std::string& port) {
  PortStatus s;
  s.port = port;
  // A port is C33 (PoE) or PoDL; prefer C33 when the kernel reports both.
  if (reply.c33_admin_state) {
    s.admin = admin_of(*reply.c33_admin_state);
  } else if (reply.podl_admin_state) {
    s.admin = admin_of(*reply.podl_admin_state);
  }
  if (reply.c33_pw_d_status) {
    s.detection = c33_detection(*reply.c33_pw_d_status);
  } else if (reply.podl_pw_d_status) {
    s.detection = podl_detection(*reply.podl_pw_d_status);
  }
  if (reply.c33_pw_class) s.power_class = static_cast<int>(*reply.c33_pw_class);
  if (reply.c33_actual_pw_mw) s.actual_mw = *reply.c33_actual_pw_mw;
  s.limit_mw = reply.c33_avail_pw_limit_mw;
  for (const auto& r : reply.c33_pw_limit_ranges) {
    if (!s.limit_max_mw || r.max_mw > *s.limit_max_mw) s.limit_max_mw = r.max_mw;
    s.limit_ranges.push_back(LimitRange{r.min_mw, r.max_mw});
  }
  if (s.detection == Detection::Fault || s.detection == Detection::OtherFault) {
    s.fault = reply.c33_ext_state ? std::string(ext_state_text(*reply.c33_ext_state)) : "fault";
  }
  s.ext_state = reply.c33_ext_state.value_or(0);
  // The kernel sends PRIO_MAX and PRIO only together, and only when PRIO_MAX > 0.
  if (reply.prio_max && *reply.prio_max > 0) {
    s.priority_max = reply.prio_max;
    s.priority = reply.prio;
  }
  s.power_domain = reply.pw_d_id;
  return s;
}

}  // namespace ve::poe::pse
