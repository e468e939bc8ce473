#pragma once
// PhoneEvent: the one event type every component reports into the journey tracker.
// Steps are numbered as in shared/docs/phone-boot-sequence.md.
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ve/mac.hpp"

namespace ve {

enum class Step : int {
  Power = 1,
  Firmware = 2,
  VoiceVlan = 3,
  Dhcp = 4,
  CtlFile = 5,
  ItlFile = 6,
  ConfigFile = 7,
  FirmwareLoad = 8,
  DialRules = 9,
  CallManagerConnect = 10,
  Register = 11,
  Locale = 12,
  Softkeys = 13,
  Ringtones = 14,
  // After the boot: the phone in service (calls placed and received, call failures). Not a boot
  // step: kept in the timeline's history and facts, never in the fourteen-step table.
  InService = 15,
};
inline constexpr int kStepCount = 14;

inline std::string_view to_string(Step s) {
  switch (s) {
    case Step::Power: return "power";
    case Step::Firmware: return "firmware-boot";
    case Step::VoiceVlan: return "voice-vlan";
    case Step::Dhcp: return "dhcp";
    case Step::CtlFile: return "ctl";
    case Step::ItlFile: return "itl";
    case Step::ConfigFile: return "config";
    case Step::FirmwareLoad: return "firmware-load";
    case Step::DialRules: return "dial-rules";
    case Step::CallManagerConnect: return "callmanager-connect";
    case Step::Register: return "register";
    case Step::Locale: return "locale";
    case Step::Softkeys: return "softkeys";
    case Step::Ringtones: return "ringtones";
    case Step::InService: return "in-service";
  }
  return "?";
}

// Ok: the step succeeded. Expected: an answer that is not success but is normal (CTL not found on
// a non-secure site). Failed: the phone cannot go on. Info: something happened worth recording
// (a refresh, an unplug) that does not change whether the step succeeded.
enum class Outcome { Ok, Expected, Failed, Info };

inline std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Expected: return "expected";
    case Outcome::Failed: return "failed";
    case Outcome::Info: return "info";
  }
  return "?";
}

struct PhoneEvent {
  MacAddress mac;
  Step step = Step::Power;
  Outcome outcome = Outcome::Info;
  std::string detail;  // short, never a secret
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  // Optional attributes a component knows and the tracker keeps for Device Status.
  std::string port;  // phone-facing interface, if known
  std::string ip;    // phone's IPv4 address, if known
  // Further facts for Device Status, by name: "model", "vlan", "power_w", "registered_with",
  // "active_load", "inactive_load", "device_name", "user_agent". Never a secret.
  std::vector<std::pair<std::string, std::string>> attributes;
  // The MAC is backed by evidence a host on the voice VLAN cannot forge by itself (an
  // authenticated REGISTER, a lease match), set by the component that has it. False when `mac` is
  // a claim nobody checked: the tracker does not let it change a known phone's state or IP, and
  // keeps such unlisted MACs only in a small ageing table.
  bool verified = false;
  // A notice about the phone that it did not cause (a refused request for its config from another
  // host): kept in its history, changes neither a step's state nor any fact (ip, port, …).
  bool history_only = false;
};

// Components get an EventSink& at construction and never see the tracker.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void report(PhoneEvent event) = 0;
};

// A sink that drops everything, for components run without a tracker.
class NullEventSink final : public EventSink {
 public:
  void report(PhoneEvent) override {}
};

}  // namespace ve
