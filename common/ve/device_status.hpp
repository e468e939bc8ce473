#pragma once
// The Device Status fields, labelled as a Cisco phone's Settings > Status shows them (the note's
// first place to look), keyed as the daemon's JSON names them (`show journey`'s "phone" object,
// written by JourneyTracker::device_status). voiceedgectl and the status page both print from
// this one table, so a field cannot be renamed on one side only.
#include <array>
#include <span>
#include <string_view>

namespace ve {

struct DeviceStatusField {
  std::string_view key;    // in the JSON
  std::string_view label;  // as printed
};

inline constexpr std::array<DeviceStatusField, 9> kDeviceStatusFields{{
    // What the phone's own Device Status screen shows.
    {"registration", "Registration"},
    {"ipv4_address", "IPv4 Address"},
    {"active_load_id", "Active Load ID"},
    {"inactive_load_id", "Inactive Load ID"},
    {"download_status", "Download Status"},
    // What only the box knows.
    {"port", "Port"},
    {"power_w", "Power (W)"},
    {"vlan", "Voice VLAN"},
    {"model", "Model"},
}};

// The first five: the phone's own screen.
inline constexpr std::span<const DeviceStatusField> phone_screen_fields() {
  return std::span<const DeviceStatusField>(kDeviceStatusFields).first(5);
}

}  // namespace ve
