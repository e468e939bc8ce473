// CDP and LLDP-MED with real peers: the real voiceedged advertises on one end of a veth pair in
// its own network namespace; in the peer namespace tshark decodes what it sends, lldpd (an LLDP-MED
// endpoint) learns the network policy, and a scapy-built Cisco phone asks for its voice VLAN and
// power. The daemon is queried with the real voiceedgectl. Needs root (ip netns); run as label netns.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/netns.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// The switch (voiceedged) and the phone (tshark, lldpd, scapy, ladvd), joined by a veth.
struct Topology {
  Namespace switch_ns{"vecdp-sw-"}, phone_ns{"vecdp-ph-"};
  std::string switch_if = unique_name("vcs"), phone_if = unique_name("vcp");
  VethPair veth{{&switch_ns, switch_if}, {&phone_ns, phone_if}};
};

// `phones`: the lines of the phones: list, if any.
std::string site_yaml(const std::string& port, int voice_vlan, int fast_start = 2, const std::string& phones = "") {
  SiteFile site;
  site.name = "vecdp-switch";
  if (!port.empty()) {
    site.ports = "\n  - { name: " + port + ", voice_vlan: " + std::to_string(voice_vlan) +
                 ", data_vlan: 10, poe: { mode: auto, priority: high, max_watts: 15.4 } }\n";
  }
  site.sections =
      "cdp: { enabled: true, interval_s: 240, holdtime_s: 255, fast_start_count: " + std::to_string(fast_start) +
      " }\n"
      "lldp: { enabled: true, med: true, voice_priority: 5, voice_dscp: 46 }\n"
      "poe:\n  driver: sim\n  budget_watts: 370\n" +
      (port.empty() ? "" : "  sim: { " + port + ": { class: 4, draw_watts: 6.3 } }\n");
  site.phones = phones;
  return site.yaml();
}

// One decoded CDP frame as tshark prints it (-T fields, tab separated).
struct SeenCdp {
  std::string source, device_id, voice_vlan, checksum_status, request_id, management_id, power_available, ttl;
};

constexpr const char* kTsharkFields[] = {
    "eth.src",        "cdp.deviceid",      "cdp.voice_vlan",      "cdp.checksum.status",
    "cdp.request_id", "cdp.management_id", "cdp.power_available", "cdp.ttl"};

