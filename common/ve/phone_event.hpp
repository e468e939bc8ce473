#pragma once
// PhoneEvent: the one event type every component reports into the journey tracker.
// Steps are numbered as in shared/docs/phone-boot-sequence.md.
#include <chrono>
#include <optional>
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

// What Device Status shows about a phone beyond its steps. Components attach facts to events; the
// tracker keeps the newest value of each. A closed set, so that a fact one folder writes under a
// misspelt name cannot silently vanish from Device Status; `to_string` is the name the state file
// and the JSON API use (never change one: state files written by an older daemon use it).
enum class Fact : int {
  Ip,                // IPv4 address the lease or the site file ties to the phone
  Port,              // phone-facing interface
  Model,             // platform reported by CDP/LLDP
  DeviceName,        // CDP device id
  Vlan,              // voice VLAN the box advertised to it
  PowerW,            // PoE power allocated now, in W
  RegisteredWith,    // "Registered with <this>"
  RegistrationMode,  // local | upstream <name> | survivable
  ActiveLoad,        // firmware the phone runs (REGISTER's Reason: ActiveLoad=)
  InactiveLoad,      // the other firmware bank
  UserAgent,         // the REGISTER's User-Agent
  DownloadStatus,    // the last firmware load download, as the phone's Device Status shows it
  LastCall,          // the last call placed or received, with its end
  LastCallTime,      // when it ended (ISO 8601, set by the tracker from the event's time)
  LastCallFailure,   // the last call that failed, with why
};
inline constexpr Fact kFacts[] = {Fact::Ip,         Fact::Port,         Fact::Model,          Fact::DeviceName,
                                  Fact::Vlan,       Fact::PowerW,       Fact::RegisteredWith, Fact::RegistrationMode,
                                  Fact::ActiveLoad, Fact::InactiveLoad, Fact::UserAgent,      Fact::DownloadStatus,
                                  Fact::LastCall,   Fact::LastCallTime, Fact::LastCallFailure};

inline std::string_view to_string(Fact f) {
  switch (f) {
    case Fact::Ip: return "ip";
    case Fact::Port: return "port";
    case Fact::Model: return "model";
    case Fact::DeviceName: return "device_name";
    case Fact::Vlan: return "vlan";
    case Fact::PowerW: return "power_w";
    case Fact::RegisteredWith: return "registered_with";
    case Fact::RegistrationMode: return "registration_mode";
    case Fact::ActiveLoad: return "active_load";
    case Fact::InactiveLoad: return "inactive_load";
    case Fact::UserAgent: return "user_agent";
    case Fact::DownloadStatus: return "download_status";
    case Fact::LastCall: return "last_call";
    case Fact::LastCallTime: return "last_call_time";
    case Fact::LastCallFailure: return "last_call_failure";
  }
  return "?";
}

// The fact a persisted name stands for; nullopt for a name this build does not know.
inline std::optional<Fact> fact_from_string(std::string_view name) {
  for (Fact f : kFacts)
    if (to_string(f) == name) return f;
  return std::nullopt;
}

using Facts = std::vector<std::pair<Fact, std::string>>;

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
  std::string port;  // phone-facing interface, if known (becomes Fact::Port)
  std::string ip;    // phone's IPv4 address, if known (becomes Fact::Ip)
  // Further facts for Device Status. Never a secret.
  Facts attributes;
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
