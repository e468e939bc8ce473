// CDP decoder on arbitrary bytes: never crashes or over-reads (ASan/UBSan), and whatever it accepts
// survives encode -> decode unchanged (except the checksum, which encode recomputes).
#include <cstdlib>

#include "cdp/cdp.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ve::cdp;
  const ByteView input(data, size);
  auto frame = decode_cdp(input);
  auto pdu = decode_cdp_pdu(input);  // the same bytes as a bare PDU reach the TLV parser more often
  for (const auto* decoded : {frame ? &frame->pdu : nullptr, pdu ? &pdu.value() : nullptr}) {
    if (decoded == nullptr) continue;
    const Bytes again = encode_cdp_pdu(*decoded);
    auto back = decode_cdp_pdu(again);
    if (!back) std::abort();
    CdpPdu a = *decoded;
    CdpPdu b = back.value();
    a.checksum = b.checksum = 0;
    if (!(a == b)) std::abort();
  }
  return 0;
}
