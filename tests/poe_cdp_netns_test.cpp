// CDP + PoE together against the real voiceedged (sim PSE): a scapy-built phone in its own network
// namespace asks for power with CDP Power Requested (0x19); tshark decodes the daemon's Power
// Available (0x1a). The port has max_watts 15.4: 12.9 W is granted as asked, 20 W is capped.
// Also: power inline off/auto from voiceedgectl, and kill -9 + restart adopting the powered port
// without a power cycle. Needs root (ip netns); label netns.
#include <unistd.h>

#include <csignal>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/process.hpp"

namespace ve::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPhoneMac = "00:11:22:33:44:66";
constexpr const char* kPhoneSep = "SEP001122334466";

// Two namespaces joined by a veth pair; removed in the destructor whatever happened.
class Topology {
 public:
  Topology() {
    const std::string id = std::to_string(::getpid());
    switch_ns = "vepoe-sw-" + id;
    phone_ns = "vepoe-ph-" + id;
    switch_if = "vps" + id;
    phone_if = "vpp" + id;
    auto r = sh("ip netns add " + switch_ns + " && ip netns add " + phone_ns + " && ip -n " + switch_ns + " link add " +
                switch_if + " type veth peer name " + phone_if + " netns " + phone_ns + " && ip -n " + switch_ns +
                " link set lo up && ip -n " + switch_ns + " link set " + switch_if + " up && ip -n " + phone_ns +
                " link set " + phone_if + " up");
    ok = r.exit_code == 0;
    error = r.err;
  }
  ~Topology() {
    run({"ip", "netns", "del", switch_ns});
    run({"ip", "netns", "del", phone_ns});
  }
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  std::vector<std::string> in_switch() const { return {"ip", "netns", "exec", switch_ns}; }
  std::vector<std::string> in_phone(std::vector<std::string> argv) const {
    std::vector<std::string> out{"ip", "netns", "exec", phone_ns};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  std::string switch_ns, phone_ns, switch_if, phone_if;
  bool ok = false;
  std::string error;
};

std::string site_yaml(const std::string& port) {
  return "site: { name: vepoe-switch }\n"
         "state_dir: @STATE@\n"
         "control: { socket: @SOCKET@ }\n"
         "ports:\n  - { name: " +
         port +
         ", voice_vlan: 100, data_vlan: 10, poe: { mode: auto, priority: high, max_watts: 15.4 } }\n"
         "cdp: { enabled: true, interval_s: 60, holdtime_s: 180, fast_start_count: 1 }\n"
         "lldp: { enabled: false, med: false }\n"
         "poe:\n  driver: sim\n  budget_watts: 370\n  sim: { " +
         port +
         ": { class: 2, draw_watts: 6.3 } }\n"
         "dhcp: { kea: { manage: false, event_socket: \"@STATE@/kea.sock\" } }\n"
         "provisioning:\n  root: \"@STATE@/tftp\"\n  tftp: { listen: \"127.0.0.1:0\" }\n"
         "  http: { listen: \"127.0.0.1:0\" }\n"
         "sip: { listen: [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"] }\n"
         "net: { mode: none }\n";
}

// The switch's CDP frames as tshark decodes them: request id echoed, Power Available.
struct PowerReply {
  std::string request_id, power_available;
};

std::vector<PowerReply> parse_tshark(const std::string& text) {
  std::vector<PowerReply> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto tab1 = line.find('\t');
    if (tab1 == std::string::npos) continue;
    const auto tab2 = line.find('\t', tab1 + 1);
    if (tab2 == std::string::npos) continue;
    if (line.substr(0, tab1) != "vepoe-switch") continue;  // only the daemon's frames
    out.push_back({line.substr(tab1 + 1, tab2 - tab1 - 1), line.substr(tab2 + 1)});
  }
  return out;
}

// The first value of a tshark field that may repeat ("12900,4294967295").
std::string first_value(const std::string& s) { return s.substr(0, s.find(',')); }

class PoeCdpNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root for network namespaces";
    topo = std::make_unique<Topology>();
    ASSERT_TRUE(topo->ok) << topo->error;
    tshark_log = scratch / "tshark.log";
    tshark = Child(topo->in_phone({"tshark", "-i", topo->phone_if, "-n", "-l", "-Y", "cdp", "-T", "fields", "-e",
                                   "cdp.deviceid", "-e", "cdp.request_id", "-e", "cdp.power_available"}),
                   tshark_log);
    ASSERT_TRUE(eventually([&] { return read_file(tshark_log).find("Capturing on") != std::string::npos; }, 30s))
        << read_file(tshark_log);
    daemon = std::make_unique<Daemon>(site_yaml(topo->switch_if), topo->in_switch());
    ASSERT_TRUE(daemon->start()) << daemon->log();
    ASSERT_TRUE(eventually([&] { return port_view().value("oper", "") == "on"; }, 20s))
        << power().dump(2) << daemon->log();
  }

  json power() const { return daemon->ctl_json({"show", "power", "inline"}); }
  json port_view() const {
    const auto p = power();
    if (!p.is_object() || !p.contains("ports") || p["ports"].empty()) return json::object();
    return p["ports"][0];
  }

  // The phone asks; returns the Power Available (mW, as text) of the reply echoing `request_id`.
  std::string ask(int request_id, const std::string& levels) {
    auto r = run(topo->in_phone({"/usr/bin/python3", (source_dir() / "tests" / "poe_cdp_phone.py").string(), "--iface",
                                 topo->phone_if, "--mac", kPhoneMac, "--request-id", std::to_string(request_id),
                                 "--levels", levels}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string available;
    const bool got = eventually(
        [&] {
          for (const auto& f : parse_tshark(read_file(tshark_log))) {
            if (f.request_id == std::to_string(request_id)) {
              available = first_value(f.power_available);
              return true;
            }
          }
          return false;
        },
        10s);
    EXPECT_TRUE(got) << "no reply to request " << request_id << "\n" << read_file(tshark_log) << daemon->log();
    return available;
  }

  std::unique_ptr<Topology> topo;
  TempDir scratch{"ve-poe-cdp"};
  std::filesystem::path tshark_log;
  Child tshark;
  std::unique_ptr<Daemon> daemon;
};

TEST_F(PoeCdpNetns, PhoneGetsWhatItAsksWithinMaxWattsAndTheCapAbove) {
  EXPECT_EQ(port_view()["allocated_w"], 7.0) << "class 2 allocation before any request";

  EXPECT_EQ(ask(101, "12900"), "12900");
  auto p = port_view();
  EXPECT_EQ(p["allocated_w"], 12.9) << p.dump(2);
  EXPECT_EQ(p["requested_w"], 12.9);
  EXPECT_EQ(p["device"], kPhoneSep) << "CDP told PoE which phone is on the port";

  EXPECT_EQ(ask(102, "20000,12900"), "15400");
  p = port_view();
  EXPECT_EQ(p["allocated_w"], 15.4) << p.dump(2);
  EXPECT_EQ(p["requested_w"], 20.0);

  // The IOS-style table.
  auto text = daemon->ctl({"show", "power", "inline"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("Interface"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(topo->switch_if), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(kPhoneSep), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("15.4"), std::string::npos) << text.out;

  // The phone's timeline has its power step.
  auto journey = daemon->ctl_json({"show", "journey", kPhoneSep});
  ASSERT_TRUE(journey.is_object()) << daemon->log();
  bool power_ok = false;
  for (const auto& s : journey["steps"]) {
    if (s.value("name", "") == "power" && s.value("outcome", "") == "ok") power_ok = true;
  }
  EXPECT_TRUE(power_ok) << journey.dump(2);
}

TEST_F(PoeCdpNetns, PowerInlineOffAndAutoFromTheCommandLine) {
  auto r = daemon->ctl({"power", "inline", topo->switch_if, "off"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(port_view()["oper"], "off");
  EXPECT_EQ(port_view()["admin"], "off");
  EXPECT_EQ(ask(201, "12900"), "0") << "an unpowered port offers nothing";

  r = daemon->ctl({"power", "inline", topo->switch_if, "auto"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(eventually([&] { return port_view().value("oper", "") == "on"; }, 10s)) << power().dump(2);
  EXPECT_EQ(ask(202, "12900"), "12900");

  auto bad = daemon->ctl({"power", "inline", topo->switch_if, "sideways"});
  EXPECT_EQ(bad.exit_code, 1);
  auto unknown = daemon->ctl({"power", "inline", "nosuchport", "off"});
  EXPECT_EQ(unknown.exit_code, 1);
}

TEST_F(PoeCdpNetns, KilledDaemonRestartsWithoutPowerCyclingThePhone) {
  ASSERT_EQ(ask(301, "12900"), "12900");
  daemon->stop(SIGKILL);
  ASSERT_TRUE(daemon->start()) << daemon->log();
  auto p = port_view();
  EXPECT_EQ(p["oper"], "on") << p.dump(2);
  EXPECT_EQ(p["allocated_w"], 12.9) << "the negotiated allocation survives the restart";
  // The simulated PSE's own record: powered once, never switched off.
  const auto hw = json::parse(read_file(daemon->dir().path() / "state" / "poe-sim-hardware.json"), nullptr, false);
  ASSERT_TRUE(hw.is_object());
  EXPECT_EQ(hw["ports"][topo->switch_if]["power_ons"], 1) << hw.dump(2);
  EXPECT_EQ(hw["ports"][topo->switch_if]["power_cycles"], 0) << hw.dump(2);
}

}  // namespace
}  // namespace ve::test
