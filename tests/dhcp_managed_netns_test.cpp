// voiceedged running Kea (dhcp.kea.manage: true) in a server namespace, a scapy phone in a client
// namespace: the daemon starts Kea with the hook, sees the lease, keeps DHCP up through its own
// crash (the restarted daemon adopts the running Kea), restarts a Kea that died, reloads Kea when
// the site file changes, and stops Kea on a clean stop.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>

#include "tests/dhcp_netns_util.hpp"

namespace ve::test {
namespace {

constexpr const char* kPhoneClass = "Cisco Systems, Inc. IP Phone CP-7841";
constexpr const char* kPhonePrl = "1,3,6,15,42,66,150";

// Running and not a zombie (an orphaned Kea is reaped by whoever is pid 1, maybe late).
bool serving_process(pid_t pid) {
  if (pid <= 0) return false;
  const auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// Every live kea-dhcp4 running `config`.
std::vector<pid_t> keas_running(const fs::path& config) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmd = read_file(e.path() / "cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find("kea-dhcp4") != std::string::npos && cmd.find(config.string()) != std::string::npos &&
        serving_process(std::stoi(name)))
      out.push_back(std::stoi(name));
  }
  return out;
}

nlohmann::json control(const std::string& socket_path, const nlohmann::json& request) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket_path.c_str(), sizeof(a.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return nullptr;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto line = request.dump() + "\n";
  (void)::write(fd, line.data(), line.size());
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    const auto n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return nlohmann::json::parse(in.substr(0, in.find('\n')), nullptr, false);
}

class ManagedKea : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(net_.veth.ok()) << net_.veth.error() << " (needs root)";
    fs::create_directories(dir_.path() / "tftp");
    site_ = dir_.path() / "site.yaml";
    write_site("[10.10.100.1, 10.10.100.2]");
  }
  void TearDown() override {
    daemon_.stop(SIGTERM);
    // Never leave a Kea behind, whatever happened in the test.
    for (pid_t p : keas_running(kea_config())) ::kill(p, SIGKILL);
  }

  void write_site(const std::string& tftp_servers) {
    const auto d = dir_.path().string();
    write_file(
        site_,
        "site: { name: dhcp-managed }\n"
        "state_dir: " +
            d +
            "/state\n"
            "control:\n  socket: " +
            d +
            "/ctl.sock\n"
            "ports:\n  - name: " +
            net_.server_if +
            "\n    voice_vlan: 100\n    data_vlan: 10\n"
            "net: { mode: none }\n"
            "dhcp:\n  kea:\n    manage: true\n"
            "    hook_library: " VE_HOOK_LIBRARY
            "\n"
            "    event_socket: " +
            d +
            "/events.sock\n"
            "  subnets:\n    - vlan: 100\n      interface: " +
            net_.server_if +
            "\n"
            "      prefix: 10.10.100.0/24\n      pool: 10.10.100.100-10.10.100.199\n"
            "      router: 10.10.100.1\n      dns: [10.10.100.1]\n"
            "      tftp_servers: " +
            tftp_servers +
            "\n"
            "provisioning:\n  root: " +
            d +
            "/tftp\n"
            "phones:\n  - mac: \"00:11:22:33:44:55\"\n    lines:\n      - { extension: \"1001\", password: \"pw\" }\n");
  }

  fs::path state() const { return dir_.path() / "state"; }
  fs::path kea_config() const { return state() / "kea" / "kea-dhcp4.json"; }
  fs::path kea_pid_file() const { return state() / "kea" / "kea-dhcp4.kea-dhcp4.pid"; }
  std::string ctl_socket() const { return (dir_.path() / "ctl.sock").string(); }
  std::string daemon_log() const { return read_file(dir_.path() / "voiceedged.log"); }

  pid_t kea_pid() const {
    const auto text = read_file(kea_pid_file());
    return text.empty() ? -1 : std::atoi(text.c_str());
  }

  void start_daemon() {
    daemon_ = Child(net_.server_ns.exec({VE_VOICEEDGED, "--config", site_.string(), "--log-level", "debug"}),
                    dir_.path() / "voiceedged.log");
    ASSERT_TRUE(eventually(
        [&] {
          return control(ctl_socket(), {{"cmd", "show.dhcp.leases"}}).is_object();
        },
        std::chrono::seconds(20)))
        << daemon_log();
  }

  void wait_kea_serving() {
    ASSERT_TRUE(eventually(
        [&] { return serving_process(kea_pid()) && daemon_log().find("DHCP4_STARTED") != std::string::npos; },
        std::chrono::seconds(20)))
        << daemon_log();
  }

  nlohmann::json phone_dora(const std::string& mac) {
    return dhcp_exchange(net_, {.mac = mac, .vendor_class = kPhoneClass, .prl = kPhonePrl});
  }

  nlohmann::json lease_of(const std::string& mac) {
    auto reply = control(ctl_socket(), {{"cmd", "show.dhcp.leases"}});
    if (!reply.is_object() || !reply.value("ok", false)) return nullptr;
    for (const auto& l : reply["data"]["leases"])
      if (l.value("mac", "") == mac) return l;
    return nullptr;
  }

  DhcpNetwork net_;
  TempDir dir_{"ve-dhcp"};
  fs::path site_;
  Child daemon_;
};

