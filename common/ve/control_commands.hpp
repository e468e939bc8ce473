#pragma once
// The control API's command names, written once: the daemon registers each handler under its
// name, voiceedgectl sends it. On the command line a name's words are its dot-separated parts
// ("show.cdp.neighbors" is `voiceedgectl show cdp neighbors`).
#include <string>
#include <string_view>
#include <vector>

namespace ve::command {

inline constexpr const char* kVersion = "version";
inline constexpr const char* kReload = "reload";
inline constexpr const char* kShowConfig = "show.config";
inline constexpr const char* kShowPhones = "show.phones";
inline constexpr const char* kShowJourney = "show.journey";
inline constexpr const char* kShowInterfaces = "show.interfaces";
inline constexpr const char* kShowPowerInline = "show.power.inline";
inline constexpr const char* kPowerInline = "power.inline";
inline constexpr const char* kShowCdpNeighbors = "show.cdp.neighbors";
inline constexpr const char* kShowDhcpLeases = "show.dhcp.leases";
inline constexpr const char* kShowProvision = "show.provision";
inline constexpr const char* kShowSipRegistrations = "show.sip.registrations";
inline constexpr const char* kShowSipUpstream = "show.sip.upstream";
inline constexpr const char* kShowCalls = "show.calls";
inline constexpr const char* kShowDiag = "show.diag";
inline constexpr const char* kCapture = "capture";
inline constexpr const char* kReport = "report";
inline constexpr const char* kPhoneRestart = "phone.restart";
inline constexpr const char* kPhoneReset = "phone.reset";
inline constexpr const char* kPhonePowerCycle = "phone.power-cycle";

// "show.cdp.neighbors" -> {"show", "cdp", "neighbors"}
inline std::vector<std::string> words(std::string_view name) {
  std::vector<std::string> out;
  while (true) {
    const auto dot = name.find('.');
    out.emplace_back(name.substr(0, dot));
    if (dot == std::string_view::npos) return out;
    name.remove_prefix(dot + 1);
  }
}

}  // namespace ve::command
