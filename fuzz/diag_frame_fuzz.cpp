// Frame classifier and packet scrubber on arbitrary bytes: never crash or read past the frame,
// the payload they report lies inside it, and scrubbing keeps every length.
#include <cstdlib>

#include "diag/diag.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ve::diag;
  const ByteView input(data, size);
  auto info = classify_frame(input);
  if (info && info->payload_offset + info->payload_length > size) std::abort();
  if (!info && size >= 14) std::abort();
  // Two halves as two packets of what may be one flow: the cross-boundary path runs.
  std::vector<Packet> packets(2);
  packets[0].data.assign(data, data + size);
  packets[1].data.assign(data + size / 2, data + size);
  const auto before0 = packets[0].data.size();
  const auto before1 = packets[1].data.size();
  scrub(packets, {"pw-1001", "ab", "x"});
  if (packets[0].data.size() != before0 || packets[1].data.size() != before1) std::abort();
  PcapngWriter w;
  Packet p;
  p.interface = "fuzz";
  p.data.assign(data, data + size);
  const auto block = w.packet(p);
  if (block.size() % 4 != 0) std::abort();
  return 0;
}
