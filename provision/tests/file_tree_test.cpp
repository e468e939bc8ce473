#include <gtest/gtest.h>

#include <thread>

#include "provision/provision.hpp"
#include "provision/tests/temp_dir.hpp"
#include "provision/tests/test_site.hpp"

namespace ve::provision {
namespace {

using testing::TempDir;
using Kind = LookupError::Kind;

class FileTreeTest : public ::testing::Test {
 protected:
  FileTreeTest() : outside_() {
    root_.write("sip78xx.14-2-1-0001-14.loads", "loads file");
    root_.write("dialplan.xml", "<DIALTEMPLATE/>");
    root_.write("English_United_States/sp-sip.jar", "jar bytes");
    root_.write("Ringlist-wb.xml", "<CiscoIPPhoneRingList/>");
    outside_.write("secret.txt", "do not serve");
    std::filesystem::create_symlink(outside_.path() / "secret.txt", root_.path() / "escape.txt");
    std::filesystem::create_symlink(outside_.path(), root_.path() / "escapedir");
    std::filesystem::create_symlink(root_.path() / "dialplan.xml", root_.path() / "alias.xml");
  }
  FileTree tree(bool secure = false) {
    auto site = testing::make_site(root_.path().string());
    site->provisioning.secure = secure;
    return FileTree(site, cache_);
  }
  TempDir root_;
  TempDir outside_;
  std::shared_ptr<StaticFileCache> cache_ = std::make_shared<StaticFileCache>();
};

TEST_F(FileTreeTest, ServesRenderedConfigForAnyCaseOfTheMac) {
  auto t = tree();
  auto upper = t.open("SEP001122334455.cnf.xml");
  ASSERT_TRUE(upper);
  EXPECT_TRUE(upper->generated);
  auto lower = t.open("/sep001122334455.CNF.xml");
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->bytes, upper->bytes);  // same shared buffer
  EXPECT_NE(testing::to_string(*upper->bytes).find("<name>1001</name>"), std::string::npos);
  ASSERT_TRUE(t.open("XMLDefault.cnf.xml"));
  const std::vector<std::string> names = {"SEP001122334455.CNF.XML", "SEP001122334466.CNF.XML", "XMLDEFAULT.CNF.XML"};
  EXPECT_EQ(t.generated_names(), names);
  EXPECT_EQ(t.phone_configs(), 2u);
}

TEST_F(FileTreeTest, RendersAPhoneConfigOnRequestAndOnlyWhileSomeoneHoldsIt) {
  auto site = testing::make_site(root_.path().string());
  FileTree t(site, cache_);
  EXPECT_EQ(t.renders(), 0u);  // nothing rendered up front
  EXPECT_EQ(t.live_renderings(), 0u);
  {
    auto first = t.open("SEP001122334455.cnf.xml");
    auto second = t.open("sep001122334455.cnf.xml");
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->bytes, second->bytes);  // one rendering for both holders
    EXPECT_EQ(t.renders(), 1u);
    EXPECT_EQ(t.live_renderings(), 1u);
    EXPECT_EQ(testing::to_string(*first->bytes), render_phone_config(*site, site->phones[0]));
    auto other = t.open("SEP001122334466.cnf.xml");
    ASSERT_TRUE(other);
    EXPECT_NE(other->bytes, first->bytes);
    EXPECT_EQ(testing::to_string(*other->bytes), render_phone_config(*site, site->phones[1]));
    EXPECT_EQ(t.renders(), 2u);
    EXPECT_EQ(t.live_renderings(), 2u);
  }
  // The last holder let go: the tree keeps nothing, the next request renders it again, the same.
  EXPECT_EQ(t.live_renderings(), 0u);
  auto again = t.open("SEP001122334455.cnf.xml");
  ASSERT_TRUE(again);
  EXPECT_EQ(t.renders(), 3u);
  EXPECT_EQ(testing::to_string(*again->bytes), render_phone_config(*site, site->phones[0]));
  // XMLDefault is one file for every unlisted phone: held, not counted as a phone's rendering.
  ASSERT_TRUE(t.open("XMLDefault.cnf.xml"));
  EXPECT_EQ(t.renders(), 3u);
}