std::vector<SeenCdp> parse_tshark(const std::string& text) {
  std::vector<SeenCdp> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::size_t start = 0;
    for (;;) {
      auto tab = line.find('\t', start);
      cols.push_back(line.substr(start, tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    if (cols.size() != std::size(kTsharkFields)) continue;  // "Capturing on ..." and other chatter
    out.push_back(SeenCdp{cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]});
  }
  return out;
}

class CdpNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root for network namespaces";
    topo = std::make_unique<Topology>();
    ASSERT_TRUE(topo->veth.ok()) << topo->veth.error();
  }

  // tshark in the phone namespace, decoding every CDP frame it sees, one line each (-l flushes).
  void start_tshark() {
    std::vector<std::string> argv{"tshark", "-i", topo->phone_if, "-n", "-l", "-Y", "cdp", "-T", "fields"};
    for (const char* f : kTsharkFields) {
      argv.push_back("-e");
      argv.push_back(f);
    }
    tshark_log = scratch / "tshark.log";
    tshark = Child(topo->phone_ns.exec(argv), tshark_log);
    // "Capturing on" comes before dumpcap really captures; "Capture started" after. A fast start
    // of one frame sent in between was missed (seen once in 10 runs).
    ASSERT_TRUE(eventually([&] { return read_file(tshark_log).find("Capture started") != std::string::npos; }, 30s))
        << read_file(tshark_log);
  }
  std::vector<SeenCdp> seen() const { return parse_tshark(read_file(tshark_log)); }

  // Re-creates the veth pair with the same names; the switch end comes up only once tshark
  // listens, so the daemon's fast start (retried while the link is down) must reach it.
  void start_tshark_after_recreate() {
    auto r = topo->phone_ns.ip({"link", "add", topo->phone_if, "type", "veth", "peer", "name", topo->switch_if, "netns",
                                topo->switch_ns.name()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(topo->phone_ns.ip({"link", "set", topo->phone_if, "up"}).exit_code, 0);
    start_tshark();
    std::this_thread::sleep_for(4s);  // longer than the daemon's reopen delay: it opens the down link
    ASSERT_EQ(topo->switch_ns.ip({"link", "set", topo->switch_if, "up"}).exit_code, 0);
  }

  void start_daemon(const std::string& yaml) {
    daemon = std::make_unique<Daemon>(yaml, topo->switch_ns.exec());
    ASSERT_TRUE(daemon->start()) << daemon->log();
  }

  RunResult phone(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{"/usr/bin/python3", (source_dir() / "tests" / "cdp_phone.py").string(), "--iface",
                                  topo->phone_if};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(topo->phone_ns.exec(argv));
  }

  // lldpd in the phone namespace as a class III (phone) LLDP-MED endpoint on the phone's end.
  Child start_lldpd() {
    // lldpcli gives up root before it connects: the socket's directory must be reachable.
    std::filesystem::permissions(scratch.path(), std::filesystem::perms(0755));
    Child lldpd(topo->phone_ns.exec({"lldpd", "-d", "-M", "3", "-I", topo->phone_if, "-u", lldpd_sock().string()}),
                scratch / "lldpd.log");
    EXPECT_TRUE(eventually([&] { return std::filesystem::exists(lldpd_sock()); }, 20s))
        << read_file(scratch / "lldpd.log");
    return lldpd;
  }
  std::filesystem::path lldpd_sock() const { return scratch / "lldpd.sock"; }
  json lldpcli_json(std::vector<std::string> words) const {
    std::vector<std::string> argv{"lldpcli", "-u", lldpd_sock().string(), "-f", "json"};
    argv.insert(argv.end(), words.begin(), words.end());
    return json::parse(run(topo->phone_ns.exec(argv)).out, nullptr, false);
  }
  // What lldpd learnt from us (its neighbour on the phone's end): the lldp-med object, once it has
  // one for which `done` holds.
  json lldpd_med(const std::function<bool(const json&)>& done) const {
    json med;
    eventually(
        [&] {
          auto j = lldpcli_json({"show", "neighbors", "details"});
          if (j.is_discarded()) return false;
          auto iface = j["lldp"]["interface"][topo->phone_if];
          if (!iface.is_object() || !iface.contains("lldp-med")) return false;
          med = iface["lldp-med"];
          return done(med);
        },
        30s);
    return med;
  }
  // lldpd prints one policy object, or an array of them; keyed by application type.
  static std::map<std::string, json> policies_by_app(const json& policy) {
    std::map<std::string, json> by_app;
    for (const auto& one : policy.is_array() ? policy : json::array({policy})) by_app[one.value("apptype", "")] = one;
    return by_app;
  }

  // The neighbours as a value: `for (x : neighbors()["neighbors"])` would iterate a member of a
  // temporary destroyed before the loop runs (C++20 extends only the last temporary's life).
  json neighbor_list() const {
    json data = neighbors();
    return data.is_object() && data["neighbors"].is_array() ? data["neighbors"] : json::array();
  }

  json neighbors(bool detail = false) const {
    std::vector<std::string> words{"show", "cdp", "neighbors"};
    if (detail) words.push_back("--detail");
    return daemon->ctl_json(words);
  }

  std::unique_ptr<Topology> topo;
  TempDir scratch{"ve-cdp"};
  std::filesystem::path tshark_log;
  Child tshark;
  std::unique_ptr<Daemon> daemon;
};

TEST_F(CdpNetns, TsharkDecodesOurVoipVlanReplyAndDeviceId) {
  start_tshark();
  start_daemon(site_yaml(topo->switch_if, 123));
  ASSERT_TRUE(eventually([&] { return seen().size() >= 2; }, 20s)) << read_file(tshark_log) << daemon->log();
  const auto frames = seen();
  for (const auto& f : frames) {
    EXPECT_EQ(f.device_id, "vecdp-switch");
    EXPECT_EQ(f.voice_vlan, "123");     // Appliance VLAN TLV 0x0e, as Wireshark reads it
    EXPECT_EQ(f.checksum_status, "1");  // Wireshark: checksum Good
    EXPECT_EQ(f.ttl, "255");
    EXPECT_EQ(f.request_id, "0");  // no phone has asked yet
  }
  // Fast start: fast_start_count frames, then nothing until interval_s (240 s here).
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(seen().size(), 2u);
  auto detail = neighbors(true);
  ASSERT_TRUE(detail.is_object()) << daemon->log();
  ASSERT_EQ(detail["ports"].size(), 1u);
  EXPECT_EQ(detail["ports"][0]["counters"]["cdp_sent"], 2);
  EXPECT_EQ(detail["ports"][0]["capturing"], true);
}

TEST_F(CdpNetns, ScapyPhoneGetsImmediateReplyWithVlanAndPowerAndIsListed) {
  start_tshark();
  start_daemon(site_yaml(topo->switch_if, 123, 1));
  ASSERT_TRUE(eventually([&] { return seen().size() >= 1; }, 20s)) << read_file(tshark_log);

  auto r = phone({"phone", "--mac", "00:11:22:aa:bb:cc", "--request-id", "16962"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The only advertisement after the fast start is the reply: it echoes the request id.
  SeenCdp reply;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& f : seen()) {
          if (f.device_id == "vecdp-switch" && f.request_id == "16962") {
            reply = f;
            return true;
          }
        }
        return false;
      },
      10s))
      << read_file(tshark_log) << daemon->log();
  EXPECT_EQ(reply.voice_vlan, "123");
  EXPECT_EQ(reply.checksum_status, "1");
  // Power Available: granted mW, then the management level (no preference).
  EXPECT_EQ(reply.power_available.substr(0, reply.power_available.find(',')), "10250");
  EXPECT_NE(reply.management_id, "0");

  auto data = neighbors();
  ASSERT_TRUE(data.is_object()) << daemon->log();
  ASSERT_EQ(data["neighbors"].size(), 1u) << data.dump(2);
  const auto& n = data["neighbors"][0];
  EXPECT_EQ(n["device_id"], "SEP001122AABBCC");
  EXPECT_EQ(n["mac"], "00:11:22:aa:bb:cc");
  EXPECT_EQ(n["protocol"], "cdp");
  EXPECT_EQ(n["platform"], "Cisco IP Phone 7970");
  EXPECT_EQ(n["port_id"], "Port 1");
  EXPECT_EQ(n["local_port"], topo->switch_if);
  EXPECT_EQ(n["capabilities"], "H P M");
  EXPECT_EQ(n["asked_voice_vlan"], true);
  EXPECT_EQ(n["power_requested_mw"], 10250);
  EXPECT_EQ(n["power_granted_mw"], 10250);

  auto text = daemon->ctl({"show", "cdp", "neighbors"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("SEP001122AABBCC"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Device ID"), std::string::npos) << text.out;

  // The journey tracker recorded step 3 for this phone.
  auto journey = daemon->ctl_json({"show", "journey", "SEP001122AABBCC"});
  ASSERT_TRUE(journey.is_object()) << daemon->log();
  bool voice_vlan_ok = false;
  for (const auto& s : journey["steps"]) {
    if (s.value("name", "") == "voice-vlan" && s.value("outcome", "") == "ok") voice_vlan_ok = true;
  }
  EXPECT_TRUE(voice_vlan_ok) << journey.dump(2);

  // TTL 0 from the phone removes it at once.
  r = phone({"bye", "--mac", "00:11:22:aa:bb:cc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(eventually([&] { return neighbors()["neighbors"].empty(); }, 10s)) << neighbors().dump(2);
}

TEST_F(CdpNetns, LldpdAsMedEndpointLearnsNetworkPolicyAndPower) {
  // An IPv4 address next to the IPv6 link-local one: lldpd advertises the first of each as its
  // management addresses (seen with lldpd 1.0.16), so both decoders are exercised.
  ASSERT_EQ(topo->phone_ns.ip({"addr", "add", "192.0.2.77/24", "dev", topo->phone_if}).exit_code, 0);
  start_daemon(site_yaml(topo->switch_if, 123));
  Child lldpd = start_lldpd();
  // Asking for 12 W.
  auto cfg = run(topo->phone_ns.exec({"lldpcli", "-u", lldpd_sock().string(), "configure", "med", "power", "pd",
                                      "source", "pse", "priority", "high", "value", "12000"}));
  ASSERT_EQ(cfg.exit_code, 0) << cfg.out << cfg.err;

  const json med =
      lldpd_med([](const json& m) { return m["poe"].is_object() && m["poe"].value("power", "") == "12000"; });
  const json policy = med["policy"], poe = med["poe"];
  ASSERT_TRUE(poe.is_object() && poe.value("power", "") == "12000")
      << "med=" << med.dump() << "\n"
      << read_file(scratch / "lldpd.log") << daemon->log();
  // Voice and voice signalling (application types 1 and 2), tagged on VLAN 123: the port's voice
  // VLAN differs from its data VLAN.
  auto by_app = policies_by_app(policy);
  ASSERT_TRUE(by_app.count("Voice")) << policy.dump(2);
  ASSERT_TRUE(by_app.count("Voice Signaling")) << policy.dump(2);
  for (const char* app : {"Voice", "Voice Signaling"}) {
    SCOPED_TRACE(app);
    // lldpd has no "tagged" member: it prints the "vlan" object only when the policy's tagged bit
    // is set (lldpcli's display of LLDP-MED policies), and "defined" is the inverse of the unknown
    // bit. So a "vlan" with our VID is the tagged bit as the phone reads it.
    EXPECT_EQ(by_app[app].value("defined", false), true) << by_app[app].dump();
    ASSERT_TRUE(by_app[app].contains("vlan")) << "tagged bit not set: " << by_app[app].dump();
    EXPECT_EQ(by_app[app]["vlan"].value("vid", ""), "123");
  }
  EXPECT_EQ(by_app["Voice"].value("pcp", ""), "5");
  EXPECT_EQ(by_app["Voice"].value("dscp", ""), "46");
  EXPECT_EQ(by_app["Voice Signaling"].value("pcp", ""), "3");
  EXPECT_EQ(by_app["Voice Signaling"].value("dscp", ""), "24");
  EXPECT_EQ(poe.value("device-type", ""), "PSE");

  // And voiceedged lists lldpd as an LLDP neighbour with its power request.
  json n;
  ASSERT_TRUE(eventually(
      [&] {
        auto data = neighbors();
        for (const auto& x : data["neighbors"]) {
          if (x.value("protocol", "") == "lldp" && x.contains("power_requested_mw") &&
              x["power_requested_mw"] == 12000) {
            n = x;
            return true;
          }
        }
        return false;
      },
      20s))
      << neighbors().dump(2);
  EXPECT_EQ(n["power_granted_mw"], 12000);

  // Issue 13: lldpd's management addresses (its first IPv4 and first IPv6, here the link-local
  // one) are decoded as lldpd itself lists them, not shown as escaped bytes, and its system
  // capabilities are those lldpd reports. lldpd picks up an address that appears after it started
  // (the link-local one leaves DAD) and advertises again, so both views are read until they agree.
  json chassis;
  std::set<std::string> lldpd_addresses, ours_addresses;
  const bool addresses_agree = eventually(
      [&] {
        chassis = lldpcli_json({"show", "chassis"});
        if (!chassis.is_object()) return false;
        lldpd_addresses.clear();
        for (const auto& [name, c] : chassis["local-chassis"]["chassis"].items()) {
          const json ips = c["mgmt-ip"].is_array() ? c["mgmt-ip"] : json::array({c["mgmt-ip"]});
          for (const auto& ip : ips)
            if (ip.is_string()) lldpd_addresses.insert(ip.get<std::string>());
        }
        ours_addresses.clear();
        for (const auto& x : neighbor_list()) {
          if (x.value("protocol", "") != "lldp") continue;
          n = x;
          for (const auto& a : x["addresses"]) ours_addresses.insert(a.get<std::string>());
        }
        return lldpd_addresses.size() == 2 && ours_addresses == lldpd_addresses;
      },
      40s);
  EXPECT_TRUE(addresses_agree) << "lldpd says " << chassis.dump() << "\nwe decoded " << n.dump(2);
  EXPECT_TRUE(lldpd_addresses.contains("192.0.2.77")) << chassis.dump();
  EXPECT_TRUE(std::any_of(ours_addresses.begin(), ours_addresses.end(), [](const std::string& a) {
    return a.rfind("fe80::", 0) == 0;
  })) << n.dump(2);
  for (const auto& text : ours_addresses) EXPECT_EQ(text.find("\\x"), std::string::npos) << text;
  ASSERT_TRUE(chassis.is_object()) << "lldpcli show chassis";
  std::set<std::string> lldpd_enabled;
  for (const auto& [name, c] : chassis["local-chassis"]["chassis"].items()) {
    const json caps = c["capability"].is_array() ? c["capability"] : json::array({c["capability"]});
    for (const auto& cap : caps) {
      if (cap.value("enabled", false)) lldpd_enabled.insert(cap.value("type", ""));
    }
  }
  std::set<std::string> ours;
  for (const auto& name : n["capability_names"]) {
    auto first = name.get<std::string>();
    first = first.substr(0, first.find(' '));
    if (first == "WLAN") first = "Wlan";
    if (first == "DOCSIS") first = "Docsis";
    if (first == "Telephone") first = "Tel";  // lldpcli's own short name
    ours.insert(first);
  }
  EXPECT_EQ(ours, lldpd_enabled) << n.dump(2) << chassis.dump(2);
  EXPECT_FALSE(n["system_capabilities"].empty()) << n.dump(2);
  auto text = daemon->ctl({"show", "cdp", "neighbors", "--detail"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.find("\\x"), std::string::npos) << text.out;
}

// Issue 12: a flood of fake phones fills the table; the site file's phone arriving afterwards is
// listed, negotiates power and gets its timeline, and a second flood cannot push it out.
TEST_F(CdpNetns, FloodDoesNotKeepALatePhoneOutOfTheTable) {
  const std::string phones = "  - { mac: \"00:11:22:aa:bb:cc\", model: \"7970\", port: " + topo->switch_if + " }\n";
  start_tshark();
  start_daemon(site_yaml(topo->switch_if, 123, 1, phones));
  ASSERT_EQ(phone({"flood", "--count", "300"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return neighbors(true)["ports"][0]["counters"]["cdp_received"] == 300; }, 20s))
      << neighbors(true).dump(2);
  EXPECT_EQ(neighbors()["neighbors"].size(), 32u);
  EXPECT_EQ(neighbors(true)["ports"][0]["counters"]["power_refused"], 300) << "none of them is the site's phone";

  ASSERT_EQ(phone({"phone", "--mac", "00:11:22:aa:bb:cc", "--request-id", "777"}).exit_code, 0);
  auto listed = [&] {
    for (const auto& n : neighbor_list()) {
      if (n.value("device_id", "") == "SEP001122AABBCC") return n;
    }
    return json();
  };
  // Listed at its first frame: the frame is in the table once the sender has returned.
  ASSERT_TRUE(eventually([&] { return listed().is_object(); }, 3s)) << neighbors().dump(2);
  EXPECT_EQ(listed()["verified"], true);
  EXPECT_EQ(listed()["power_granted_mw"], 10250);
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& f : seen()) {
          if (f.device_id == "vecdp-switch" && f.request_id == "777") return true;
        }
        return false;
      },
      10s))
      << read_file(tshark_log);
  auto journey = daemon->ctl_json({"show", "journey", "SEP001122AABBCC"});
  bool voice_vlan_ok = false;
  for (const auto& step : journey["steps"]) {
    if (step.value("name", "") == "voice-vlan" && step.value("outcome", "") == "ok") voice_vlan_ok = true;
  }
  EXPECT_TRUE(voice_vlan_ok) << journey.dump(2);

  ASSERT_EQ(phone({"flood", "--count", "300"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return neighbors(true)["ports"][0]["counters"]["cdp_received"] == 601; }, 20s));
  EXPECT_TRUE(listed().is_object()) << "the verified phone is never evicted";
}

// Issue 13 with a second third-party LLDP/CDP speaker: ladvd (Debian's ladvd) in the peer namespace
// sends LLDP and CDP as a host; voiceedged lists both with decoded addresses and capabilities.
TEST_F(CdpNetns, LadvdIsListedWithDecodedAddressesAndCapabilities) {
  if (run({"sh", "-c", "command -v ladvd"}).exit_code != 0) GTEST_SKIP() << "ladvd is not installed (scripts/deps)";
  start_daemon(site_yaml(topo->switch_if, 123));
  std::filesystem::create_directories("/run/ladvd");  // its control socket's directory
  // ladvd's privilege-separated child sets RLIMIT_FSIZE to 0, so writing its messages to a
  // regular file kills it (SIGXFSZ, "child exited on signal 25"): it writes into a pipe, and cat
  // writes the log. `exec` keeps the Child's pid ladvd's own, so stopping it stops ladvd. `-t`:
  // ladvd counts a veth as a tun/tap interface and sends nothing on one without it.
  Child ladvd(topo->phone_ns.exec({"bash", "-c", "exec ladvd -f -t -L -C " + topo->phone_if + " > >(exec cat) 2>&1"}),
              scratch / "ladvd.log");
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(ladvd.running()) << "ladvd exited at start: " << read_file(scratch / "ladvd.log");
  json lldp_n, cdp_n;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& x : neighbor_list()) {
          if (x.value("protocol", "") == "lldp") lldp_n = x;
          if (x.value("protocol", "") == "cdp") cdp_n = x;
        }
        return lldp_n.is_object() && cdp_n.is_object();
      },
      30s))
      << neighbors().dump(2) << read_file(scratch / "ladvd.log");
  // ladvd on a host advertises "Router" as a capability it has, none enabled (what tshark decodes
  // from its frame): both lists are as sent, with names.
  const auto system = lldp_n["system_capabilities"].dump();
  EXPECT_NE(system.find("Router"), std::string::npos) << lldp_n.dump(2);
  EXPECT_TRUE(lldp_n["capability_names"].empty()) << lldp_n.dump(2);
  for (const auto* n : {&lldp_n, &cdp_n}) {
    for (const auto& a : (*n)["addresses"]) {
      EXPECT_EQ(a.get<std::string>().find("\\x"), std::string::npos) << n->dump(2);
    }
  }
  EXPECT_EQ(lldp_n["verified"], false) << "a host is not the port's phone";
}

