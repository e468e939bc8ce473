// LLDP(-MED) decoder on arbitrary bytes: never crashes or over-reads (ASan/UBSan), and whatever it
// accepts survives encode -> decode unchanged.
#include <cstdlib>

#include "cdp/cdp.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ve::cdp;
  const ByteView input(data, size);
  auto frame = decode_lldp(input);
  auto pdu = decode_lldp_pdu(input);
  for (const auto* decoded : {frame ? &frame->pdu : nullptr, pdu ? &pdu.value() : nullptr}) {
    if (decoded == nullptr) continue;
    auto back = decode_lldp_pdu(encode_lldp_pdu(*decoded));
    if (!back || !(back.value() == *decoded)) std::abort();
    // What `show cdp neighbors` prints of it: addresses, ids and capabilities from any bytes.
    for (const auto& m : decoded->management_addresses) (void)m.to_string();
    (void)decoded->chassis_id.to_string(true);
    (void)decoded->port_id.to_string(false);
    (void)lldp_capability_names(decoded->system_capabilities.value_or(0));
    (void)lldp_capability_letters(decoded->enabled_capabilities.value_or(0));
  }
  return 0;
}