TEST_F(FileTreeTest, ConcurrentRequestsForOneConfigShareOneRendering) {
  auto t = tree();
  constexpr int kThreads = 8;
  std::vector<Bytes> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto f = t.open(i % 2 ? "SEP001122334455.cnf.xml" : "/SEP001122334455.CNF.XML");
      if (f) got[static_cast<std::size_t>(i)] = f->bytes;  // held until every thread is done
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& b : got) {
    ASSERT_TRUE(b);
    EXPECT_EQ(b, got[0]);
  }
  EXPECT_EQ(t.renders(), 1u);
}

TEST_F(FileTreeTest, UnknownPhoneConfigIsNotFound) {
  auto r = tree().open("SEP00AABBCCDDEE.cnf.xml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, Kind::NotFound);
  EXPECT_FALSE(r.error().expected);
}

TEST_F(FileTreeTest, SecurityFilesAreAnExpectedNotFoundOnNonSecureSite) {
  auto t = tree(false);
  for (const char* name : {"CTLSEP001122334455.tlv", "ITLSEP001122334455.tlv", "ITLFile.tlv", "CTLFile.tlv",
                           "SEP001122334455.cnf.xml.sgn"}) {
    auto r = t.open(name);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().kind, Kind::NotFound) << name;
    EXPECT_TRUE(r.error().expected) << name;
  }
}

TEST_F(FileTreeTest, SecureSiteLooksSecurityFilesUpOnDisk) {
  root_.write("ITLFile.tlv", "itl");
  auto t = tree(true);
  ASSERT_TRUE(t.open("ITLFile.tlv"));
  auto ctl = t.open("CTLFile.tlv");
  ASSERT_FALSE(ctl);
  EXPECT_FALSE(ctl.error().expected);
}

TEST_F(FileTreeTest, ServesStaticFilesWithLeadingSlashAndAnyCase) {
  auto t = tree();
  auto exact = t.open("dialplan.xml");
  ASSERT_TRUE(exact);
  EXPECT_EQ(testing::to_string(*exact->bytes), "<DIALTEMPLATE/>");
  auto slashed = t.open("//English_United_States/sp-sip.jar");
  ASSERT_TRUE(slashed);
  EXPECT_EQ(testing::to_string(*slashed->bytes), "jar bytes");
  auto folded = t.open("english_united_states/SP-SIP.JAR");
  ASSERT_TRUE(folded);
  EXPECT_EQ(folded->name, "English_United_States/sp-sip.jar");
  EXPECT_TRUE(t.open("RINGLIST-WB.XML"));
  EXPECT_TRUE(t.open("./dialplan.xml"));
}

TEST_F(FileTreeTest, RefusesEverythingThatLeavesTheRoot) {
  auto t = tree();
  for (const char* name : {"../secret.txt", "English_United_States/../../etc/passwd", "..", "a/../dialplan.xml",
                           "escape.txt", "escapedir/secret.txt"}) {
    auto r = t.open(name);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().kind, Kind::Refused) << name << ": " << r.error().reason;
  }
  EXPECT_EQ(t.open(std::string(300, 'a')).error().kind, Kind::Refused);
  EXPECT_EQ(t.open(std::string("dial\0plan.xml", 13)).error().kind, Kind::Refused);
  EXPECT_EQ(t.open("dial\nplan.xml").error().kind, Kind::Refused);
  // An absolute path is looked up under the root, so /etc/passwd is never the system's.
  auto abs = t.open("/etc/passwd");
  ASSERT_FALSE(abs);
  EXPECT_EQ(abs.error().kind, Kind::NotFound);
  // Directories are not files; a symlink that stays inside the root is fine.
  EXPECT_FALSE(t.open("English_United_States"));
  auto alias = t.open("alias.xml");
  ASSERT_TRUE(alias);
  EXPECT_EQ(testing::to_string(*alias->bytes), "<DIALTEMPLATE/>");
}