// One frame whose names are not UTF-8 (any host can send it) once made every JSON writer throw:
// the timeline store stayed inside a broken transaction for good, and `show cdp neighbors` and
// `show phones` failed for everyone. The names are listed with '?' in place of the bad bytes.
TEST_F(CdpNetns, NeighbourNamesThatAreNotUtf8BreakNothing) {
  start_daemon(site_yaml(topo->switch_if, 123, 1));
  const std::string script =
      "from scapy.all import Dot3, LLC, SNAP, sendp\n"
      "from scapy.contrib.cdp import CDPMsgCapabilities, CDPMsgDeviceID, CDPMsgPlatform, CDPv2_HDR\n"
      "sendp(Dot3(dst='01:00:0c:cc:cc:cc', src='02:00:00:00:00:99') / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / "
      "SNAP(OUI=0x0C, code=0x2000) / CDPv2_HDR(vers=2, ttl=180, msg=[CDPMsgDeviceID(val=b'host\\xff\\xfe99'), "
      "CDPMsgCapabilities(cap=0x10), CDPMsgPlatform(val=b'Cisco \\xc3(')]), iface='" +
      topo->phone_if + "', verbose=False)\n";
  auto r = run(topo->phone_ns.exec({"/usr/bin/python3", "-c", script}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json n;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& x : neighbor_list())
          if (x.value("source_mac", "") == "02:00:00:00:00:99") n = x;
        return n.is_object();
      },
      10s))
      << daemon->ctl({"show", "cdp", "neighbors"}).err << daemon->log();
  EXPECT_EQ(n["device_id"], "host??99");
  EXPECT_EQ(n["platform"], "Cisco ?(");
  EXPECT_EQ(daemon->ctl({"show", "phones"}).exit_code, 0);
  // The timeline store keeps writing: a flush or two later, no failed write was logged.
  std::this_thread::sleep_for(1500ms);
  const auto log = daemon->log();
  EXPECT_EQ(log.find("unhandled exception"), std::string::npos) << log;
  EXPECT_EQ(log.find("cannot write timelines"), std::string::npos) << log;
  EXPECT_TRUE(daemon->child().running());
}

