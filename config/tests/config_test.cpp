#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace ve::config {
namespace {

const char* kMinimal = R"(site: { name: b1 }
state_dir: /tmp/ve
ports:
  - name: eth1
    voice_vlan: 100
    data_vlan: 10
dhcp:
  subnets:
    - vlan: 100
      interface: eth1
      prefix: 10.10.100.0/24
      pool: 10.10.100.100-10.10.100.199
      router: 10.10.100.1
      tftp_servers: [10.10.100.1, 10.10.100.2]
phones:
  - mac: "00:11:22:33:44:55"
    lines:
      - { extension: "1001", password: "pw" }
)";

std::vector<ConfigError> errors_of(const std::string& yaml) {
  auto r = load_string(yaml, "site.yaml");
  if (r) return {};
  return r.error();
}

// Finds the one error whose message contains `needle`; fails if none.
ConfigError find_error(const std::vector<ConfigError>& errors, const std::string& needle) {
  for (const auto& e : errors)
    if (e.message.find(needle) != std::string::npos) return e;
  std::string all;
  for (const auto& e : errors) all += e.to_string() + "\n";
  ADD_FAILURE() << "no error containing '" << needle << "' in:\n" << all;
  return {};
}

TEST(ConfigLoader, ExampleSiteFileIsValid) {
  auto r = load_file(std::filesystem::path(VE_SOURCE_DIR) / "examples/site.yaml");
  ASSERT_TRUE(r) << (r ? "" : r.error().front().to_string());
  const auto& c = **r;
  EXPECT_EQ(c.site.name, "branch-01");
  ASSERT_EQ(c.ports.size(), 2u);
  EXPECT_EQ(c.ports[0].voice_vlan, 100);
  EXPECT_EQ(c.ports[0].poe.priority, PoePriority::High);
  EXPECT_DOUBLE_EQ(c.ports[0].poe.max_watts, 15.4);
  ASSERT_EQ(c.dhcp.subnets.size(), 1u);
  ASSERT_EQ(c.dhcp.subnets[0].tftp_servers.size(), 2u);
  EXPECT_EQ(c.dhcp.subnets[0].tftp_servers[1].to_string(), "10.10.100.2");
  EXPECT_EQ(c.provisioning.call_manager_group.front().name, "cm1");
  ASSERT_EQ(c.phones.size(), 2u);
  EXPECT_EQ(c.phones[1].mac.sep_name(), "SEP001122334466");
  EXPECT_EQ(c.phones[1].lines[0].auth_user, "1002") << "auth_user defaults to the extension";
  EXPECT_EQ(c.phones[1].lines[1].password.reveal(), "th1rd");
  EXPECT_EQ(c.sip.listen.size(), 2u);
  EXPECT_EQ(c.sip.listen[1].transport, "tcp");
}

TEST(ConfigLoader, DefaultsApplyWhenKeysAreAbsent) {
  auto r = load_string(kMinimal);
  ASSERT_TRUE(r);
  const auto& c = **r;
  EXPECT_EQ(c.cdp.interval_s, 60);
  EXPECT_EQ(c.cdp.holdtime_s, 180);
  EXPECT_EQ(c.sip.min_expires_s, 60);
  EXPECT_EQ(c.poe.driver, "sim");
  EXPECT_EQ(c.provisioning.tftp.listen.port, 69);
  EXPECT_EQ(c.provisioning.http.listen.port, 6970);
  EXPECT_EQ(c.dhcp.phone_match.vendor_class_prefixes.at(0), "Cisco Systems, Inc. IP Phone");
  EXPECT_EQ(c.net.mode, NetMode::Bridge);
  EXPECT_EQ(c.phones[0].lines[0].button, 1);
}

TEST(ConfigLoader, UnknownKeyIsReportedAtItsPosition) {
  auto errs = errors_of("site: { name: b1 }\nstate_dir: /tmp/ve\nportz: []\n");
  auto e = find_error(errs, "unknown key");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 1);
  EXPECT_EQ(e.key_path, "portz");
  EXPECT_EQ(e.to_string().rfind("site.yaml:3:1: portz: unknown key", 0), 0u) << e.to_string();
}

