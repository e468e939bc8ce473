// Unit tests of the pure DHCP vocabulary: phone classification, option 150/66 building, the
// lease-report datagram.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "dhcp/codec.hpp"

namespace ve::dhcp {
namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

config::Subnet voice_subnet() {
  config::Subnet s;
  s.vlan = 100;
  s.interface = "eth1";
  s.prefix = {config::Ipv4{0x0a0a6400}, 24};  // 10.10.100.0/24
  s.pool_first = {0x0a0a6464};
  s.pool_last = {0x0a0a64c7};
  s.router = {0x0a0a6401};
  s.tftp_servers = {{0x0a0a6401}, {0x0a0a6402}};  // 10.10.100.1, 10.10.100.2
  return s;
}

config::Phone listed_phone(const char* mac) {
  config::Phone p;
  p.mac = *MacAddress::parse(mac);
  return p;
}

TEST(PhoneMatcher, VendorClassPrefixMakesAPhone) {
  PhoneMatcher m(config::PhoneMatch{}, {});
  EXPECT_EQ(m.classify(std::nullopt, bytes("Cisco Systems, Inc. IP Phone CP-7841")), PhoneReason::VendorClass);
  EXPECT_EQ(m.classify(std::nullopt, bytes("Cisco Systems, Inc. IP Phone")), PhoneReason::VendorClass);
}

TEST(PhoneMatcher, OtherVendorClassesAreNotPhones) {
  PhoneMatcher m(config::PhoneMatch{}, {});
  EXPECT_EQ(m.classify(std::nullopt, bytes("MSFT 5.0")), PhoneReason::NotPhone);
  EXPECT_EQ(m.classify(std::nullopt, bytes("Cisco Systems, Inc. IP Phon")), PhoneReason::NotPhone);  // too short
  EXPECT_EQ(m.classify(std::nullopt, bytes("cisco systems, inc. ip phone CP-7841")), PhoneReason::NotPhone);
  EXPECT_EQ(m.classify(std::nullopt, {}), PhoneReason::NotPhone);
}

TEST(PhoneMatcher, EmptyPrefixInConfigDoesNotMatchEverything) {
  config::PhoneMatch match;
  match.vendor_class_prefixes = {""};
  PhoneMatcher m(match, {});
  EXPECT_EQ(m.classify(std::nullopt, bytes("MSFT 5.0")), PhoneReason::NotPhone);
}

TEST(PhoneMatcher, OuiAndListedMacMakeAPhone) {
  config::PhoneMatch match;
  match.ouis = {"00:1b:d4", "6C-41-6A", "bogus"};
  PhoneMatcher m(match, {listed_phone("00:11:22:33:44:55")});
  EXPECT_EQ(m.oui_count(), 2u);
  EXPECT_EQ(m.classify(MacAddress::parse("00:1B:D4:01:02:03"), {}), PhoneReason::Oui);
  EXPECT_EQ(m.classify(MacAddress::parse("6c:41:6a:ff:ff:ff"), {}), PhoneReason::Oui);
  EXPECT_EQ(m.classify(MacAddress::parse("00:11:22:33:44:55"), bytes("MSFT 5.0")), PhoneReason::Listed);
  EXPECT_EQ(m.classify(MacAddress::parse("00:11:22:33:44:56"), {}), PhoneReason::NotPhone);
}

TEST(RequestedOptions, ParsesAnyPrl) {
  const std::uint8_t prl[] = {1, 3, 6, 15, 66, 150};
  auto r = RequestedOptions::parse(prl);
  EXPECT_TRUE(r.contains(150));
  EXPECT_TRUE(r.contains(66));
  EXPECT_FALSE(r.contains(67));
  EXPECT_EQ(r.size(), 6u);
  std::vector<std::uint8_t> huge(100000, 150);  // longer than any option: still fine
  EXPECT_EQ(RequestedOptions::parse(huge).size(), 1u);
}

TEST(BuildPhoneOptions, PhoneAskingFor150And66GetsBothInOrder) {
  const auto subnet = voice_subnet();
  const std::uint8_t prl[] = {1, 3, 150, 66};
  auto o = build_phone_options(PhoneReason::VendorClass, RequestedOptions::parse(prl), &subnet);
  EXPECT_EQ(o.tftp_servers, (std::vector<std::uint32_t>{0x0a0a6401, 0x0a0a6402}));
  EXPECT_EQ(o.tftp_server_name, "10.10.100.1");
  EXPECT_EQ(encode_option150(o.tftp_servers), (std::vector<std::uint8_t>{10, 10, 100, 1, 10, 10, 100, 2}));
}

TEST(BuildPhoneOptions, PhoneGetsOnlyWhatItAskedFor) {
  const auto subnet = voice_subnet();
  const std::uint8_t only66[] = {1, 3, 66};
  auto o = build_phone_options(PhoneReason::Oui, RequestedOptions::parse(only66), &subnet);
  EXPECT_TRUE(o.tftp_servers.empty());
  EXPECT_EQ(o.tftp_server_name, "10.10.100.1");
  const std::uint8_t neither[] = {1, 3};
  EXPECT_TRUE(build_phone_options(PhoneReason::VendorClass, RequestedOptions::parse(neither), &subnet).empty());
}

TEST(BuildPhoneOptions, ListedPhoneAlwaysGets150) {
  const auto subnet = voice_subnet();
  auto o = build_phone_options(PhoneReason::Listed, RequestedOptions{}, &subnet);
  EXPECT_EQ(o.tftp_servers.size(), 2u);
  EXPECT_FALSE(o.tftp_server_name);
}

TEST(BuildPhoneOptions, NonPhonesAndUnknownSubnetsGetNothing) {
  const auto subnet = voice_subnet();
  const std::uint8_t prl[] = {150, 66};
  EXPECT_TRUE(build_phone_options(PhoneReason::NotPhone, RequestedOptions::parse(prl), &subnet).empty());
  EXPECT_TRUE(build_phone_options(PhoneReason::Listed, RequestedOptions::parse(prl), nullptr).empty());
  auto no_servers = subnet;
  no_servers.tftp_servers.clear();
  EXPECT_TRUE(build_phone_options(PhoneReason::Listed, RequestedOptions::parse(prl), &no_servers).empty());
}

TEST(FindSubnet, MatchesKeasChoiceByPrefix) {
  auto data = voice_subnet();
  auto other = voice_subnet();
  other.vlan = 10;
  other.prefix = {config::Ipv4{0x0a0a0a00}, 24};
  std::vector<config::Subnet> subnets{other, data};
  auto p = parse_ipv4_prefix("10.10.100.0/24");
  ASSERT_TRUE(p);
  ASSERT_NE(find_subnet(subnets, p->address, p->length), nullptr);
  EXPECT_EQ(find_subnet(subnets, p->address, p->length)->vlan, 100);
  EXPECT_EQ(find_subnet(subnets, p->address, 23), nullptr);
  EXPECT_EQ(find_subnet_containing(subnets, 0x0a0a0a05)->vlan, 10);
  EXPECT_EQ(find_subnet_containing(subnets, 0x0a0b0a05), nullptr);
}

TEST(Printable, ReplacesControlAndHighBytesAndCuts) {
  const std::uint8_t raw[] = {'a', 0, 'b', 0xff, '\n', 'c'};
  EXPECT_EQ(printable(std::span(raw)), "a?b??c");
  EXPECT_EQ(printable(std::string(1000, 'x')).size(), 255u);
}

TEST(LeaseReport, RoundTrips) {
  LeaseReport r;
  r.kind = LeaseEventKind::Offer;
  r.mac = *MacAddress::parse("00:11:22:33:44:55");
  r.ip = 0x0a0a6464;
  r.subnet = "10.10.100.0/24";
  r.hostname = "SEP001122334455";
  r.vendor_class = "Cisco Systems, Inc. IP Phone CP-7841\"\\";
  r.phone = PhoneReason::VendorClass;
  r.lifetime_s = 3600;
  const auto wire = encode_lease_report(r);
  auto back = decode_lease_report(bytes(wire));
  ASSERT_TRUE(back) << to_string(back.error());
  EXPECT_EQ(back->kind, r.kind);
  EXPECT_EQ(back->mac, r.mac);
  EXPECT_EQ(back->ip, r.ip);
  EXPECT_EQ(back->subnet, r.subnet);
  EXPECT_EQ(back->hostname, r.hostname);
  EXPECT_EQ(back->vendor_class, r.vendor_class);
  EXPECT_EQ(back->phone, r.phone);
  EXPECT_EQ(back->lifetime_s, 3600u);
}

// The encoder writes the JSON itself (no DOM on Kea's thread): the bytes are the ones a JSON
// library gives for the same object, quotes and backslashes escaped, with and without time_ms.
TEST(LeaseReport, EncodingIsWhatAJsonLibraryWritesForTheSameObject) {
  LeaseReport r;
  r.kind = LeaseEventKind::Ack;
  r.mac = *MacAddress::parse("00:11:22:33:44:55");
  r.ip = 0x0a0a6464;
  r.subnet = "10.10.100.0/24";
  r.hostname = "a\"b\\c/d";
  r.vendor_class = "Cisco Systems, Inc. IP Phone CP-7841\x01\xff";
  r.phone = PhoneReason::Listed;
  r.lifetime_s = 3600;
  for (std::uint64_t time_ms : {std::uint64_t{0}, std::uint64_t{1764750000123}}) {
    r.time_ms = time_ms;
    nlohmann::json j = {{"v", 1},
                        {"event", "ack"},
                        {"mac", "00:11:22:33:44:55"},
                        {"ip", "10.10.100.100"},
                        {"subnet", "10.10.100.0/24"},
                        {"hostname", "a\"b\\c/d"},
                        {"vendor_class", "Cisco Systems, Inc. IP Phone CP-7841??"},
                        {"phone", std::string(to_string(r.phone))},
                        {"lifetime", 3600}};
    if (time_ms != 0) j["time_ms"] = time_ms;
    EXPECT_EQ(encode_lease_report(r), j.dump());
    auto back = decode_lease_report(bytes(encode_lease_report(r)));
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(back->hostname, r.hostname);
    EXPECT_EQ(back->time_ms, time_ms);
  }
}

TEST(LeaseReport, EncodingStaysUnderTheLimitWithHostileStrings) {
  LeaseReport r;
  r.hostname = std::string(5000, '"');
  r.vendor_class = std::string(5000, '\xff');
  r.subnet = std::string(300, '\\');
  const auto wire = encode_lease_report(r);
  EXPECT_LE(wire.size(), kMaxReportBytes);
  auto back = decode_lease_report(bytes(wire));
  // The subnet was cut to garbage that is not a prefix: rejected, not misread.
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error(), ReportError::BadField);
}