TEST_F(ManagedKea, DaemonStartsKeaWithTheHookAndShowsThePhonesLease) {
  start_daemon();
  wait_kea_serving();
  auto reply = phone_dora("00:aa:bb:10:00:01");
  ASSERT_TRUE(reply["ack"].is_object()) << daemon_log();
  EXPECT_EQ(reply["ack"]["options"].value("150", ""), "0a0a64010a0a6402");
  EXPECT_EQ(reply["ack"]["options"].value("66", ""), hex_of("10.10.100.1"));
  EXPECT_EQ(reply["ack"]["options"].value("6", ""), "0a0a6401");  // DNS from the site file, via Kea

  nlohmann::json lease;
  ASSERT_TRUE(eventually(
      [&] {
        lease = lease_of("00:aa:bb:10:00:01");
        return lease.is_object() && lease.value("state", "") == "bound";
      },
      std::chrono::seconds(5)))
      << lease.dump();
  EXPECT_EQ(lease["ip"], reply["ack"]["yiaddr"]);
  EXPECT_EQ(lease["phone"], "vendor-class");
  EXPECT_EQ(lease["device"], "SEP00AABB100001");
  EXPECT_EQ(lease["subnet"], "10.10.100.0/24");

  // The journey got step 4.
  auto journey = control(ctl_socket(), {{"cmd", "show.journey"}, {"args", {{"phone", "00:aa:bb:10:00:01"}}}});
  EXPECT_NE(journey.dump().find(reply["ack"]["yiaddr"].get<std::string>()), std::string::npos) << journey.dump();

  // Kea's own log lines reach the daemon's log with a prefix.
  EXPECT_NE(daemon_log().find("kea-dhcp4: INFO  [kea-dhcp4.voiceedge-hooks] VOICEEDGE_LOAD_OK"), std::string::npos);

#ifdef VE_VOICEEDGECTL
  const auto [status, table, err] = run({VE_VOICEEDGECTL, "--socket", ctl_socket(), "show", "dhcp", "leases"});
  EXPECT_EQ(status, 0) << err;
  EXPECT_NE(table.find(reply["ack"]["yiaddr"].get<std::string>()), std::string::npos) << table;
  EXPECT_NE(table.find("SEP00AABB100001"), std::string::npos) << table;
#endif
}