TEST(ConfigLoader, VlanOutOfRange) {
  std::string y = kMinimal;
  y.replace(y.find("voice_vlan: 100"), 15, "voice_vlan: 4095");
  auto e = find_error(errors_of(y), "out of range 1-4094");
  EXPECT_EQ(e.line, 5);
  EXPECT_EQ(e.column, 17);
}

TEST(ConfigLoader, WrongTypeSaysWhatWasExpected) {
  std::string y = kMinimal;
  y.replace(y.find("data_vlan: 10"), 13, "data_vlan: ten");
  auto e = find_error(errors_of(y), "expected an integer, got 'ten'");
  EXPECT_EQ(e.line, 6);
}

TEST(ConfigLoader, PoolOutsidePrefix) {
  std::string y = kMinimal;
  y.replace(y.find("10.10.100.100-10.10.100.199"), 27, "10.10.100.100-10.10.101.5");
  auto e = find_error(errors_of(y), "is not inside prefix 10.10.100.0/24");
  EXPECT_EQ(e.line, 12);
}

TEST(ConfigLoader, BadAddressesAndPrefixes) {
  std::string y = kMinimal;
  y.replace(y.find("prefix: 10.10.100.0/24"), 22, "prefix: 10.10.100.7/24");
  y.replace(y.find("router: 10.10.100.1"), 19, "router: 10.10.300.1");
  auto errs = errors_of(y);
  find_error(errs, "has host bits set");
  auto e = find_error(errs, "'10.10.300.1' is not an IPv4 address");
  EXPECT_EQ(e.line, 13);
}

TEST(ConfigLoader, BadMacFormat) {
  std::string y = kMinimal;
  y.replace(y.find("00:11:22:33:44:55"), 17, "00:11:22:33:44");
  auto e = find_error(errors_of(y), "is not a MAC");
  EXPECT_EQ(e.line, 16);
}

TEST(ConfigLoader, DuplicatesAreErrors) {
  std::string y = kMinimal;
  y += R"(  - mac: "0011.2233.4455"
    lines:
      - { extension: "1001", password: "pw" }
)";
  y.replace(y.find("ports:\n"), 7, "ports:\n  - { name: eth1, voice_vlan: 100 }\n");
  auto errs = errors_of(y);
  auto mac = find_error(errs, "MAC 00:11:22:33:44:55 is already phones[0]");
  EXPECT_EQ(mac.line, 20);
  find_error(errs, "extension 1001 is already");
  find_error(errs, "duplicate port 'eth1'");
}

TEST(ConfigLoader, AllErrorsAreReportedAtOnceInFileOrder) {
  std::string y = kMinimal;
  y.replace(y.find("voice_vlan: 100"), 15, "voice_vlan: 0");
  y.replace(y.find("router: 10.10.100.1"), 19, "router: nope");
  y += "sip: { listen: [\"sctp:0.0.0.0:5060\"] }\n";
  auto errs = errors_of(y);
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_LT(errs[0].line, errs[1].line);
  EXPECT_LT(errs[1].line, errs[2].line);
  find_error(errs, "transport 'sctp' is not udp or tcp");
}