TEST_F(CdpNetns, FloodIsCountedAndCappedAndTheDaemonKeepsAnswering) {
  start_daemon(site_yaml(topo->switch_if, 123, 1));
  auto r = phone({"flood", "--count", "300", "--bad", "50"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json port;
  ASSERT_TRUE(eventually(
      [&] {
        auto d = neighbors(true);
        if (!d.is_object() || d["ports"].empty()) return false;
        port = d["ports"][0];
        return port["counters"]["cdp_received"] == 300 && port["counters"]["malformed"] == 50;
      },
      20s))
      << port.dump(2) << daemon->log();
  auto data = neighbors();
  EXPECT_EQ(data["neighbors"].size(), 32u);  // per-port cap
  // The first of them became the port's phone (trust on first use: no phone in the site file);
  // the others keep being replaced, newest in.
  EXPECT_EQ(port["counters"]["neighbors_evicted"], 300 - 32);
  EXPECT_EQ(port["counters"]["neighbors_dropped"], 0);
  EXPECT_EQ(port["counters"]["power_refused"], 299) << "only the port's phone negotiates power";
  // 300 queries and power requests did not become 300 replies (coalesced, at most 5 per second).
  EXPECT_LT(port["counters"]["cdp_sent"].get<int>(), 100);
  EXPECT_GE(port["counters"]["cdp_sent"].get<int>(), 2);
  EXPECT_TRUE(daemon->child().running());
  // The operator's view: per-port counters in `show cdp neighbors --detail`.
  auto text = daemon->ctl({"show", "cdp", "neighbors", "--detail"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("Malformed"), std::string::npos) << text.out;
  const auto row = text.out.find("\n" + topo->switch_if + " ");
  ASSERT_NE(row, std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" 50 ", row), std::string::npos) << text.out;  // the malformed count
}

TEST_F(CdpNetns, InterfaceThatVanishesIsReportedAndPickedUpAgain) {
  start_daemon(site_yaml(topo->switch_if, 123, 1));
  ASSERT_TRUE(eventually([&] { return neighbors(true)["ports"][0]["counters"]["cdp_sent"] == 1; }, 10s));
  auto r = topo->switch_ns.ip({"link", "del", topo->switch_if});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json port;
  ASSERT_TRUE(eventually(
      [&] {
        port = neighbors(true)["ports"][0];
        return port["capturing"] == false && !port["error"].get<std::string>().empty();
      },
      15s))
      << port.dump(2) << daemon->log();
  EXPECT_TRUE(daemon->child().running());

  start_tshark_after_recreate();
  ASSERT_TRUE(eventually([&] { return neighbors(true)["ports"][0]["capturing"] == true; }, 15s))
      << neighbors(true).dump(2) << daemon->log();
  // Fast start again on the new link, seen by the peer.
  EXPECT_TRUE(eventually([&] { return !seen().empty() && seen().back().voice_vlan == "123"; }, 15s))
      << read_file(tshark_log);
}

TEST_F(CdpNetns, ReloadChangesVoiceVlanAndRemovedPortSaysGoodbye) {
  start_tshark();
  start_daemon(site_yaml(topo->switch_if, 123, 1));
  ASSERT_TRUE(eventually([&] { return !seen().empty(); }, 20s)) << read_file(tshark_log);
  const int pid = daemon->child().pid();

  daemon->write_site(site_yaml(topo->switch_if, 124, 1));
  auto r = daemon->ctl({"reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon->log();
  ASSERT_TRUE(eventually(
      [&] {
        auto s = seen();
        return !s.empty() && s.back().voice_vlan == "124";
      },
      10s))
      << read_file(tshark_log);
  EXPECT_EQ(daemon->child().pid(), pid);
  EXPECT_TRUE(daemon->child().running());

  daemon->write_site(site_yaml("", 0));
  r = daemon->ctl({"reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon->log();
  ASSERT_TRUE(eventually(
      [&] {
        auto s = seen();
        return !s.empty() && s.back().ttl == "0";
      },
      10s))
      << read_file(tshark_log);
  EXPECT_TRUE(neighbors()["ports"].empty());
}

}  // namespace
}  // namespace ve::test