TEST(LeaseReport, RejectsEachKindOfBadDatagram) {
  auto err = [](std::string_view s) {
    auto r = decode_lease_report(bytes(s));
    return r ? std::optional<ReportError>{} : std::optional{r.error()};
  };
  EXPECT_EQ(err(""), ReportError::Empty);
  EXPECT_EQ(err(std::string(kMaxReportBytes + 1, ' ')), ReportError::TooLarge);
  EXPECT_EQ(err("{\"v\":1,"), ReportError::NotJson);
  EXPECT_EQ(err("[1,2]"), ReportError::NotObject);
  EXPECT_EQ(err(R"({"v":2,"event":"ack","mac":"00:11:22:33:44:55","ip":"1.2.3.4"})"), ReportError::BadVersion);
  EXPECT_EQ(err(R"({"v":1,"event":"ack","ip":"1.2.3.4"})"), ReportError::MissingField);
  EXPECT_EQ(err(R"({"v":1,"event":"ack","mac":5,"ip":"1.2.3.4"})"), ReportError::MissingField);
  EXPECT_EQ(err(R"({"v":1,"event":"nak","mac":"00:11:22:33:44:55","ip":"1.2.3.4"})"), ReportError::BadField);
  EXPECT_EQ(err(R"({"v":1,"event":"ack","mac":"00:11:22:33:44:55","ip":"1.2.3"})"), ReportError::BadField);
  EXPECT_EQ(err(R"({"v":1,"event":"ack","mac":"00:11:22:33:44:55","ip":"1.2.3.4","lifetime":-1})"),
            ReportError::BadField);
  EXPECT_EQ(err(R"({"v":1,"event":"ack","mac":"00:11:22:33:44:55","ip":"1.2.3.4","phone":"maybe"})"),
            ReportError::BadField);
  EXPECT_FALSE(err(R"({"v":1,"event":"release","mac":"00:11:22:33:44:55","ip":"1.2.3.4"})"));
}

}  // namespace
}  // namespace ve::dhcp

