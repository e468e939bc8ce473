// dhcp::Manager without Kea (manage: false): lease reports arriving on its datagram socket become
// the lease table (show.dhcp.leases, mac_for_ip) and, for phones, step-4 journey events; malformed
// datagrams are counted and dropped.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <boost/asio/io_context.hpp>

#include "config/config.hpp"
#include "dhcp/dhcp.hpp"

namespace ve::dhcp {
namespace {

namespace fs = std::filesystem;

class RecordingSink final : public EventSink {
 public:
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
  std::vector<PhoneEvent> events;
};

class DhcpComponentTest : public ::testing::Test {
 protected:
  virtual std::string kea_settings() const { return "manage: false"; }

  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ve-dhcp-comp-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    events_path_ = (dir_ / "ev.sock").string();
    auto loaded =
        config::load_string("site: { name: t }\nstate_dir: " + dir_.string() +
                            "\n"
                            "ports:\n  - name: eth1\n    voice_vlan: 100\n    data_vlan: 10\n"
                            "dhcp:\n  kea:\n    " +
                            kea_settings() + "\n    event_socket: " + events_path_ +
                            "\n"
                            "  subnets:\n    - vlan: 100\n      interface: eth1\n      prefix: 10.10.100.0/24\n"
                            "      pool: 10.10.100.100-10.10.100.199\n      router: 10.10.100.1\n"
                            "      tftp_servers: [10.10.100.1]\n");
    ASSERT_TRUE(loaded) << loaded.error().front().to_string();
    manager_ = std::make_unique<Manager>(io_, *loaded, sink_);
    manager_->start();
  }
  void TearDown() override {
    if (manager_) manager_->stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void send_raw(const std::string& datagram) {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, events_path_.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(::sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)),
              static_cast<ssize_t>(datagram.size()));
    ::close(fd);
  }
  void send(LeaseEventKind kind, const char* mac, std::uint32_t ip, PhoneReason phone) {
    LeaseReport r;
    r.kind = kind;
    r.mac = *MacAddress::parse(mac);
    r.ip = ip;
    r.subnet = "10.10.100.0/24";
    r.phone = phone;
    r.lifetime_s = kind == LeaseEventKind::Ack ? 3600 : 0;
    send_raw(encode_lease_report(r));
  }
  void pump() {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(100));
  }
  // What show.dhcp.leases answers.
  nlohmann::json show() const { return {{"leases", manager_->leases()}, {"status", manager_->status()}}; }
  std::optional<MacAddress> mac_for_ip(const std::string& ip) { return manager_->mac_for_ip(ip); }

  fs::path dir_;
  std::string events_path_;
  boost::asio::io_context io_;
  RecordingSink sink_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(DhcpComponentTest, PhoneAckBecomesALeaseAndAStep4Event) {
  send(LeaseEventKind::Offer, "00:aa:bb:00:00:01", 0x0a0a6464, PhoneReason::VendorClass);
  send(LeaseEventKind::Ack, "00:aa:bb:00:00:01", 0x0a0a6464, PhoneReason::VendorClass);
  pump();
  ASSERT_EQ(sink_.events.size(), 2u);
  EXPECT_EQ(sink_.events[0].step, Step::Dhcp);
  EXPECT_EQ(sink_.events[0].outcome, Outcome::Info);
  EXPECT_EQ(sink_.events[1].outcome, Outcome::Ok);
  EXPECT_EQ(sink_.events[1].ip, "10.10.100.100");
  EXPECT_EQ(sink_.events[1].mac.to_string(), "00:aa:bb:00:00:01");

  auto data = show();
  ASSERT_EQ(data["leases"].size(), 1u);
  EXPECT_EQ(data["leases"][0]["state"], "bound");
  EXPECT_EQ(data["leases"][0]["device"], "SEP00AABB000001");
  EXPECT_GT(data["leases"][0]["expires_in_s"].get<int>(), 3500);
  EXPECT_EQ(mac_for_ip("10.10.100.100"), MacAddress::parse("00:aa:bb:00:00:01"));
  EXPECT_FALSE(mac_for_ip("10.10.100.101"));
  EXPECT_FALSE(mac_for_ip("not an address"));
}

TEST_F(DhcpComponentTest, LaptopLeasesAreListedButNotJourneyEvents) {
  send(LeaseEventKind::Ack, "00:aa:bb:00:00:02", 0x0a0a6465, PhoneReason::NotPhone);
  pump();
  EXPECT_TRUE(sink_.events.empty());
  EXPECT_EQ(show()["leases"].size(), 1u);
}

TEST_F(DhcpComponentTest, ReleaseAndDeclineChangeTheLeaseAndReportTheOutcome) {
  send(LeaseEventKind::Ack, "00:aa:bb:00:00:03", 0x0a0a6466, PhoneReason::Listed);
  send(LeaseEventKind::Release, "00:aa:bb:00:00:03", 0x0a0a6466, PhoneReason::Listed);
  send(LeaseEventKind::Decline, "00:aa:bb:00:00:04", 0x0a0a6467, PhoneReason::Oui);
  pump();
  ASSERT_EQ(sink_.events.size(), 3u);
  EXPECT_EQ(sink_.events[2].outcome, Outcome::Failed);
  EXPECT_FALSE(mac_for_ip("10.10.100.102"));  // released
  auto leases = show()["leases"];
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_EQ(leases[0]["state"], "released");
  EXPECT_EQ(leases[1]["state"], "declined");
}

TEST_F(DhcpComponentTest, MalformedDatagramsAreCountedAndDropped) {
  send_raw("{not json");
  send_raw(R"({"v":1,"event":"ack","mac":"zz","ip":"10.10.100.100"})");
  send_raw(std::string(5000, 'x'));
  send(LeaseEventKind::Ack, "00:aa:bb:00:00:05", 0x0a0a6468, PhoneReason::VendorClass);
  pump();
  auto data = show();
  EXPECT_EQ(data["status"]["reports_malformed"], 3);
  EXPECT_EQ(data["status"]["reports_received"], 1);
  EXPECT_EQ(data["leases"].size(), 1u);
  EXPECT_EQ(data["status"]["kea"]["managed"], false);
}

class DhcpComponentWithoutHook : public DhcpComponentTest {
 protected:
  std::string kea_settings() const override {
    return "manage: true\n    binary: /bin/true\n    hook_library: /nonexistent/libdhcp_voiceedge.so";
  }
};

TEST_F(DhcpComponentWithoutHook, DoesNotStartKeaThatCouldNotLoadTheHook) {
  pump();
  auto status = show()["status"]["kea"];
  EXPECT_EQ(status["managed"], true);
  EXPECT_FALSE(status.contains("pid")) << status.dump();  // never spawned: no restart loop
  EXPECT_FALSE(fs::exists(dir_ / "kea" / "kea-dhcp4.json"));
}

}  // namespace
}  // namespace ve::dhcp
