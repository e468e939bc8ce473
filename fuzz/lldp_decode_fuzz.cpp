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
  }
  return 0;
}
