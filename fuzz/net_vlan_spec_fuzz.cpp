// libFuzzer: net::decode_vlan_spec never reads out of bounds and, when it accepts input, every
// VLAN it returns is in range; what it accepts re-encodes to something it accepts again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "net/net.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto spec = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size);
  auto vlans = ve::net::decode_vlan_spec(spec);
  if (!vlans) return 0;
  for (const auto& v : *vlans) {
    if (v.vid < 1 || v.vid > 4094) std::abort();
    auto again = ve::net::decode_vlan_spec(ve::net::encode_vlan_spec(v, false));
    if (!again || again->size() != 1 || (*again)[0] != v) std::abort();
  }
  return 0;
}
