// libFuzzer target: every datagram the TFTP server can receive goes through decode(); requests then
// through negotiate(). Decoded requests must survive an encode/decode round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "provision/tftp_codec.hpp"

namespace t = ve::provision::tftp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto packet = t::decode(bytes);
  if (!packet) return 0;
  if (const auto* request = std::get_if<t::Request>(&*packet)) {
    // Negotiation never fails (RFC 2347): whatever the options, the values stay in range and every
    // option is either acknowledged or listed as ignored.
    const t::NegotiationLimits limits;
    const auto negotiated = t::negotiate(request->options, size * 1000, limits);
    if (negotiated.blksize < 8 || negotiated.blksize > limits.max_blksize || negotiated.windowsize < 1 ||
        negotiated.windowsize > limits.max_windowsize ||
        (negotiated.timeout_s && (*negotiated.timeout_s < 1 || *negotiated.timeout_s > limits.max_timeout_s)) ||
        negotiated.oack.size() + negotiated.ignored.size() != request->options.size())
      std::abort();
    auto again = t::decode(t::encode(*request));
    if (!again) std::abort();
    const auto& r2 = std::get<t::Request>(*again);
    if (r2.filename != request->filename || r2.mode != request->mode || r2.options != request->options ||
        r2.write != request->write) {
      std::abort();
    }
  } else if (const auto* d = std::get_if<t::Data>(&*packet)) {
    (void)t::to_netascii(d->payload);
  }
  return 0;
}