TEST(ConfigLoader, YamlSyntaxErrorHasPosition) {
  auto errs = errors_of("site:\n  name: [unclosed\nports: []\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_GT(errs[0].line, 0);
  EXPECT_NE(errs[0].to_string().find("site.yaml:"), std::string::npos);
}

TEST(ConfigLoader, ExpiresOrderIsChecked) {
  std::string y = kMinimal;
  y += "sip: { min_expires_s: 600, max_expires_s: 300 }\n";
  find_error(errors_of(y), "min 600 is above max 300");
}

TEST(ConfigLoader, MissingRequiredKeys) {
  std::string y = kMinimal;
  y.replace(y.find("      router: 10.10.100.1\n"), 26, "");
  find_error(errors_of(y), "missing required key 'router'");
}

TEST(ConfigLoader, PasswordFileIsReadAndNeverPrinted) {
  auto dir = std::filesystem::temp_directory_path() / ("ve-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "pw") << "t0ps3cret\n";
    std::string y = kMinimal;
    y.replace(y.find("password: \"pw\""), 14, "password_file: pw");
    std::ofstream(dir / "site.yaml") << y;
  }
  auto r = load_file(dir / "site.yaml");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->phones[0].lines[0].password.reveal(), "t0ps3cret");
  const auto dumped = to_json(**r).dump();
  EXPECT_EQ(dumped.find("t0ps3cret"), std::string::npos);
  EXPECT_NE(dumped.find("\"password\":\"***\""), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(ConfigLoader, MissingPasswordFileIsAnError) {
  std::string y = kMinimal;
  y.replace(y.find("password: \"pw\""), 14, "password_file: /nonexistent/pw");
  find_error(errors_of(y), "cannot read '/nonexistent/pw'");
}

TEST(ConfigLoader, EmptyInlinePasswordIsAnErrorWithPosition) {
  // An empty digest password would register the line without authentication.
  std::string y = kMinimal;
  y.replace(y.find("password: \"pw\""), 14, "password: \"\"");
  const auto e = find_error(errors_of(y), "password is empty");
  EXPECT_GT(e.line, 0);
  EXPECT_GT(e.column, 0);
  EXPECT_NE(e.key_path.find("password"), std::string::npos);
}

TEST(ConfigLoader, BindingsPerLineIsBounded) {
  std::string y = kMinimal;
  auto ok = load_string(y + "sip: { max_bindings_per_line: 3 }\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)->sip.max_bindings_per_line, 3);
  EXPECT_EQ((*load_string(y))->sip.max_bindings_per_line, 10);
  EXPECT_FALSE(load_string(y + "sip: { max_bindings_per_line: 0 }\n"));
}

TEST(ConfigLoader, UnreadableFileSaysWhy) {
  auto r = load_file("/nonexistent/site.yaml");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error()[0].to_string().find("cannot open"), std::string::npos);
}

TEST(MacAddress, AcceptsAllDocumentedForms) {
  for (const char* s : {"00:11:22:33:44:55", "0011.2233.4455", "001122334455", "SEP001122334455", "sep001122334455",
                        "00-11-22-33-44-55"}) {
    auto m = MacAddress::parse(s);
    ASSERT_TRUE(m) << s;
    EXPECT_EQ(m->sep_name(), "SEP001122334455");
  }
  for (const char* s : {"0011223344", "00:11:22:33:44:55:66", "00:11-22:33:44:55", "zz1122334455", "0:011:22:33:44:55"})
    EXPECT_FALSE(MacAddress::parse(s)) << s;
}

TEST(ConfigLoader, ConfigAccessDefaultsToLeaseAndPhonesMayHaveAStaticIp) {
  auto r = load_string(kMinimal);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->provisioning.config_access, ConfigAccess::Lease);
  EXPECT_FALSE((*r)->phones[0].ip);
  EXPECT_TRUE((*r)->warnings.empty());
  std::string y = kMinimal;
  y.replace(y.find("    lines:"), 10, "    ip: 10.10.100.50\n    lines:");
  auto bound = load_string(y);
  ASSERT_TRUE(bound) << bound.error().front().to_string();
  ASSERT_TRUE((*bound)->phones[0].ip);
  EXPECT_EQ((*bound)->phones[0].ip->to_string(), "10.10.100.50");
  EXPECT_EQ(to_json(**bound)["phones"][0]["ip"], "10.10.100.50");
}

TEST(ConfigLoader, BadOrDuplicatePhoneIpAndBadConfigAccessAreErrors) {
  std::string y = kMinimal;
  y.replace(y.find("    lines:"), 10, "    ip: 10.10.100.500\n    lines:");
  y += "provisioning: { config_access: everyone }\n";
  auto errs = errors_of(y);
  auto ip = find_error(errs, "'10.10.100.500' is not an IPv4 address");
  EXPECT_EQ(ip.line, 17);
  find_error(errs, "provisioning.config_access");
  std::string dup = kMinimal;
  dup.replace(dup.find("    lines:"), 10, "    ip: 10.10.100.50\n    lines:");
  dup += R"(  - mac: "00:11:22:33:44:66"
    ip: 10.10.100.50
    lines:
      - { extension: "1002", password: "pw" }
)";
  auto e = find_error(errors_of(dup), "10.10.100.50 is already the address of phones[0]");
  EXPECT_EQ(e.line, 21);
}

