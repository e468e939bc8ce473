// The first byte picks the parser, the rest is its input: a DHCP reply frame, a WWW-Authenticate
// value, a phone config file or a .loads list. None may crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "phonesim/phonesim.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t which = data[0] % 4;
  const ve::phonesim::ByteView bytes(data + 1, size - 1);
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (which) {
    case 0: {
      auto r = ve::phonesim::decode_dhcp_frame(bytes);
      if (r) (void)ve::phonesim::decode_dhcp_message(bytes);
      break;
    }
    case 1: {
      auto c = ve::phonesim::parse_digest_challenge(text);
      if (c) (void)ve::phonesim::authorization_value(*c, {"u", "p", "REGISTER", "sip:h", "c", 1});
      break;
    }
    case 2: (void)ve::phonesim::parse_phone_config(text); break;
    case 3: (void)ve::phonesim::parse_loads_file(text); break;
  }
  return 0;
}
