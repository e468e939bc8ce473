#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <memory>

#include "provision/provision.hpp"
#include "provision/tests/test_site.hpp"

namespace ve::provision {
namespace {

// Parses rendered XML with libxml2 (fails the test if it is not well-formed) and answers XPath.
class ParsedXml {
 public:
  explicit ParsedXml(const std::string& text)
      : doc_(xmlReadMemory(text.data(), static_cast<int>(text.size()), "rendered.xml", nullptr, XML_PARSE_NONET)) {}
  ~ParsedXml() {
    if (doc_) xmlFreeDoc(doc_);
  }
  ParsedXml(const ParsedXml&) = delete;
  ParsedXml& operator=(const ParsedXml&) = delete;
  bool ok() const { return doc_ != nullptr; }
  std::vector<std::string> all(const std::string& xpath) const {
    std::vector<std::string> out;
    std::unique_ptr<xmlXPathContext, decltype(&xmlXPathFreeContext)> ctx(xmlXPathNewContext(doc_), xmlXPathFreeContext);
    std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)> obj(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(xpath.c_str()), ctx.get()), xmlXPathFreeObject);
    if (!obj || !obj->nodesetval) return out;
    for (int i = 0; i < obj->nodesetval->nodeNr; ++i) {
      xmlChar* content = xmlNodeGetContent(obj->nodesetval->nodeTab[i]);
      out.emplace_back(content ? reinterpret_cast<const char*>(content) : "");
      xmlFree(content);
    }
    return out;
  }
  std::string one(const std::string& xpath) const {
    auto v = all(xpath);
    return v.size() == 1 ? v[0] : "<" + std::to_string(v.size()) + " matches for " + xpath + ">";
  }

 private:
  xmlDoc* doc_;
};

using Strings = std::vector<std::string>;

// SRST (issue 23): phones always register with the box, which relays to the cluster or answers
// itself, so one rendered file serves both modes: naming a cluster changes nothing a phone
// downloads (no config push, no restart when the WAN comes and goes).
TEST(ConfigRender, AClusterUpstreamChangesNothingAPhoneDownloads) {
  auto alone = testing::make_site();
  auto fronting = testing::make_site();
  fronting->sip.upstream = {{"hq-1", "10.10.200.1", 5060, "udp"}, {"hq-2", "10.10.200.5", 5060, "tcp"}};
  for (std::size_t i = 0; i < alone->phones.size(); ++i) {
    const std::string xml = render_phone_config(*fronting, fronting->phones[i]);
    EXPECT_EQ(xml, render_phone_config(*alone, alone->phones[i]));
    ParsedXml doc(xml);
    ASSERT_TRUE(doc.ok()) << xml;
    EXPECT_EQ(doc.all("//member/callManager/processNodeName"), (Strings{"10.10.100.1", "10.10.100.2"}));
    EXPECT_EQ(xml.find("10.10.200."), std::string::npos) << "the cluster's address is never given to a phone";
  }
}