TEST(ConfigLoader, OpenConfigAccessWithPasswordsIsAWarningWithItsPosition) {
  std::string y = kMinimal;
  y += "provisioning:\n  config_access: open\n";
  auto r = load_string(y, "site.yaml");
  ASSERT_TRUE(r) << "a warning does not fail the load";
  EXPECT_EQ((*r)->provisioning.config_access, ConfigAccess::Open);
  ASSERT_EQ((*r)->warnings.size(), 1u);
  const auto& w = (*r)->warnings[0];
  EXPECT_EQ(w.line, 20);
  EXPECT_EQ(w.column, 18);
  EXPECT_NE(w.message.find("passwords of 1 line(s)"), std::string::npos) << w.message;
  EXPECT_EQ(to_json(**r)["provisioning"]["config_access"], "open");
}

TEST(ConfigLoader, UnmanagedKeaWithoutAChoiceOfConfigAccessIsAWarning) {
  std::string y = kMinimal;
  y.replace(y.find("dhcp:\n"), 6, "dhcp:\n  kea: { manage: false }\n");
  auto r = load_string(y);
  ASSERT_TRUE(r);
  ASSERT_EQ((*r)->warnings.size(), 1u);
  EXPECT_NE((*r)->warnings[0].message.find("dhcp.kea.manage is false"), std::string::npos);
  y += "provisioning: { config_access: lease }\n";
  auto chosen = load_string(y);
  ASSERT_TRUE(chosen);
  EXPECT_TRUE((*chosen)->warnings.empty());
}

TEST(ConfigLoader, DiagnosticsBoundsHaveDefaultsAndRanges) {
  auto r = load_string(kMinimal);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->diagnostics.boot_capture_per_phone_kib, 256);
  EXPECT_EQ((*r)->diagnostics.boot_capture_total_mib, 64);
  EXPECT_EQ((*r)->diagnostics.boot_timeout_s, 300);
  auto set = load_string(std::string(kMinimal) +
                         "diagnostics: { boot_capture_per_phone_kib: 512, boot_capture_total_mib: 8, "
                         "boot_timeout_s: 60 }\n");
  ASSERT_TRUE(set) << set.error().front().to_string();
  EXPECT_EQ((*set)->diagnostics.boot_capture_per_phone_kib, 512);
  EXPECT_EQ((*set)->diagnostics.boot_capture_total_mib, 8);
  EXPECT_EQ((*set)->diagnostics.boot_timeout_s, 60);
  auto errs = errors_of(std::string(kMinimal) + "diagnostics:\n  boot_capture_total_mib: 0\n  boot_capture_kib: 1\n");
  auto range = find_error(errs, "out of range 1-65536");
  EXPECT_EQ(range.line, 20);
  EXPECT_EQ(range.key_path, "diagnostics.boot_capture_total_mib");
  EXPECT_EQ(find_error(errs, "unknown key").line, 21);
}

