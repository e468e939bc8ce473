#pragma once
// Phone control over SIP: the unsolicited NOTIFY with "Event: service-control" that Cisco phones
// take from their call manager as "fetch your configuration again" (action=restart) or "reboot"
// (action=reset). The builder is pure; Core::service_control (phone_control.cpp) picks the
// phone's registration, sends over its flow and reports the answer.
#include <cstdint>
#include <string>
#include <string_view>

#include "sip/sip.hpp"
#include "sip/uac.hpp"

namespace ve::sip {

enum class ServiceAction { Restart, Reset };
std::string_view to_string(ServiceAction a);

// The text/plain body, CRLF-terminated lines as Cisco phones expect (the RegisterCallId names the
// registration the command is for; the phone ignores a NOTIFY for a registration it does not hold):
//   action=restart
//   RegisterCallId={<Call-ID of the REGISTER>}
//   ConfigVersionStamp={<versionStamp of SEP<MAC>.cnf.xml>}
//   DialplanVersionStamp={}
//   SoftkeyVersionStamp={}
//   FeatureControlVersionStamp={}
std::string service_control_body(ServiceAction action, std::string_view register_call_id,
                                 std::string_view config_version);

struct ServiceControlNotify {
  ServiceAction action = ServiceAction::Restart;
  Transport transport = Transport::Udp;
  std::string request_uri;  // the phone's registered Contact URI
  std::string to;           // the line's AOR
  std::string local;        // our ip:port towards the phone (Via, From, Contact)
  std::string branch;
  std::string call_id;
  std::string from_tag;
  std::uint32_t cseq = 1;
  std::string register_call_id;
  std::string config_version;
};
std::string build_service_control_notify(const ServiceControlNotify& n);

struct ServiceControlRequest {
  MacAddress mac;
  ServiceAction action = ServiceAction::Restart;
  std::string config_version;
  // The line whose registration carries the NOTIFY (the phone's first line); when that line has
  // no binding, the phone's newest binding is used.
  std::string line_user;
};

// What went out.
struct ServiceControlSent {
  BindingInfo binding;      // the registration it went over
  std::string destination;  // "udp 10.10.100.21:5060", "tcp 10.10.100.21:49152"
  std::string call_id;      // of the NOTIFY
  std::string body;
};

struct ServiceControlResult {
  ServiceControlSent sent;
  ClientOutcome outcome;
};

}  // namespace ve::sip
