#include "ve/mac.hpp"

#include <gtest/gtest.h>

namespace ve {
namespace {

TEST(Oui, AcceptsTheSiteFileSpellingsAndNothingElse) {
  const std::array<std::uint8_t, 3> cisco{0x00, 0x1b, 0xd4};
  for (const char* good : {"00:1b:d4", "00-1B-D4", "00.1b.d4", "001BD4", "001bd4"}) {
    const auto oui = Oui::parse(good);
    ASSERT_TRUE(oui.has_value()) << good;
    EXPECT_EQ(oui->bytes(), cisco) << good;
    EXPECT_EQ(oui->to_string(), "00:1b:d4") << good;
  }
  for (const char* bad : {"", "00:1b", "00:1b:d4:01", "001bd", "0:01b:d4", "00:1b-d4", ":00:1b:d4",
                          "00:1b:d4:", "00::1bd4", "00:1b:g4", "00 1b d4"}) {
    EXPECT_FALSE(Oui::parse(bad).has_value()) << bad;
  }
  EXPECT_TRUE(Oui::parse("00:1b:d4")->matches(*MacAddress::parse("00:1B:D4:01:02:03")));
  EXPECT_FALSE(Oui::parse("00:1b:d4")->matches(*MacAddress::parse("00:1B:D5:01:02:03")));
}

TEST(MacAddress, ParsesEverySpellingTheNoteUses) {
  const auto want = MacAddress::parse("00:11:22:33:44:55");
  ASSERT_TRUE(want.has_value());
  for (const char* s : {"00-11-22-33-44-55", "0011.2233.4455", "001122334455", "SEP001122334455", "sep001122334455"})
    EXPECT_EQ(MacAddress::parse(s), want) << s;
  for (const char* s : {"00:11:22:33:44", "00:11:22:33:44:55:66", "00:11-22:33:44:55", "0011.22334455", "SEP0011"})
    EXPECT_FALSE(MacAddress::parse(s).has_value()) << s;
  EXPECT_EQ(want->sep_name(), "SEP001122334455");
}

}  // namespace
}  // namespace ve