TEST(ConfigRender, PhoneConfigIsWellFormedAndCarriesEveryField) {
  auto site = testing::make_site();
  for (const auto& phone : site->phones) {
    const std::string xml = render_phone_config(*site, phone);
    ParsedXml doc(xml);
    ASSERT_TRUE(doc.ok()) << xml;
    EXPECT_EQ(doc.one("/device/deviceProtocol"), "SIP");
    EXPECT_EQ(doc.one("/device/devicePool/dateTimeSetting/timeZone"), "Europe/Berlin");
    EXPECT_EQ(doc.all("/device/devicePool/callManagerGroup/members/member/@priority"), (Strings{"0", "1"}));
    EXPECT_EQ(doc.all("//member/callManager/ports/sipPort"), (Strings{"5060", "5080"}));
    EXPECT_EQ(doc.all("//member/callManager/processNodeName"), (Strings{"10.10.100.1", "10.10.100.2"}));
    EXPECT_EQ(doc.one("/device/sipProfile/sipStack/timerRegisterExpires"), "3600");
    EXPECT_EQ(doc.one("/device/sipProfile/sipStack/timerKeepAliveExpires"), "120");
    EXPECT_EQ(doc.one("/device/sipProfile/sipStack/timerRegisterDelta"), "5");
    EXPECT_EQ(doc.one("/device/sipProfile/dialTemplate"), "dialplan.xml");
    EXPECT_EQ(doc.one("/device/sipProfile/softKeyFile"), "softkeys.xml");
    EXPECT_EQ(doc.one("/device/userLocale/name"), "English_United_States");
    EXPECT_EQ(doc.one("/device/networkLocale"), "United_States");
    EXPECT_EQ(doc.one("/device/transportLayerProtocol"), "1");
    EXPECT_EQ(doc.one("/device/deviceSecurityMode"), "1");
    EXPECT_EQ(doc.one("/device/versionStamp").size(), 16u);
    const auto lines = phone.lines.size();
    EXPECT_EQ(doc.all("//sipLines/line").size(), lines);
    EXPECT_EQ(doc.all("//sipLines/line/featureID"), Strings(lines, "9"));
    EXPECT_EQ(doc.all("//sipLines/line/proxy"), Strings(lines, "USECALLMANAGER"));
    EXPECT_EQ(doc.all("//sipLines/line/authName").size(), lines);
    EXPECT_EQ(doc.all("//sipLines/line/authPassword").size(), lines);
    for (std::size_t i = 0; i < lines; ++i) {
      const std::string line = "//sipLines/line[" + std::to_string(i + 1) + "]";
      const auto& l = phone.lines[i];
      EXPECT_EQ(doc.one(line + "/@button"), std::to_string(l.button));
      EXPECT_EQ(doc.one(line + "/name"), l.extension);
      EXPECT_EQ(doc.one(line + "/contact"), l.extension);
      EXPECT_EQ(doc.one(line + "/authName"), l.auth_user);
      // Escaped on the way out, identical after parsing back.
      EXPECT_EQ(doc.one(line + "/authPassword"), l.password.reveal());
      EXPECT_EQ(doc.one(line + "/displayName"), l.display.empty() ? l.extension : l.display);
      EXPECT_EQ(doc.one(line + "/featureLabel"), l.display.empty() ? l.extension : l.display);
    }
    EXPECT_EQ(doc.one("/device/loadInformation"), phone.load.empty() ? site->provisioning.default_load : phone.load);
  }
}

TEST(ConfigRender, EscapesMarkupInValues) {
  auto site = testing::make_site();
  const std::string xml = render_phone_config(*site, site->phones[1]);
  EXPECT_NE(xml.find("pa&lt;ss&gt;&amp;&quot;word"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("<desk>"), std::string::npos);
}

TEST(ConfigRender, VersionStampFollowsThePhonesOwnConfig) {
  auto site = testing::make_site();
  const auto stamp_of = [&](const config::SiteConfig& s, std::size_t i) {
    return ParsedXml(render_phone_config(s, s.phones[i])).one("/device/versionStamp");
  };
  const auto first = stamp_of(*site, 0);
  const auto second = stamp_of(*site, 1);
  EXPECT_EQ(first, stamp_of(*site, 0));  // stable across renders
  EXPECT_NE(first, second);

  auto changed = std::make_shared<config::SiteConfig>(*site);
  changed->phones[1].lines[0].display = "Reception";
  EXPECT_EQ(stamp_of(*changed, 0), first);   // untouched phone keeps its stamp
  EXPECT_NE(stamp_of(*changed, 1), second);  // changed phone gets a new one

  changed->provisioning.call_manager_group[0].host = "10.10.100.9";
  EXPECT_NE(stamp_of(*changed, 0), first);  // shared settings change every phone
}

TEST(ConfigRender, DefaultConfigCarriesGroupAndLoad) {
  auto site = testing::make_site();
  ParsedXml doc(render_default_config(*site));
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc.all("/Default/callManagerGroup/members/member/@priority"), (Strings{"0", "1"}));
  EXPECT_EQ(doc.all("//processNodeName"), (Strings{"10.10.100.1", "10.10.100.2"}));
  EXPECT_EQ(doc.one("/Default/loadInformation"), "sip78xx.14-2-1-0001-14");
  EXPECT_EQ(doc.one("/Default/versionStamp").size(), 16u);
}

TEST(ConfigRender, NetworkLocaleDropsLanguage) {
  EXPECT_EQ(network_locale_for("English_United_States"), "United_States");
  EXPECT_EQ(network_locale_for("German_Germany"), "Germany");
  EXPECT_EQ(network_locale_for("weird"), "United_States");
}

}  // namespace
}  // namespace ve::provision
