#pragma once
// MacAddress: the key that joins every component's view of one phone.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ve {

namespace detail {
constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace detail

class MacAddress {
 public:
  MacAddress() = default;
  explicit MacAddress(const std::array<std::uint8_t, 6>& bytes) : bytes_(bytes) {}

  // Accepts 00:11:22:33:44:55, 00-11-22-33-44-55, 0011.2233.4455, 001122334455 and SEP001122334455
  // (any case).
  static std::optional<MacAddress> parse(std::string_view text) {
    if (text.size() >= 3 && (text[0] == 'S' || text[0] == 's') && (text[1] == 'E' || text[1] == 'e') &&
        (text[2] == 'P' || text[2] == 'p')) {
      text.remove_prefix(3);
    }
    std::array<std::uint8_t, 6> out{};
    int nibbles = 0;
    char last_sep = 0;
    for (char c : text) {
      int v = detail::hex_value(c);
      if (v < 0) {
        if (c != ':' && c != '-' && c != '.') return std::nullopt;
        if (last_sep != 0 && last_sep != c) return std::nullopt;
        last_sep = c;
        continue;
      }
      if (nibbles >= 12) return std::nullopt;
      out[static_cast<std::size_t>(nibbles / 2)] =
          static_cast<std::uint8_t>((out[static_cast<std::size_t>(nibbles / 2)] << 4) | v);
      ++nibbles;
    }
    if (nibbles != 12) return std::nullopt;
    // Separators must sit on group boundaries: check the canonical shapes by length.
    const std::size_t n = text.size();
    if (last_sep == ':' || last_sep == '-') {
      if (n != 17) return std::nullopt;
      for (std::size_t i = 2; i < n; i += 3)
        if (text[i] != last_sep) return std::nullopt;
    } else if (last_sep == '.') {
      if (n != 14 || text[4] != '.' || text[9] != '.') return std::nullopt;
    }
    return MacAddress(out);
  }

  const std::array<std::uint8_t, 6>& bytes() const { return bytes_; }
  bool is_zero() const { return bytes_ == std::array<std::uint8_t, 6>{}; }

  // 00:11:22:33:44:55
  std::string to_string() const { return format(':', false); }
  // 001122334455 in upper case, as in SEP file names.
  std::string to_hex_upper() const { return format(0, true); }
  std::string sep_name() const { return "SEP" + to_hex_upper(); }

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted comparison
  friend auto operator<=>(const MacAddress&, const MacAddress&) = default;

 private:
  std::string format(char sep, bool upper) const {
    const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < bytes_.size(); ++i) {
      if (sep != 0 && i != 0) s.push_back(sep);
      s.push_back(digits[bytes_[i] >> 4]);
      s.push_back(digits[bytes_[i] & 0xf]);
    }
    return s;
  }
  std::array<std::uint8_t, 6> bytes_{};
};

// A vendor prefix: the first three bytes of a MAC. Accepts 00:11:22, 00-11-22, 00.11.22 and
// 001122 (any case); a separator only between bytes, and one kind of it.
class Oui {
 public:
  static std::optional<Oui> parse(std::string_view text) {
    Oui out;
    int nibbles = 0;
    char sep = 0;
    for (char c : text) {
      const int v = detail::hex_value(c);
      if (v < 0) {
        if ((c != ':' && c != '-' && c != '.') || nibbles % 2 != 0 || nibbles == 0 || nibbles == 6) return std::nullopt;
        if (sep != 0 && sep != c) return std::nullopt;
        sep = c;
        continue;
      }
      if (nibbles >= 6) return std::nullopt;
      auto& b = out.bytes_[static_cast<std::size_t>(nibbles / 2)];
      b = static_cast<std::uint8_t>((b << 4) | v);
      ++nibbles;
    }
    // Either no separator or one between every byte.
    if (nibbles != 6 || (sep != 0 && (text.size() != 8 || text[2] != sep || text[5] != sep))) return std::nullopt;
    return out;
  }
  const std::array<std::uint8_t, 3>& bytes() const { return bytes_; }
  bool matches(const MacAddress& mac) const {
    return mac.bytes()[0] == bytes_[0] && mac.bytes()[1] == bytes_[1] && mac.bytes()[2] == bytes_[2];
  }
  // 00:11:22
  std::string to_string() const {
    return MacAddress({bytes_[0], bytes_[1], bytes_[2], 0, 0, 0}).to_string().substr(0, 8);
  }
  friend bool operator==(const Oui&, const Oui&) = default;

 private:
  std::array<std::uint8_t, 3> bytes_{};
};

struct MacHash {
  std::size_t operator()(const MacAddress& m) const noexcept {
    std::size_t h = 0;
    for (auto b : m.bytes()) h = h * 131 + b;
    return h;
  }
};

}  // namespace ve
