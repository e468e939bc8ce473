#include <gtest/gtest.h>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

TEST(ScrubTest, TextKeepsLength) {
  std::string s = "user 1001 pw-1001 and again pw-1001.";
  scrub(s, {"pw-1001"});
  EXPECT_EQ(s, "user 1001 ******* and again *******.");
}

TEST(ScrubTest, XmlElementsAndAttributesNamedPassword) {
  const std::string xml =
      "<line><authName>1001</authName><authPassword>pw-1001</authPassword><sshPassword/>"
      "<x adminPassword=\"s3cr3t\" name=\"keep\">v</x><webAccessSecret>abc</webAccessSecret></line>";
  const auto masked = mask_xml_passwords(xml);
  EXPECT_EQ(masked.find("pw-1001"), std::string::npos);
  EXPECT_EQ(masked.find("s3cr3t"), std::string::npos);
  EXPECT_EQ(masked.find(">abc<"), std::string::npos);
  EXPECT_NE(masked.find("<authName>1001</authName>"), std::string::npos);
  EXPECT_NE(masked.find("name=\"keep\""), std::string::npos);
  EXPECT_NE(masked.find("<authPassword>********</authPassword>"), std::string::npos);
}

// Ethernet + IPv4 + UDP (TFTP DATA) with `text` after the 4-byte TFTP header.
Packet tftp_block(const std::string& text, std::uint16_t block) {
  Bytes f(14, 0);
  f[12] = 0x08;
  const std::size_t udp_len = 8 + 4 + text.size();
  const std::size_t ip_len = 20 + udp_len;
  Bytes ip = {0x45,
              0,
              static_cast<std::uint8_t>(ip_len >> 8),
              static_cast<std::uint8_t>(ip_len),
              0,
              0,
              0,
              0,
              64,
              17,
              0,
              0,
              10,
              0,
              0,
              1,
              10,
              0,
              0,
              100};
  f.insert(f.end(), ip.begin(), ip.end());
  Bytes udp = {0x9c, 0x40, 0xc3, 0x50, static_cast<std::uint8_t>(udp_len >> 8), static_cast<std::uint8_t>(udp_len),
               0,    0,    0,    3,    static_cast<std::uint8_t>(block >> 8),   static_cast<std::uint8_t>(block)};
  f.insert(f.end(), udp.begin(), udp.end());
  f.insert(f.end(), text.begin(), text.end());
  Packet p;
  p.interface = "br";
  p.data = f;
  return p;
}

TEST(ScrubTest, SecretSplitAcrossTwoTftpBlocksIsMaskedInBoth) {
  std::vector<Packet> packets{tftp_block("<authPassword>pw-10", 1), tftp_block("01</authPassword>", 2)};
  scrub(packets, {"pw-1001"});
  const std::string a(packets[0].data.begin(), packets[0].data.end());
  const std::string b(packets[1].data.begin(), packets[1].data.end());
  EXPECT_NE(a.find("<authPassword>*****"), std::string::npos) << a;
  EXPECT_NE(b.find("**</authPassword>"), std::string::npos) << b;
}

TEST(ScrubTest, WholeSecretInOnePacket) {
  std::vector<Packet> packets{tftp_block("x pw-1001 y", 1)};
  scrub(packets, {"pw-1001", ""});
  const std::string a(packets[0].data.begin(), packets[0].data.end());
  EXPECT_EQ(a.find("pw-1001"), std::string::npos);
}

TEST(LogRingTest, MatchesMacSpellingsAndWholeAddresses) {
  LogRing ring(3);
  ring.add("dhcp: lease 10.0.0.10 to 00:1e:7a:00:00:01");
  ring.add("sip: REGISTER from SEP001E7A000002 at 10.0.0.100");
  ring.add("tftp: 10.0.0.101 asked for SEP001E7A000001.cnf.xml");
  ring.add("cdp: 001e.7a00.0001 on p1");
  EXPECT_EQ(ring.size(), 3u);  // the oldest went
  const auto m = *MacAddress::parse("00:1e:7a:00:00:01");
  auto needles = mac_spellings(m);
  auto lines = ring.matching(needles, 10);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "cdp: 001e.7a00.0001 on p1");
  EXPECT_TRUE(ring.matching({"10.0.0.10"}, 10).empty());  // 10.0.0.100 / .101 are other phones
  EXPECT_TRUE(mentions("from 10.0.0.10:5060", "10.0.0.10"));
  EXPECT_FALSE(mentions("from 110.0.0.10", "10.0.0.10"));
}

}  // namespace
}  // namespace ve::diag