TEST(ConfigLoader, UpstreamIsOptionalAndSurvivabilityHasDefaults) {
  auto r = load_string(kMinimal);
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)->sip.upstream.empty());
  EXPECT_EQ((*r)->sip.survivability.probe_interval_s, 30);
  EXPECT_EQ((*r)->sip.survivability.probe_failures, 3);
  EXPECT_EQ((*r)->sip.survivability.rehome_after_s, 120);
  // The test intervals (1 s, 2 misses, 3 s) are legal.
  auto set = load_string(std::string(kMinimal) + R"(sip:
  upstream:
    - { name: hq-1, host: 10.10.200.1, port: 5060, transport: udp }
    - { name: hq-2, host: 10.10.200.5, transport: tcp }
  survivability: { probe_interval_s: 1, probe_failures: 2, rehome_after_s: 3 }
)");
  ASSERT_TRUE(set) << set.error().front().to_string();
  const auto& c = **set;
  ASSERT_EQ(c.sip.upstream.size(), 2u);
  EXPECT_EQ(c.sip.upstream[0].name, "hq-1");
  EXPECT_EQ(c.sip.upstream[0].transport, "udp");
  EXPECT_EQ(c.sip.upstream[1].host, "10.10.200.5");
  EXPECT_EQ(c.sip.upstream[1].port, 5060);
  EXPECT_EQ(c.sip.upstream[1].transport, "tcp");
  EXPECT_EQ(c.sip.survivability.probe_interval_s, 1);
  EXPECT_EQ(c.sip.survivability.probe_failures, 2);
  EXPECT_EQ(c.sip.survivability.rehome_after_s, 3);
  const auto j = to_json(c);
  EXPECT_EQ(j["sip"]["upstream"][1]["transport"], "tcp");
  EXPECT_EQ(j["sip"]["survivability"]["rehome_after_s"], 3);
}

TEST(ConfigLoader, BadUpstreamsAreErrorsWithTheirPosition) {
  auto errs = errors_of(std::string(kMinimal) + R"(sip:
  listen: ["udp:10.10.100.1:5060"]
  upstream:
    - { name: hq-1, host: 10.10.200.1, transport: sctp }
    - { name: hq-1, host: hq.example.com }
    - { host: 10.10.200.2, port: 70000 }
    - { name: "bad name", host: 10.10.200.1, transport: sctp, weight: 3 }
    - { name: self, host: 10.10.100.1, port: 5060 }
    - { name: twice, host: 10.10.200.9 }
    - { name: again, host: 10.10.200.9 }
  survivability: { probe_interval_s: 0, probe_failures: 1000, rehome: 5 }
)");
  auto transport = find_error(errs, "'sctp' is not one of: udp, tcp");
  EXPECT_EQ(transport.line, 22);
  EXPECT_EQ(transport.key_path, "sip.upstream[0].transport");
  auto dup = find_error(errs, "duplicate upstream 'hq-1'");
  EXPECT_EQ(dup.line, 23);
  EXPECT_EQ(dup.column, 15);
  EXPECT_EQ(find_error(errs, "'hq.example.com' is not an IPv4 address").line, 23);
  EXPECT_EQ(find_error(errs, "missing required key 'name'").line, 24);
  EXPECT_EQ(find_error(errs, "70000 is out of range 1-65535").line, 24);
  EXPECT_EQ(find_error(errs, "'bad name' is not a name").line, 25);
  EXPECT_EQ(find_error(errs, "unknown key (allowed here: name, host, port, transport)").line, 25);
  EXPECT_EQ(find_error(errs, "it would forward to itself").line, 26);
  EXPECT_EQ(find_error(errs, "udp:10.10.200.9:5060 is listed twice").line, 28);
  auto interval = find_error(errs, "0 is out of range 1-3600");
  EXPECT_EQ(interval.line, 29);
  EXPECT_EQ(interval.key_path, "sip.survivability.probe_interval_s");
  EXPECT_EQ(find_error(errs, "1000 is out of range 1-100").line, 29);
  EXPECT_EQ(find_error(errs, "unknown key (allowed here: probe_interval_s").line, 29);
  EXPECT_FALSE(errors_of(std::string(kMinimal) + "sip: { upstream: [nonsense] }\n").empty());
  EXPECT_FALSE(errors_of(std::string(kMinimal) + "sip: { upstream: { name: x } }\n").empty());
}

}  // namespace
}  // namespace ve::config
