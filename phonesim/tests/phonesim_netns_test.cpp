// The simulator against the real box: voiceedged (CDP, sim PoE, managed kea-dhcp4 with our hook,
// TFTP + HTTP 6970, SIP registrar) in one network namespace, the simulated phones in another,
// a veth between them. Needs root; everything is named with the pid and removed afterwards.
#include <gtest/gtest.h>

#include <unistd.h>

#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"

namespace ve::test {
namespace {

// The box (voiceedged, with 10.10.100.1 on its port) and the phones, joined by a veth.
struct Namespaces {
  Namespace box_ns{"vepsb"}, phone_ns{"vepsp"};
  std::string box_if = unique_name("vepsb"), phone_if = unique_name("vepsp");
  VethPair veth{{&box_ns, box_if, "10.10.100.1/24"}, {&phone_ns, phone_if}};
};

std::string site_yaml(const Namespaces& n, const std::filesystem::path& dir, int http_port = 6970, int lease_s = 3600) {
  const std::string d = dir.string();
  return "site: { name: phonesim-test, locale: English_United_States }\n"
         "state_dir: @STATE@\n"
         "control: { socket: @SOCKET@, http: \"off\" }\n"
         "ports:\n  - name: " +
         n.box_if +
         "\n    voice_vlan: 100\n    data_vlan: 10\n"
         "    poe: { mode: auto, priority: high, max_watts: 15.4 }\n"
         "cdp: { enabled: true, interval_s: 5, holdtime_s: 15, fast_start_count: 3 }\n"
         "lldp: { enabled: false }\n"
         "poe:\n  driver: sim\n  sim:\n    " +
         n.box_if +
         ": { class: 2, draw_watts: 6.3 }\n"
         "net: { mode: none }\n"
         "dhcp:\n  kea:\n    manage: true\n    hook_library: " VE_HOOK_LIBRARY
         "\n"
         "    valid_lifetime_s: " +
         std::to_string(lease_s) +
         "\n"
         "    event_socket: " +
         d +
         "/events.sock\n"
         "  subnets:\n    - vlan: 100\n      interface: " +
         n.box_if +
         "\n"
         "      prefix: 10.10.100.0/24\n      pool: 10.10.100.100-10.10.100.199\n"
         "      router: 10.10.100.1\n      tftp_servers: [10.10.100.1]\n"
         "provisioning:\n  root: " +
         d +
         "/tftp\n"
         "  tftp: { listen: \"10.10.100.1:69\" }\n  http: { listen: \"10.10.100.1:" +
         std::to_string(http_port) +
         "\" }\n"
         "  call_manager_group:\n    - { name: cm1, host: 10.10.100.1, sip_port: 5060, priority: 0 }\n"
         "  default_load: sip78xx.14-2-1-0001-14\n"
         "sip:\n  listen: [\"tcp:10.10.100.1:5060\", \"udp:10.10.100.1:5060\"]\n  realm: phonesim-test\n"
         "phones:\n"
         "  - { mac: \"00:11:22:33:44:01\", model: CP-7841, lines: [ { extension: \"1001\", password: \"pw-1001\" } ] "
         "}\n"
         "  - { mac: \"00:11:22:33:44:02\", model: CP-7841, lines: [ { extension: \"1002\", auth_user: \"a1002\", "
         "password: \"pw-1002\" } ] }\n"
         "  - { mac: \"00:11:22:33:44:03\", model: CP-7841, lines: [ { extension: \"1003\", password: \"pw-1003\" } ] "
         "}\n"
         "  - { mac: \"00:11:22:33:44:04\", model: CP-7841, load: sip78xx.99-9-9-0001-1,\n"
         "      lines: [ { extension: \"1004\", password: \"pw-1004\" } ] }\n";
}

struct SimRun {
  int exit_code = -1;
  std::vector<nlohmann::json> phones;
  nlohmann::json summary;
  std::vector<nlohmann::json> refreshes;
  std::string raw;
};

class PhonesimNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(is_root()) << "needs root for network namespaces";
    ASSERT_TRUE(net_.veth.ok()) << net_.veth.error();
    // Static files the phones ask for after their config (steps 9, 12-14).
    for (const char* d : {"tftp/English_United_States", "tftp/United_States"}) {
      std::filesystem::create_directories(files_.path() / d);
    }
    files_.write("tftp/dialplan.xml", "<DIALTEMPLATE><TEMPLATE MATCH=\"1...\" Timeout=\"0\"/></DIALTEMPLATE>");
    files_.write("tftp/softkeys.xml", "<softKeyCfg/>");
    files_.write("tftp/English_United_States/sp-sip.jar", "jar");
    files_.write("tftp/United_States/g3-tones.xml", "<tones/>");
    files_.write("tftp/Ringlist-wb.xml", "<CiscoIPPhoneRingList/>");
    // The default load, for phones running an older one (step 8).
    files_.write("tftp/sip78xx.14-2-1-0001-14.loads", "# image list\nsip78xx.14-2-1-0001-14.sbn\n");
    files_.write("tftp/sip78xx.14-2-1-0001-14.sbn", std::string(200000, 'L'));
    daemon_ = std::make_unique<Daemon>(site_yaml(net_, files_.path()), net_.box_ns.exec());
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
  }

