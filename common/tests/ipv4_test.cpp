#include "ve/ipv4.hpp"

#include <gtest/gtest.h>

namespace ve {
namespace {

TEST(Ipv4, ParsesDottedQuadsAndRefusesEverythingElse) {
  EXPECT_EQ(parse_ipv4("10.10.100.1"), 0x0a0a6401u);
  EXPECT_EQ(parse_ipv4("0.0.0.0"), 0u);
  EXPECT_EQ(parse_ipv4("255.255.255.255"), 0xffffffffu);
  for (const char* bad : {"", "1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "1.2.3.",
                          "01.2.3.4", "1.2.3.004", "1.2.3.1000", "+1.2.3.4", "1.2.3.-4", "a.b.c.d", "1.2.3.4/24"}) {
    EXPECT_FALSE(parse_ipv4(bad).has_value()) << bad;
  }
  // Stops at the end of the view, not at a NUL: a view into a longer buffer.
  const std::string_view within = std::string_view("10.0.0.1999").substr(0, 8);
  EXPECT_EQ(parse_ipv4(within), 0x0a000001u);
}

TEST(Ipv4, FormatsWhatItParses) {
  for (const char* text : {"10.10.100.1", "0.0.0.0", "255.255.255.255", "192.168.0.10"})
    EXPECT_EQ(format_ipv4(*parse_ipv4(text)), text);
  const std::array<std::uint8_t, 4> wire{10, 10, 100, 7};
  EXPECT_EQ(format_ipv4(std::span<const std::uint8_t, 4>(wire)), "10.10.100.7");
}

TEST(Ipv4, PrefixesAndMasks) {
  EXPECT_EQ(parse_ipv4_prefix("10.10.100.0/24"), (Ipv4Network{0x0a0a6400u, 24}));
  EXPECT_EQ(parse_ipv4_prefix("0.0.0.0/0"), (Ipv4Network{0, 0}));
  for (const char* bad : {"10.10.100.0", "10.10.100.0/", "10.10.100.0/33", "10.10.100.0/024", "10.10.100.0/2x",
                          "10.10.100/24", "/24", "10.10.100.0/-1"}) {
    EXPECT_FALSE(parse_ipv4_prefix(bad).has_value()) << bad;
  }
  EXPECT_EQ(prefix_mask(0), 0u);
  EXPECT_EQ(prefix_mask(24), 0xffffff00u);
  EXPECT_EQ(prefix_mask(32), 0xffffffffu);
  EXPECT_EQ(prefix_length_of(0xffffff00u), 24);
  EXPECT_EQ(prefix_length_of(0), 0);
  EXPECT_FALSE(prefix_length_of(0xff00ff00u).has_value());
}

}  // namespace
}  // namespace ve
