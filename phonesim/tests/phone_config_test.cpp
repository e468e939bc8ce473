// The phone's reading of its config: against files rendered by provision/ itself, so the
// simulator and the renderer cannot drift apart, plus hand-written edge cases.
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "phonesim/phonesim.hpp"
#include "provision/provision.hpp"

namespace ve::phonesim {
namespace {

config::SiteConfig site() {
  config::SiteConfig s;
  s.site.name = "branch-01";
  s.site.locale = "English_United_States";
  s.provisioning.default_load = "sip78xx.14-2-1-0001-14";
  // Deliberately out of priority order: the phone must sort them.
  s.provisioning.call_manager_group = {{"cm2", "10.10.100.2", 5080, 1}, {"cm1", "10.10.100.1", 5060, 0}};
  config::Phone p;
  p.mac = *MacAddress::parse("00:11:22:33:44:55");
  p.model = "CP-7841";
  p.lines.push_back({1, "1001", "Front desk", "1001a", config::Secret("s3cret")});
  p.lines.push_back({2, "1002", "", "", config::Secret("two")});
  s.phones.push_back(p);
  return s;
}

TEST(PhoneConfig, ReadsWhatProvisionRendersForAListedPhone) {
  const auto s = site();
  const std::string xml = provision::render_phone_config(s, s.phones.front());
  auto c = parse_phone_config(xml);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->root, "device");
  ASSERT_EQ(c->call_managers.size(), 2u);
  // The renderer keeps site order; priority decides.
  EXPECT_EQ(c->call_managers.front().priority, 0);
  EXPECT_EQ(c->call_managers.front().host, "10.10.100.1");
  EXPECT_EQ(c->call_managers.front().sip_port, 5060);
  EXPECT_EQ(c->call_managers.back().host, "10.10.100.2");
  EXPECT_EQ(c->call_managers.back().sip_port, 5080);
  EXPECT_EQ(c->load_information, "sip78xx.14-2-1-0001-14");
  ASSERT_EQ(c->lines.size(), 2u);
  EXPECT_EQ(c->lines[0].name, "1001");
  EXPECT_EQ(c->lines[0].auth_name, "1001a");
  EXPECT_EQ(c->lines[0].auth_password, "s3cret");
  EXPECT_EQ(c->lines[1].name, "1002");
  EXPECT_EQ(c->lines[1].auth_name, "1002");  // renderer defaults authName to the extension
  EXPECT_EQ(c->lines[1].button, 2);
  EXPECT_EQ(c->user_locale, "English_United_States");
  EXPECT_EQ(c->network_locale, "United_States");
  EXPECT_EQ(c->dial_template, provision::kDialTemplateFile);
  EXPECT_EQ(c->softkey_file, provision::kSoftKeyFile);
  EXPECT_EQ(c->register_expires_s, 3600);
  EXPECT_EQ(c->transport, 1);
  EXPECT_FALSE(c->version_stamp.empty());
}

TEST(PhoneConfig, XmlDefaultHasCallManagersAndALoadButNoLines) {
  auto c = parse_phone_config(provision::render_default_config(site()));
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->root, "Default");
  EXPECT_EQ(c->call_managers.size(), 2u);
  EXPECT_EQ(c->load_information, "sip78xx.14-2-1-0001-14");
  EXPECT_TRUE(c->lines.empty());
}

TEST(PhoneConfig, RejectsBrokenXmlAndIgnoresEntities) {
  EXPECT_FALSE(parse_phone_config("<device><loadInformation>x</device>"));
  EXPECT_FALSE(parse_phone_config(""));
  // An external entity is neither fetched nor expanded.
  auto c = parse_phone_config(
      "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
      "<device><loadInformation>&e;</loadInformation></device>");
  if (c) {
    EXPECT_EQ(c->load_information.find("root:"), std::string::npos);
  }
}

TEST(PhoneConfig, SkipsMembersWithoutAHostAndLinesWithoutAName) {
  auto c = parse_phone_config(
      "<device><devicePool><callManagerGroup><members>"
      "<member priority=\"2\"><callManager><ports><sipPort>5062</sipPort></ports>"
      "<processNodeName>b</processNodeName></callManager></member>"
      "<member priority=\"0\"><callManager><processNodeName></processNodeName></callManager></member>"
      "<member priority=\"1\"><callManager><ports><sipPort>99999</sipPort></ports>"
      "<processNodeName>a</processNodeName></callManager></member>"
      "</members></callManagerGroup></devicePool>"
      "<sipProfile><sipLines><line button=\"1\"><featureID>21</featureID></line>"
      "<line button=\"2\"><name>2002</name></line></sipLines></sipProfile></device>");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->call_managers.size(), 2u);
  EXPECT_EQ(c->call_managers[0].host, "a");
  EXPECT_EQ(c->call_managers[0].sip_port, 5060);  // out-of-range port ignored
  EXPECT_EQ(c->call_managers[1].host, "b");
  EXPECT_EQ(c->call_managers[1].sip_port, 5062);
  ASSERT_EQ(c->lines.size(), 1u);
  EXPECT_EQ(c->lines[0].name, "2002");
  EXPECT_EQ(c->lines[0].button, 2);
}

TEST(LoadsFile, PlainListWithComments) {
  EXPECT_EQ(parse_loads_file(
                "# sip78xx 14.2\nsip78xx.14-2-1-0001-14.sbn\n\n  rootfs78xx.img  \nsip78xx.14-2-1-0001-14.sbn\n"),
            (std::vector<std::string>{"sip78xx.14-2-1-0001-14.sbn", "rootfs78xx.img"}));
  EXPECT_TRUE(parse_loads_file("").empty());
}

TEST(LoadsFile, XmlImageList) {
  EXPECT_EQ(parse_loads_file("<ImageList><Image name=\"a.sbn\"/><Group><Image file=\"b.img\"/></Group></ImageList>"),
            (std::vector<std::string>{"a.sbn", "b.img"}));
  EXPECT_TRUE(parse_loads_file("<broken").empty());
}

TEST(FileNames, PerModel) {
  EXPECT_EQ(locale_jar_for("CP-7841"), "sp-sip.jar");
  EXPECT_EQ(locale_jar_for("CP-8851"), "sl-be-sip.jar");
  EXPECT_EQ(ring_list_for("CP-7841"), "Ringlist-wb.xml");
  EXPECT_EQ(ring_list_for("CP-6921"), "Ringlist.xml");
}

}  // namespace
}  // namespace ve::phonesim