  std::vector<std::string> sim_argv(const std::vector<std::string>& args) const {
    auto argv = net_.phone_ns.exec({VE_PHONESIM, "--interface", net_.phone_if, "--json", "--timeout-s", "90"});
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  SimRun simulate(const std::vector<std::string>& args) {
    auto r = run(sim_argv(args), std::chrono::seconds(150));
    return parse(r.exit_code, r.out, r.err);
  }

  static SimRun parse(int exit_code, const std::string& stdout_text, const std::string& stderr_text) {
    SimRun out;
    out.exit_code = exit_code;
    out.raw = stdout_text + stderr_text;
    std::istringstream lines(stdout_text);
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) {
        ADD_FAILURE() << "not JSON: " << line;
        continue;
      }
      if (j.contains("summary"))
        out.summary = j["summary"];
      else if (j.contains("refresh"))
        out.refreshes.push_back(j["refresh"]);
      else
        out.phones.push_back(j);
    }
    return out;
  }

  void restart_daemon(int http_port, int lease_s = 3600) {
    daemon_->stop(SIGTERM);
    daemon_->write_site(site_yaml(net_, files_.path(), http_port, lease_s));
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
  }

  static const nlohmann::json* phone(const SimRun& r, const std::string& mac) {
    for (const auto& p : r.phones) {
      if (p.value("mac", "") == mac) return &p;
    }
    return nullptr;
  }

  // Outcomes of `step` in record order.
  static std::vector<std::string> outcomes(const nlohmann::json& p, int step) {
    std::vector<std::string> out;
    for (const auto& s : p["steps"]) {
      if (s["step"].get<int>() == step) out.push_back(s["outcome"].get<std::string>());
    }
    return out;
  }

  Namespaces net_;
  TempDir files_{"ve-phonesim"};
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(PhonesimNetns, ThreeListedPhonesBootThroughEveryStepToRegistered) {
  auto r = simulate({"--phones", "3", "--first-mac", "00:11:22:33:44:01", "--expect-vlan", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.raw << "\n--- daemon log ---\n" << daemon_->log();
  ASSERT_EQ(r.phones.size(), 3u) << r.raw;
  EXPECT_EQ(r.summary["registered"], 3);
  EXPECT_EQ(r.summary["failed"], 0);
  EXPECT_NE(r.summary["vlan_tagging"].get<std::string>().find("100"), std::string::npos);

  for (const std::string ext : {"1001", "1002", "1003"}) {
    const std::string mac = "00:11:22:33:44:0" + ext.substr(3);
    const auto* p = phone(r, mac);
    ASSERT_NE(p, nullptr) << mac;
    SCOPED_TRACE(p->dump(2));
    EXPECT_TRUE((*p)["registered"].get<bool>());
    EXPECT_EQ((*p)["reached_step"], 14);
    EXPECT_EQ((*p)["voice_vlan"], 100);
    EXPECT_EQ((*p)["config_file"], "SEP00112233440" + ext.substr(3) + ".cnf.xml");
    EXPECT_EQ((*p)["lines"], nlohmann::json::array({ext}));
    EXPECT_EQ((*p)["registered_with"], "10.10.100.1:5060");
    const std::string ip = (*p)["ip"].get<std::string>();
    EXPECT_EQ(ip.rfind("10.10.100.", 0), 0u) << ip;
    EXPECT_TRUE((*p)["failure"].is_null());

    // Every step in the order of the boot sequence, none missing before registration.
    int last = 0;
    for (const auto& s : (*p)["steps"]) {
      EXPECT_GE(s["step"].get<int>(), last) << s.dump();
      last = s["step"].get<int>();
    }
    for (int step = 1; step <= 14; ++step) EXPECT_FALSE(outcomes(*p, step).empty()) << "step " << step;
    EXPECT_EQ(outcomes(*p, 3), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 4), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 5), std::vector<std::string>{"expected"});                // CTL not found
    EXPECT_EQ(outcomes(*p, 6), (std::vector<std::string>{"expected", "expected"}));  // ITLSEP, ITLFile
    EXPECT_EQ(outcomes(*p, 7), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 8), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 9), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 10), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 11), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 12), (std::vector<std::string>{"ok", "ok"}));
    EXPECT_EQ(outcomes(*p, 13), std::vector<std::string>{"ok"});
    EXPECT_EQ(outcomes(*p, 14), (std::vector<std::string>{"ok", "missing"}));  // no DistinctiveRingList.xml
    // The downloads went over HTTP 6970 (nothing made the phone fall back).
    EXPECT_NE((*p)["steps"][6]["detail"].get<std::string>().find("http 10.10.100.1:6970"), std::string::npos);
  }

  // The box saw the same phones: leases and registrations.
  const auto leases = daemon_->ctl_json({"show", "dhcp", "leases"}).dump();
  const auto regs = daemon_->ctl_json({"show", "sip", "registrations"}).dump();
  for (const std::string ext : {"1001", "1002", "1003"}) {
    const auto* p = phone(r, "00:11:22:33:44:0" + ext.substr(3));
    ASSERT_NE(p, nullptr);
    EXPECT_NE(leases.find((*p)["ip"].get<std::string>()), std::string::npos) << leases;
    EXPECT_NE(regs.find("\"" + ext + "\""), std::string::npos) << regs;
    EXPECT_NE(regs.find("SEP00112233440" + ext.substr(3)), std::string::npos) << regs;
  }
  EXPECT_NE(regs.find("sip78xx.14-2-1-0001-14"), std::string::npos) << "ActiveLoad from the Reason header: " << regs;
  // The simulator removed the addresses it added.
  EXPECT_EQ(net_.phone_ns.ip({"-4", "addr", "show", "dev", net_.phone_if}).out.find("10.10.100."), std::string::npos);
}

