// Names and tables shared by the drivers and the manager.
#include <algorithm>
#include <array>

#include "poe/poe.hpp"

namespace ve::poe {

std::string_view to_string(AdminState s) {
  switch (s) {
    case AdminState::Unknown: return "unknown";
    case AdminState::Disabled: return "disabled";
    case AdminState::Enabled: return "enabled";
  }
  return "?";
}

std::string_view to_string(Detection d) {
  switch (d) {
    case Detection::Unknown: return "unknown";
    case Detection::Disabled: return "disabled";
    case Detection::Searching: return "searching";
    case Detection::Delivering: return "delivering";
    case Detection::Test: return "test";
    case Detection::Fault: return "fault";
    case Detection::OtherFault: return "other-fault";
    case Detection::NoPse: return "no PSE attached";
  }
  return "?";
}

std::string_view to_string(DriverErrorCode c) {
  switch (c) {
    case DriverErrorCode::NoSuchPort: return "no-such-port";
    case DriverErrorCode::NoPse: return "no-pse";
    case DriverErrorCode::NotSupported: return "not-supported";
    case DriverErrorCode::PermissionDenied: return "permission-denied";
    case DriverErrorCode::Busy: return "busy";
    case DriverErrorCode::Io: return "io";
    case DriverErrorCode::Invalid: return "invalid";
  }
  return "?";
}

std::string_view to_string(Oper o) {
  switch (o) {
    case Oper::Off: return "off";
    case Oper::Searching: return "searching";
    case Oper::On: return "on";
    case Oper::Denied: return "denied";
    case Oper::Shed: return "shed";
    case Oper::Fault: return "fault";
    case Oper::NoPse: return "no-pse";
    case Oper::Error: return "error";
  }
  return "?";
}

std::uint32_t class_power_mw(int power_class) {
  // Power at the PSE per class: 802.3af classes 0-3, 802.3at class 4, 802.3bt classes 5-8.
  static constexpr std::array<std::uint32_t, 9> kByClass{15400, 4000, 7000, 15400, 30000, 45000, 60000, 75000, 90000};
  if (power_class < 0 || power_class >= static_cast<int>(kByClass.size())) return kByClass[0];
  return kByClass[static_cast<std::size_t>(power_class)];
}

std::uint32_t pse_priority_for(config::PoePriority priority, std::uint32_t prio_max) {
  switch (priority) {
    case config::PoePriority::Critical: return 0;
    case config::PoePriority::High: return std::min<std::uint32_t>(1, prio_max);
    case config::PoePriority::Low: return prio_max;
  }
  return prio_max;
}

std::uint32_t fit_power_limit(std::uint32_t wanted_mw, const std::vector<LimitRange>& ranges) {
  if (ranges.empty()) return wanted_mw;
  std::optional<std::uint32_t> next_min;
  std::uint32_t highest = 0;
  for (const auto& r : ranges) {
    if (wanted_mw >= r.min_mw && wanted_mw <= r.max_mw) return wanted_mw;
    if (r.min_mw > wanted_mw && (!next_min || r.min_mw < *next_min)) next_min = r.min_mw;
    highest = std::max(highest, r.max_mw);
  }
  return next_min.value_or(highest);
}

Clock steady_clock_now() {
  return [] { return std::chrono::steady_clock::now(); };
}

}  // namespace ve::poe
