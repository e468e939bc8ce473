// libFuzzer: ethtool PSE_GET_REPLY / PSE_NTF parsing and the mapping to a port status and events.
#include <cstddef>
#include <cstdint>
#include <span>

#include "poe/pse_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = ve::poe::pse::parse_reply(bytes);
  if (parsed) {
    auto status = ve::poe::pse::to_port_status(*parsed, "fuzz0");
    (void)status;
  }
  // The monitor group's messages: any ethtool notification, PSE_NTF among them.
  (void)ve::poe::pse::command_of(bytes);
  auto ntf = ve::poe::pse::parse_notification(bytes);
  if (ntf) {
    (void)ve::poe::pse::to_pse_events(ntf->events);
    (void)ve::poe::pse::event_names(ntf->events);
  }
  return 0;
}