TEST_F(ManagedKea, DaemonCrashLeavesKeaServingAndTheRestartedDaemonAdoptsIt) {
  start_daemon();
  wait_kea_serving();
  const pid_t kea = kea_pid();
  ASSERT_TRUE(phone_dora("00:aa:bb:20:00:01")["ack"].is_object());

  daemon_.stop(SIGKILL);
  // DHCP goes on without the daemon; the hook's reports go nowhere.
  auto during = phone_dora("00:aa:bb:20:00:02");
  ASSERT_TRUE(during["ack"].is_object()) << "Kea stopped answering when the daemon died";
  EXPECT_EQ(during["ack"]["options"].value("150", ""), "0a0a64010a0a6402");
  EXPECT_TRUE(serving_process(kea));

  start_daemon();
  ASSERT_TRUE(eventually(
      [&] { return daemon_log().find("adopting running kea-dhcp4 (pid " + std::to_string(kea)) != std::string::npos; },
      std::chrono::seconds(5)))
      << daemon_log();
  EXPECT_EQ(keas_running(kea_config()), std::vector<pid_t>{kea}) << "a second Kea was started";
  // The lease given out while the daemon was down is known (from Kea's lease file).
  auto lease = lease_of("00:aa:bb:20:00:02");
  ASSERT_TRUE(lease.is_object());
  EXPECT_EQ(lease["ip"], during["ack"]["yiaddr"]);
  // And new leases are reported to the new daemon.
  auto after = phone_dora("00:aa:bb:20:00:03");
  ASSERT_TRUE(after["ack"].is_object());
  EXPECT_TRUE(eventually([&] { return lease_of("00:aa:bb:20:00:03").is_object(); }, std::chrono::seconds(5)));

  // A clean stop stops the Kea it adopted.
  EXPECT_EQ(daemon_.stop(SIGTERM), 0) << "exit code; -1: a signal or no exit";
  EXPECT_TRUE(eventually([&] { return !serving_process(kea); }, std::chrono::seconds(3)));
  EXPECT_TRUE(keas_running(kea_config()).empty());
}

TEST_F(ManagedKea, KeaThatDiesIsRestarted) {
  start_daemon();
  wait_kea_serving();
  const pid_t first = kea_pid();
  ::kill(first, SIGKILL);
  ASSERT_TRUE(eventually([&] { return kea_pid() != first && serving_process(kea_pid()); }, std::chrono::seconds(10)))
      << daemon_log();
  EXPECT_NE(daemon_log().find("restarting in"), std::string::npos);
  ASSERT_TRUE(eventually([&] { return daemon_log().rfind("DHCP4_STARTED") > daemon_log().find("restarting in"); },
                         std::chrono::seconds(10)));
  EXPECT_TRUE(phone_dora("00:aa:bb:30:00:01")["ack"].is_object()) << daemon_log();
  const pid_t second = kea_pid();
  daemon_.stop(SIGTERM);
  EXPECT_TRUE(eventually([&] { return !serving_process(second); }, std::chrono::seconds(3)));
}

TEST_F(ManagedKea, ReloadWithNewTftpServersReachesPhonesWithoutRestartingKea) {
  start_daemon();
  wait_kea_serving();
  const pid_t kea = kea_pid();
  write_site("[10.10.100.3, 10.10.100.1]");
  auto reply = control(ctl_socket(), {{"cmd", "reload"}});
  ASSERT_TRUE(reply.is_object() && reply.value("ok", false)) << reply.dump();
  ASSERT_TRUE(eventually([&] { return daemon_log().find("kea-dhcp4 reloaded its configuration") != std::string::npos; },
                         std::chrono::seconds(10)))
      << daemon_log();
  auto dora = phone_dora("00:aa:bb:40:00:01");
  ASSERT_TRUE(dora["ack"].is_object());
  EXPECT_EQ(dora["ack"]["options"].value("150", ""), "0a0a64030a0a6401");
  EXPECT_EQ(dora["ack"]["options"].value("66", ""), hex_of("10.10.100.3"));
  EXPECT_EQ(kea_pid(), kea) << "Kea was restarted instead of reloaded";
}

}  // namespace
}  // namespace ve::test
