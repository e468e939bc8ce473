// The SRST Path flow token as a request from the cluster (or a forger on the voice VLAN) brings it
// back: arbitrary bytes as a Route entry (path_token) and as a token (FlowTokens::parse). A fixed
// key, so a token the fuzzer builds from a made one can verify and take the decoding path too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sip/upstream.hpp"

using namespace ve::sip;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const FlowTokens tokens(std::string("fuzz-key-0123456789abcdef"));
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)path_token(in);
  if (auto flow = tokens.parse(in)) {
    // Whatever verifies must make the same token again.
    if (tokens.make(*flow) != in) __builtin_trap();
  }
  if (auto flow = tokens.parse(path_token(in))) (void)flow->port;
  return 0;
}