namespace ve::dhcp {
namespace {

TEST(MemfileLeases, LaterRowsWinAndJunkIsSkipped) {
  const std::string csv =
      "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
      "10.10.100.100,00:aa:bb:00:00:01,,3600,1700003600,1,0,0,SEP00AABB000001,0,\n"
      "10.10.100.101,00:aa:bb:00:00:02,01:02,3600,1700003600,1,0,0,,0,\n"
      "10.10.100.100,00:aa:bb:00:00:01,,0,1700000100,1,0,0,,0,\n"  // released later
      "bogus,00:aa:bb:00:00:03,,3600,1,1,0,0,,0,\n"
      "10.10.100.102,zz,,3600,1,1,0,0,,0,\n"
      "10.10.100.103,00:aa:bb:00:00:04,,3600\n";  // truncated row
  auto leases = parse_memfile_leases(csv);
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_EQ(format_ipv4(leases[0].ip), "10.10.100.100");
  EXPECT_EQ(leases[0].valid_lifetime_s, 0u);
  EXPECT_EQ(leases[1].mac.to_string(), "00:aa:bb:00:00:02");
  EXPECT_EQ(leases[1].expire, 1700003600);
  EXPECT_TRUE(parse_memfile_leases("no header here\n1,2,3\n").empty());
}

}  // namespace
}  // namespace ve::dhcp