TEST_F(PhonesimNetns, UnknownPhoneGetsXmlDefaultAndStopsAtStep11WithTheRegistrarsReason) {
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:99"});
  EXPECT_EQ(r.exit_code, 1) << r.raw;
  ASSERT_EQ(r.phones.size(), 1u) << r.raw;
  const auto& p = r.phones.front();
  SCOPED_TRACE(p.dump(2));
  EXPECT_FALSE(p["registered"].get<bool>());
  EXPECT_EQ(p["config_file"], "XMLDefault.cnf.xml");
  EXPECT_EQ(outcomes(p, 7), (std::vector<std::string>{"missing", "ok"}));
  EXPECT_EQ(p["failed_step"], 11);
  EXPECT_EQ(p["reached_step"], 11);
  const std::string failure = p["failure"].get<std::string>();
  // The registrar challenges an unknown user exactly like a known one (no line enumeration,
  // docs/security.md), so the phone learns only that XMLDefault gave it no credentials.
  EXPECT_NE(failure.find("401"), std::string::npos) << failure;
  EXPECT_NE(failure.find("no authName"), std::string::npos) << failure;
  EXPECT_EQ(r.summary["failed"], 1);
}

TEST_F(PhonesimNetns, TftpOnlyPhoneRegistersAndKeepsItsRegistrationRefreshed) {
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:02", "--transport", "tftp", "--hold-s", "3",
                     "--refresh-s", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.raw;
  ASSERT_EQ(r.phones.size(), 1u);
  const auto& p = r.phones.front();
  EXPECT_TRUE(p["registered"].get<bool>()) << p.dump(2);
  EXPECT_NE(p["steps"][6]["detail"].get<std::string>().find("tftp 10.10.100.1"), std::string::npos) << p.dump(2);
  ASSERT_EQ(r.refreshes.size(), 1u) << r.raw;
  EXPECT_GE(r.refreshes[0]["ok"].get<int>(), 1) << r.raw;
  EXPECT_EQ(r.refreshes[0]["failed"], 0);
  EXPECT_TRUE(r.refreshes[0]["registered_at_end"].get<bool>());
}

TEST_F(PhonesimNetns, WrongExpectedVlanFailsStep3) {
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:01", "--expect-vlan", "200"});
  EXPECT_EQ(r.exit_code, 1) << r.raw;
  ASSERT_EQ(r.phones.size(), 1u);
  EXPECT_EQ(r.phones[0]["failed_step"], 3);
  EXPECT_NE(r.phones[0]["failure"].get<std::string>().find("offers voice VLAN 100, expected 200"), std::string::npos)
      << r.phones[0].dump(2);
}

TEST_F(PhonesimNetns, PhoneFallsBackToTftpWhenHttp6970DoesNotAnswer) {
  restart_daemon(6971);  // nothing listens on 6970 now: connection refused
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:03"});
  ASSERT_EQ(r.exit_code, 0) << r.raw;
  ASSERT_EQ(r.phones.size(), 1u);
  const auto& p = r.phones.front();
  EXPECT_TRUE(p["registered"].get<bool>());
  const std::string ctl = p["steps"][4]["detail"].get<std::string>();
  EXPECT_EQ(p["steps"][4]["outcome"], "expected") << ctl;
  EXPECT_NE(ctl.find("via tftp 10.10.100.1"), std::string::npos) << ctl;
  EXPECT_EQ(outcomes(p, 7), std::vector<std::string>{"ok"});
}

