#pragma once
// IPv4 addresses and prefixes as text, the one parser every folder uses (the site file, Kea's
// lease reports and lease file, the phone simulator, CDP/LLDP management addresses, the VLAN data
// plane). Addresses are host byte order. Strict like inet_pton: four dotted decimal parts 0-255,
// no leading zeros, signs, spaces or trailing text.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ve {

inline std::optional<std::uint32_t> parse_ipv4(std::string_view text) {
  std::uint32_t out = 0;
  std::size_t i = 0;
  for (int part = 0; part < 4; ++part) {
    if (part != 0) {
      if (i >= text.size() || text[i] != '.') return std::nullopt;
      ++i;
    }
    const std::size_t start = i;
    std::uint32_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3) {
      v = v * 10 + static_cast<std::uint32_t>(text[i] - '0');
      ++i;
    }
    const std::size_t digits = i - start;
    if (digits == 0 || v > 255 || (digits > 1 && text[start] == '0')) return std::nullopt;
    out = (out << 8) | v;
  }
  if (i != text.size()) return std::nullopt;
  return out;
}

inline std::string format_ipv4(std::uint32_t a) {
  std::string s;
  s.reserve(15);
  for (int shift = 24; shift >= 0; shift -= 8) {
    s += std::to_string((a >> shift) & 0xff);
    if (shift != 0) s.push_back('.');
  }
  return s;
}

// Four bytes as they stand on the wire (network order).
inline std::string format_ipv4(std::span<const std::uint8_t, 4> wire) {
  return format_ipv4(std::uint32_t{wire[0]} << 24 | std::uint32_t{wire[1]} << 16 | std::uint32_t{wire[2]} << 8 |
                     std::uint32_t{wire[3]});
}

// The netmask of a prefix length 0-32.
constexpr std::uint32_t prefix_mask(int length) {
  return length <= 0 ? 0 : length >= 32 ? ~std::uint32_t{0} : ~std::uint32_t{0} << (32 - length);
}

// The prefix length of a contiguous netmask; nullopt for one like 255.0.255.0.
constexpr std::optional<int> prefix_length_of(std::uint32_t mask) {
  for (int length = 0; length <= 32; ++length)
    if (prefix_mask(length) == mask) return length;
  return std::nullopt;
}

struct Ipv4Network {
  std::uint32_t address = 0;  // as written; host bits are not cleared
  int length = 0;
  friend bool operator==(const Ipv4Network&, const Ipv4Network&) = default;
};

// "10.10.100.0/24": an address, a slash and a length 0-32 in plain decimal.
inline std::optional<Ipv4Network> parse_ipv4_prefix(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto address = parse_ipv4(text.substr(0, slash));
  const auto len = text.substr(slash + 1);
  if (!address || len.empty() || len.size() > 2 || (len.size() == 2 && len[0] == '0')) return std::nullopt;
  int length = 0;
  for (char c : len) {
    if (c < '0' || c > '9') return std::nullopt;
    length = length * 10 + (c - '0');
  }
  if (length > 32) return std::nullopt;
  return Ipv4Network{*address, length};
}

}  // namespace ve
