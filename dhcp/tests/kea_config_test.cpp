// make_kea_config: what Kea is told, and that real kea-dhcp4 accepts it (kea-dhcp4 -t; the
// subnets sit on "lo" because -t checks that interfaces exist).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "dhcp/dhcp.hpp"

namespace ve::dhcp {
namespace {

namespace fs = std::filesystem;

std::string site_yaml(const std::string& tftp = "[10.10.100.1, 10.10.100.2]") {
  return "site: { name: b1 }\n"
         "state_dir: /tmp/ve-kea-config-test\n"
         "ports:\n  - name: lo\n    voice_vlan: 100\n    data_vlan: 10\n"
         "dhcp:\n  kea:\n    event_socket: /tmp/ve-kea-config-test/ev.sock\n"
         "    hook_library: " VE_HOOK_LIBRARY
         "\n"
         "  subnets:\n"
         "    - vlan: 100\n      interface: lo\n      prefix: 10.10.100.0/24\n"
         "      pool: 10.10.100.100-10.10.100.199\n      router: 10.10.100.1\n"
         "      dns: [10.10.100.1, 9.9.9.9]\n      tftp_servers: " +
         tftp +
         "\n"
         "    - vlan: 10\n      interface: lo\n      prefix: 10.10.10.0/24\n"
         "      pool: 10.10.10.100-10.10.10.199\n      router: 10.10.10.1\n";
}

config::SiteConfigPtr site(const std::string& tftp = "[10.10.100.1, 10.10.100.2]") {
  auto r = config::load_string(site_yaml(tftp), "/etc/voiceedge/site.yaml");
  EXPECT_TRUE(r) << (r ? "" : r.error().front().to_string());
  return r ? *r : nullptr;
}

TEST(KeaConfig, DescribesSubnetsPoolsOptionsAndTheHook) {
  auto s = site();
  ASSERT_TRUE(s);
  const auto j = make_kea_config(*s, false)["Dhcp4"];
  EXPECT_EQ(j["interfaces-config"]["interfaces"], nlohmann::json::array({"lo"}));  // once, not per subnet
  ASSERT_EQ(j["subnet4"].size(), 2u);
  const auto& voice = j["subnet4"][0];
  EXPECT_EQ(voice["subnet"], "10.10.100.0/24");
  EXPECT_EQ(voice["pools"][0]["pool"], "10.10.100.100 - 10.10.100.199");
  EXPECT_EQ(voice["option-data"][0]["name"], "routers");
  EXPECT_EQ(voice["option-data"][1]["data"], "10.10.100.1, 9.9.9.9");
  EXPECT_NE(voice["id"], j["subnet4"][1]["id"]);
  EXPECT_EQ(j["lease-database"]["name"], "/tmp/ve-kea-config-test/kea/kea-leases4.csv");
  EXPECT_EQ(j["control-socket"]["socket-name"], "/tmp/ve-kea-config-test/kea/kea4-ctrl.sock");
  const auto& hook = j["hooks-libraries"][0];
  EXPECT_EQ(hook["library"], VE_HOOK_LIBRARY);
  EXPECT_EQ(hook["parameters"]["site-file"], "/etc/voiceedge/site.yaml");
  EXPECT_EQ(hook["parameters"]["event-socket"], "/tmp/ve-kea-config-test/ev.sock");
  // Option 150 is the hook's business, never a Kea option.
  EXPECT_EQ(j.dump().find("\"150\""), std::string::npos);
}

TEST(KeaConfig, HookPartOnlyIsJustTheLibraryEntry) {
  auto s = site();
  ASSERT_TRUE(s);
  const auto j = make_kea_config(*s, true);
  ASSERT_EQ(j.size(), 1u);
  ASSERT_TRUE(j.contains("hooks-libraries"));
  EXPECT_FALSE(j["hooks-libraries"][0]["parameters"].contains("site-digest"));
}

TEST(KeaConfig, ChangingOnlyTftpServersChangesKeasConfig) {
  // Otherwise the supervisor would not config-reload and the hook would keep the old list.
  auto a = site();
  auto b = site("[10.10.100.2, 10.10.100.1]");
  ASSERT_TRUE(a && b);
  EXPECT_NE(make_kea_config(*a, false), make_kea_config(*b, false));
  EXPECT_EQ(make_kea_config(*a, false), make_kea_config(*site(), false));
}

TEST(KeaConfig, ChangingOnlyTheSocketReceiveBufferChangesKeasConfig) {
  // The hook sets it on Kea's sockets after each (re)configuration: a reload must reach it.
  auto a = site();
  auto b = site();
  ASSERT_TRUE(a && b);
  config::SiteConfig changed = *b;
  changed.dhcp.kea.socket_receive_buffer_kib = 4096;
  EXPECT_NE(make_kea_config(*a, false), make_kea_config(changed, false));
}

TEST(KeaConfig, RealKeaAcceptsIt) {
  const auto dir = fs::temp_directory_path() / ("ve-kea-config-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "site.yaml") << site_yaml();
  auto loaded = config::load_file(dir / "site.yaml");  // -t opens the hook, which reads this file
  ASSERT_TRUE(loaded);
  auto s = *loaded;
  const auto file = dir / "kea-dhcp4.json";
  std::ofstream(file) << make_kea_config(*s, false).dump(2);
  const auto cmd = "KEA_LOCKFILE_DIR=" + dir.string() + " /usr/sbin/kea-dhcp4 -t " + file.string() + " > " +
                   (dir / "out.txt").string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream out(dir / "out.txt");
  const std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(status, 0) << text;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ve::dhcp