TEST_F(PhonesimNetns, PhoneOnAnOlderLoadFetchesTheConfiguredLoad) {
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:01", "--load", "sip78xx.12-8-1-0001-455"});
  ASSERT_EQ(r.exit_code, 0) << r.raw;
  const auto& p = r.phones.front();
  EXPECT_EQ(outcomes(p, 8), std::vector<std::string>{"ok"});
  EXPECT_EQ(p["active_load"], "sip78xx.14-2-1-0001-14");
  EXPECT_EQ(p["inactive_load"], "sip78xx.12-8-1-0001-455");
  const auto regs = daemon_->ctl_json({"show", "sip", "registrations"}).dump();
  EXPECT_NE(regs.find("sip78xx.12-8-1-0001-455"), std::string::npos) << "InactiveLoad: " << regs;
}

// Issue 21's firmware storm: the load over TFTP only, with RFC 7440 windows (the 200 000-byte
// image is 141 blocks of 1428: eight full windows of 16 and a short one).
TEST_F(PhonesimNetns, OlderLoadOverTftpWithWindowsize16ArrivesWhole) {
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:01", "--load", "sip78xx.12-8-1-0001-455",
                     "--transport", "tftp", "--tftp-windowsize", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.raw;
  const auto& p = r.phones.front();
  EXPECT_EQ(outcomes(p, 8), std::vector<std::string>{"ok"});
  EXPECT_EQ(p["active_load"], "sip78xx.14-2-1-0001-14");
  EXPECT_TRUE(p["registered"].get<bool>()) << r.raw;
  // The .loads file (40 bytes) and the whole image.
  EXPECT_NE(r.raw.find("1 listed file(s), 200040 bytes"), std::string::npos) << r.raw;
}

TEST_F(PhonesimNetns, MissingLoadFileFailsStep8) {
  // Phone 4's config names sip78xx.99-9-9-0001-1, which the server does not have.
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:04", "--load", "sip78xx.14-2-1-0001-14"});
  EXPECT_EQ(r.exit_code, 1) << r.raw;
  const auto& p = r.phones.front();
  EXPECT_EQ(p["failed_step"], 8) << p.dump(2);
  EXPECT_NE(p["failure"].get<std::string>().find("sip78xx.99-9-9-0001-1.loads not found"), std::string::npos)
      << p["failure"];
}

TEST_F(PhonesimNetns, RegistrationSurvivesADaemonKillAndIsRefreshedAfterTheRestart) {
  const auto log = files_.path() / "phonesim.out";
  auto argv = sim_argv({"--phones", "2", "--first-mac", "00:11:22:33:44:01", "--hold-s", "10", "--refresh-s", "1"});
  Child sim(argv, log);
  ASSERT_TRUE(eventually(
      [&] {
        return read_file(log).find("\"registered\":true") != std::string::npos &&
               parse(0, read_file(log), "").phones.size() == 2;
      },
      std::chrono::seconds(60)))
      << read_file(log);
  daemon_->stop(SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // refreshes fail meanwhile
  ASSERT_TRUE(daemon_->start()) << daemon_->log();
  const auto exit = sim.wait(std::chrono::seconds(60));
  ASSERT_TRUE(exit.has_value()) << read_file(log);
  auto r = parse(*exit, read_file(log), "");
  EXPECT_EQ(r.exit_code, 0) << r.raw;
  ASSERT_EQ(r.refreshes.size(), 2u) << r.raw;
  for (const auto& f : r.refreshes) {
    EXPECT_TRUE(f["registered_at_end"].get<bool>()) << f.dump();
    EXPECT_GE(f["ok"].get<int>(), 3) << f.dump();
  }
  const auto regs = daemon_->ctl_json({"show", "sip", "registrations"}).dump();
  EXPECT_NE(regs.find("\"1001\""), std::string::npos) << regs;
  EXPECT_NE(regs.find("\"1002\""), std::string::npos) << regs;
}

TEST_F(PhonesimNetns, HeldPhoneRenewsItsLeaseAtT1) {
  restart_daemon(6970, 60);  // the shortest lease the site file allows: T1 after 30 s
  auto r = simulate({"--phones", "1", "--first-mac", "00:11:22:33:44:03", "--hold-s", "34", "--refresh-s", "15"});
  ASSERT_EQ(r.exit_code, 0) << r.raw;
  ASSERT_EQ(r.refreshes.size(), 1u) << r.raw;
  EXPECT_GE(r.refreshes[0]["lease_renewed"].get<int>(), 1) << r.raw;
  EXPECT_EQ(r.refreshes[0]["lease_renew_failed"], 0) << r.raw;
  EXPECT_GE(r.refreshes[0]["ok"].get<int>(), 2) << r.raw;
}

}  // namespace
}  // namespace ve::test