TEST_F(FileTreeTest, ReadsStaticFileOnceAndRereadsWhenItChanges) {
  auto t = tree();
  auto a = t.open("dialplan.xml");
  auto b = t.open("DIALPLAN.XML");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->bytes, b->bytes);
  EXPECT_EQ(cache_->reads(), 1u);
  root_.write("dialplan.xml", "<DIALTEMPLATE version=\"2\"/>");
  std::filesystem::last_write_time(
      root_.path() / "dialplan.xml",
      std::filesystem::last_write_time(root_.path() / "dialplan.xml") + std::chrono::seconds(5));
  auto c = t.open("dialplan.xml");
  ASSERT_TRUE(c);
  EXPECT_EQ(testing::to_string(*c->bytes), "<DIALTEMPLATE version=\"2\"/>");
  EXPECT_EQ(testing::to_string(*a->bytes), "<DIALTEMPLATE/>");  // holders keep the old version
  EXPECT_EQ(cache_->reads(), 2u);
}

TEST(StaticFileCacheTest, EvictsUnusedEntriesOverTheLimit) {
  TempDir dir;
  const auto a = dir.write("a", std::string(600, 'a'));
  const auto b = dir.write("b", std::string(600, 'b'));
  const auto c = dir.write("c", std::string(300, 'c'));
  StaticFileCache cache(1000);
  auto held = cache.get(a);
  ASSERT_TRUE(held);
  ASSERT_TRUE(cache.get(b));  // over the limit, but both are in use while b is handed out
  EXPECT_EQ(cache.cached_bytes(), 1200u);
  ASSERT_TRUE(cache.get(c));  // b is unused now and goes; a is still held and stays
  EXPECT_EQ(cache.cached_bytes(), 900u);
  ASSERT_TRUE(cache.get(a));
  EXPECT_EQ(cache.reads(), 3u);
  ASSERT_TRUE(cache.get(b));
  EXPECT_EQ(cache.reads(), 4u);
}

TEST(Classify, MapsFilesToBootSteps) {
  EXPECT_EQ(classify("CTLSEP001122334455.tlv"), Step::CtlFile);
  EXPECT_EQ(classify("CTLFile.tlv"), Step::CtlFile);
  EXPECT_EQ(classify("ITLSEP001122334455.tlv"), Step::ItlFile);
  EXPECT_EQ(classify("ITLFile.tlv"), Step::ItlFile);
  EXPECT_EQ(classify("SEP001122334455.cnf.xml"), Step::ConfigFile);
  EXPECT_EQ(classify("XMLDefault.cnf.xml"), Step::ConfigFile);
  EXPECT_EQ(classify("SEP001122334455.cnf.xml.sgn"), Step::ConfigFile);
  EXPECT_EQ(classify("sip78xx.14-2-1-0001-14.loads"), Step::FirmwareLoad);
  EXPECT_EQ(classify("kern78xx.14-2-1-0001-14.sbn"), Step::FirmwareLoad);
  EXPECT_EQ(classify("dialplan.xml"), Step::DialRules);
  EXPECT_EQ(classify("/English_United_States/sp-sip.jar"), Step::Locale);
  EXPECT_EQ(classify("United_States/g3-tones.xml"), Step::Locale);
  EXPECT_EQ(classify("softkeys.xml"), Step::Softkeys);
  EXPECT_EQ(classify("Ringlist-wb.xml"), Step::Ringtones);
  EXPECT_EQ(classify("DistinctiveRingList.xml"), Step::Ringtones);
  EXPECT_EQ(classify("Piano1.rwb"), Step::Ringtones);
  EXPECT_EQ(classify("background.png"), std::nullopt);
}

TEST(MacInName, FindsSepNameInAnyCase) {
  EXPECT_EQ(mac_in_name("CTLSEP001122334455.tlv"), MacAddress::parse("00:11:22:33:44:55"));
  EXPECT_EQ(mac_in_name("sep00aabbccddee.cnf.xml"), MacAddress::parse("00:aa:bb:cc:dd:ee"));
  EXPECT_EQ(mac_in_name("ITLFile.tlv"), std::nullopt);
  EXPECT_EQ(mac_in_name("SEP0011223344.cnf.xml"), std::nullopt);
}

}  // namespace
}  // namespace ve::provision
