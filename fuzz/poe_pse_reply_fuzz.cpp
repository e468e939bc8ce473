// libFuzzer: ethtool PSE_GET_REPLY / PSE_NTF parsing and the mapping to a port status.
#include <cstddef>
#include <cstdint>
#include <span>

#include "poe/pse_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = ve::poe::pse::parse_reply(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  if (parsed) {
    auto status = ve::poe::pse::to_port_status(*parsed, "fuzz0");
    (void)status;
  }
  return 0;
}
