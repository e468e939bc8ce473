// libFuzzer entry for dhcp/'s codec (ve_dhcp_codec). The first byte picks what the rest is fed to:
//   0: a lease-report datagram (decoded reports must re-encode and decode to the same values)
//   1: Kea's memfile lease CSV
//   2: client option 60 and 55 (split at the second byte), through classifier and option builder
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "dhcp/codec.hpp"

namespace dhcp = ve::dhcp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::span<const std::uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto r = dhcp::decode_lease_report(rest);
      if (r) {
        const auto again = dhcp::encode_lease_report(*r);
        auto back =
            dhcp::decode_lease_report(std::span(reinterpret_cast<const std::uint8_t*>(again.data()), again.size()));
        if (!back || back->ip != r->ip || back->mac != r->mac || back->kind != r->kind ||
            back->hostname != r->hostname || back->vendor_class != r->vendor_class)
          std::abort();
      }
      break;
    }
    case 1: {
      const std::string_view csv(reinterpret_cast<const char*>(rest.data()), rest.size());
      (void)dhcp::parse_memfile_leases(csv);
      break;
    }
    case 2: {
      if (rest.empty()) break;
      const std::size_t split = rest[0] % (rest.size());
      const auto option60 = rest.subspan(1, split > 0 ? split - 1 : 0);
      const auto option55 = rest.subspan(option60.size() + 1);
      ve::config::PhoneMatch match;
      match.ouis = {"00:1b:d4"};
      const dhcp::PhoneMatcher matcher(match, {});
      ve::config::Subnet subnet;
      subnet.prefix = {ve::config::Ipv4{0x0a0a6400}, 24};
      subnet.tftp_servers = {{0x0a0a6401}, {0x0a0a6402}};
      const auto reason = matcher.classify(ve::MacAddress({0x00, 0x1b, 0xd4, 1, 2, 3}), option60);
      const auto options = dhcp::build_phone_options(reason, dhcp::RequestedOptions::parse(option55), &subnet);
      if (!options.tftp_servers.empty() && options.tftp_servers.size() != 2) std::abort();
      (void)dhcp::printable(option60);
      break;
    }
  }
  return 0;
}
