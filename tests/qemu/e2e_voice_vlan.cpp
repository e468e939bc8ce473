// The whole boot on a tagged voice VLAN, run inside a VM whose kernel has 8021q and bridge VLAN
// filtering (see run_e2e_voice_vlan.sh). Real programs only: voiceedged (managing kea-dhcp4 with
// our hook), voiceedgectl, voiceedge-phonesim --tag-voice-vlan, busybox udhcpc as the PC.
//
//   box ns                                          phone ns (the phone's 3-port switch)
//   voiceedged + kea-dhcp4                           voiceedge-phonesim -i vphone0 --tag-voice-vlan
//   ve-br0 (or vport0.100 in subinterface mode)        vphone0.100 (made by the simulator)
//     vport0 ===================== veth ============= vphone0 --+-- phsw (bridge) -- vpcport
//     (data 10 untagged, voice 100 tagged)                                               |
//                                                    pc0 (udhcpc: the PC, untagged) ---- veth
//
// For each mode (bridge, subinterface): phone 1 learns VLAN 100 over CDP, then leases, downloads
// (HTTP 6970) and registers over VLAN 100; the PC gets a data VLAN lease without option 150;
// `show journey` names VLAN 100 (step 3) and the voice subnet (step 4); a capture on the box's
// port shows every frame of the phone after CDP tagged 100 and the PC's untagged. Then a daemon
// restart with the phone registered: nothing in the kernel is re-created (same ifindexes, no
// carrier change, 0 actions applied), lease and registration stay, the phone's next refresh is
// answered. Last, phone 2 boots over TFTP on VLAN 100 after the restart.
// Prints one line "VE-QEMU-RESULT: PASS ..." or "VE-QEMU-RESULT: FAIL <reason>"; exit 0 / 1.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "tests/net_testns.hpp"
#include "tests/support/daemon.hpp"
#include "tests/support/process.hpp"

namespace {

namespace nt = ve::net::testing;
namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kPhone1 = "00:1e:7a:00:00:01";
constexpr const char* kPhone2 = "00:1e:7a:00:00:02";
constexpr const char* kPc = "02:00:00:00:0c:01";
constexpr const char* kLoad = "sip78xx.14-2-1-0001-14";

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& why) { throw Failure(why); }

void say(const std::string& line) { std::cout << line << std::endl; }

void check(const ve::Result<void, std::string>& r, const std::string& what) {
  if (!r) fail(what + ": " + r.error());
}

// A shell command in the calling thread's namespace (busybox applets are on PATH in the VM).
std::string sh(const std::string& command) {
  auto r = ve::test::sh(command);
  if (r.exit_code != 0) fail(fmt::format("`{}` exited {}: {}{}", command, r.exit_code, r.out, r.err));
  return r.out;
}

// ------------------------------------------------------------------------------------ capture

struct Frame {
  std::string src, dst;
  bool outgoing = false;  // sent by the box (towards the phone side)
  int vlan = 0;           // 0: untagged
  std::uint16_t ethertype = 0;
  int proto = 0;  // IPv4 protocol
  std::uint16_t sport = 0, dport = 0;
  std::string chaddr;  // DHCP (UDP 67/68): the client's MAC in the BOOTP header
};

std::string mac_text(const unsigned char* p) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", p[0], p[1], p[2], p[3], p[4], p[5]);
}

// Every frame on one interface, both directions, with the 802.1Q tag the kernel keeps aside
// (PACKET_AUXDATA) or finds in the data.
class Capture {
 public:
  explicit Capture(const std::string& ifname) {
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    int one = 1;
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (fd_ < 0 || sll.sll_ifindex == 0 || ::setsockopt(fd_, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
      fail("capture on " + ifname + ": " + std::strerror(errno));
    thread_ = std::thread([this] { loop(); });
  }
  ~Capture() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  std::vector<Frame> frames() {
    std::lock_guard lock(mu_);
    return frames_;
  }
  void clear() {
    std::lock_guard lock(mu_);
    frames_.clear();
  }

 private:
  void loop() {
    unsigned char buf[2048];
    alignas(tpacket_auxdata) unsigned char control[CMSG_SPACE(sizeof(tpacket_auxdata))];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      sockaddr_ll from{};
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof from;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
      if (n < 14) continue;
      Frame f;
      f.dst = mac_text(buf);
      f.src = mac_text(buf + 6);
      f.outgoing = from.sll_pkttype == PACKET_OUTGOING;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
        tpacket_auxdata aux{};
        std::memcpy(&aux, CMSG_DATA(c), sizeof aux);
        if ((aux.tp_status & TP_STATUS_VLAN_VALID) != 0) f.vlan = aux.tp_vlan_tci & 0x0fff;
      }
      std::size_t off = 12;
      f.ethertype = static_cast<std::uint16_t>(buf[off] << 8 | buf[off + 1]);
      if (f.ethertype == ETH_P_8021Q && n >= 18) {  // a tag the kernel left in the data
        f.vlan = (buf[off + 2] << 8 | buf[off + 3]) & 0x0fff;
        off += 4;
        f.ethertype = static_cast<std::uint16_t>(buf[off] << 8 | buf[off + 1]);
      }
      off += 2;
      if (f.ethertype == ETH_P_IP && n >= static_cast<ssize_t>(off + 24)) {
        const std::size_t ihl = (buf[off] & 0x0f) * 4u;
        f.proto = buf[off + 9];
        if ((f.proto == IPPROTO_UDP || f.proto == IPPROTO_TCP) && n >= static_cast<ssize_t>(off + ihl + 4)) {
          f.sport = static_cast<std::uint16_t>(buf[off + ihl] << 8 | buf[off + ihl + 1]);
          f.dport = static_cast<std::uint16_t>(buf[off + ihl + 2] << 8 | buf[off + ihl + 3]);
          // UDP header (8) + BOOTP op..giaddr (28), then chaddr.
          const std::size_t ch = off + ihl + 8 + 28;
          if (f.proto == IPPROTO_UDP && (f.sport == 67 || f.sport == 68) && n >= static_cast<ssize_t>(ch + 6))
            f.chaddr = mac_text(buf + ch);
        }
      }
      std::lock_guard lock(mu_);
      frames_.push_back(std::move(f));
    }
  }

  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Frame> frames_;
  std::thread thread_;
};

bool is_cdp_or_lldp(const Frame& f) { return f.dst == "01:00:0c:cc:cc:cc" || f.ethertype == 0x88cc; }

std::string kind(const Frame& f) {
  if (f.ethertype == ETH_P_ARP) return "arp";
  if (f.ethertype == ETH_P_IPV6) return "ipv6";
  if (f.ethertype != ETH_P_IP) return fmt::format("ethertype-{:04x}", f.ethertype);
  const std::uint16_t port = f.outgoing ? f.sport : f.dport;
  if (f.proto == IPPROTO_UDP && (port == 67 || port == 68)) return "dhcp";
  if (f.proto == IPPROTO_UDP && port == 69) return "tftp";
  if (f.proto == IPPROTO_UDP) return "udp";  // TFTP data/acks run between ephemeral ports
  if (f.proto == IPPROTO_TCP && port == 6970) return "http";
  if (f.proto == IPPROTO_TCP && port == 5060) return "sip";
  return fmt::format("ip-{}", f.proto);
}

// Frames the phone side sent (from `macs`, CDP/LLDP left out): {kind -> count} for VLAN `vid`,
// and the list of any that were not tagged `vid`.
struct TagReport {
  std::map<std::string, int> tagged;
  std::vector<std::string> wrong;
};
TagReport tags_from(const std::vector<Frame>& frames, const std::vector<std::string>& macs, int vid) {
  TagReport r;
  for (const auto& f : frames) {
    if (f.outgoing || is_cdp_or_lldp(f) || std::find(macs.begin(), macs.end(), f.src) == macs.end()) continue;
    if (f.vlan == vid)
      ++r.tagged[kind(f)];
    else if (r.wrong.size() < 5)
      r.wrong.push_back(fmt::format("{} from {} vlan {}", kind(f), f.src, f.vlan));
  }
  return r;
}

std::string counts(const std::map<std::string, int>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += fmt::format("{}{}={}", out.empty() ? "" : ",", k, v);
  return out.empty() ? "none" : out;
}

// --------------------------------------------------------------------------------- the branch

// Both modes serve the untagged data subnet and a PC. In subinterface mode Kea's raw socket on
// the uplink also sees the phone's tagged DHCP (the kernel strips the tag before packet sockets on
// the parent get it); the hook's VLAN guard keeps Kea from answering it there, untagged, from the
// data subnet (kea-hooks/vlan_guard.hpp), which the capture check in run_mode would catch.
std::string site_yaml(const std::string& mode, const fs::path& tftp, const std::string& hook) {
  const std::string net = mode == "bridge" ? "{ mode: bridge }" : "{ mode: subinterface, uplink: vport0 }";
  return fmt::format(
      R"(# tests/qemu/e2e_voice_vlan.cpp: one switch port with a phone and a PC behind it
site: {{ name: qemu-vlan, timezone: Europe/Berlin, locale: English_United_States }}
state_dir: @STATE@
control: {{ socket: @SOCKET@ }}
ports:
  - {{ name: vport0, voice_vlan: 100, data_vlan: 10, poe: {{ mode: auto, priority: high, max_watts: 15.4 }} }}
cdp: {{ enabled: true, interval_s: 60, holdtime_s: 180, fast_start_count: 5 }}
lldp: {{ enabled: true, med: true }}
poe:
  driver: sim
  budget_watts: 370
  sim:
    vport0: {{ class: 2, draw_watts: 6.3 }}
dhcp:
  kea:
    manage: true
    binary: /usr/sbin/kea-dhcp4
    hook_library: {hook}
    event_socket: @STATE@/kea-events.sock
  subnets:
    - vlan: 100
      interface: vport0
      prefix: 10.10.100.0/24
      pool: 10.10.100.100-10.10.100.250
      router: 10.10.100.1
      dns: [10.10.100.1]
      tftp_servers: [10.10.100.1]
{data}provisioning:
  root: {tftp}
  tftp: {{ listen: "0.0.0.0:69" }}
  http: {{ listen: "0.0.0.0:6970" }}
  secure: false
  call_manager_group:
    - {{ name: cm1, host: 10.10.100.1, sip_port: 5060, priority: 0 }}
  default_load: {load}
  auto_register: false
sip:
  listen: ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
  realm: qemu-vlan
net: {net}
phones:
  - mac: "{p1}"
    model: CP-7841
    description: Desk 1
    port: vport0
    lines:
      - {{ button: 1, extension: "1001", display: "Desk 1", password: "pw-1001" }}
  - mac: "{p2}"
    model: CP-7841
    description: Desk 2
    port: vport0
    lines:
      - {{ button: 1, extension: "1002", display: "Desk 2", password: "pw-1002" }}
)",
      fmt::arg("hook", hook), fmt::arg("tftp", tftp.string()), fmt::arg("load", kLoad), fmt::arg("net", net),
      fmt::arg("data",
               "    - vlan: 10\n      interface: vport0\n      prefix: 10.10.10.0/24\n"
               "      pool: 10.10.10.100-10.10.10.250\n      router: 10.10.10.1\n"),
      fmt::arg("p1", kPhone1), fmt::arg("p2", kPhone2));
}

void provisioning_tree(const fs::path& root) {
  fs::create_directories(root / "English_United_States");
  fs::create_directories(root / "United_States");
  const std::pair<const char*, std::string> files[] = {
      {"dialplan.xml", "<DIALTEMPLATE><TEMPLATE MATCH=\"1...\" Timeout=\"0\" User=\"Phone\"/></DIALTEMPLATE>\n"},
      {"English_United_States/sp-sip.jar", std::string(2048, 'j')},
      {"United_States/g3-tones.xml", "<tones/>\n"},
      {"softkeys.xml", "<softKeyCfg><versionStamp>1</versionStamp></softKeyCfg>\n"},
      {"Ringlist-wb.xml", "<CiscoIPPhoneRingList></CiscoIPPhoneRingList>\n"},
      {"DistinctiveRingList.xml", "<CiscoIPPhoneRingList></CiscoIPPhoneRingList>\n"},
      {"sip78xx.14-2-1-0001-14.loads", "sip78xx.14-2-1-0001-14.loads\n"},
  };
  for (const auto& [name, content] : files) {
    std::ofstream(root / name, std::ios::binary) << content;
  }
}

std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t i = 0; i <= lines && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

// A string member, or "" when it is missing, null or not a string.
std::string str(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// The phone's boot result in a simulator's --json output, or null while it still boots.
json phone_result(const fs::path& log, const std::string& mac) {
  for (auto& j : json_lines(ve::test::read_file(log)))
    if (str(j, "mac") == mac && j.contains("steps")) return j;
  return nullptr;
}

// Waits for the phone's boot result (the simulator prints it when the boot ends); null if the
// simulator exits or the boot outlasts its own --timeout-s.
json wait_result(ve::test::Child& sim, const fs::path& log, const std::string& mac) {
  json result;
  ve::test::eventually(
      [&] {
        result = phone_result(log, mac);
        return !result.is_null() || !sim.running();
      },
      170s);
  return result;
}

json refresh_line(const fs::path& log, const std::string& mac) {
  for (auto& j : json_lines(ve::test::read_file(log)))
    if (j.contains("refresh") && str(j["refresh"], "mac") == mac) return j["refresh"];
  return nullptr;
}

// A step's number, whether the JSON has it as a number or as text.
int step_number(const json& s) {
  const auto& v = s.contains("step") ? s["step"] : json();
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_string()) return std::atoi(v.get<std::string>().c_str());
  return 0;
}

// The details of every record of `step` (phonesim result or journey), joined.
std::string step_detail(const json& steps, int step) {
  std::string out;
  if (!steps.is_array()) return out;
  for (const auto& s : steps)
    if (step_number(s) == step && s.contains("detail") && s["detail"].is_string())
      out += (out.empty() ? "" : " | ") + s["detail"].get<std::string>();
  return out;
}

struct LinkState {
  std::map<std::string, unsigned> ifindex;
  std::uint32_t carrier_changes = 0;
};

LinkState link_state(const std::vector<std::string>& names, const std::string& port) {
  LinkState s;
  for (const auto& n : names) s.ifindex[n] = if_nametoindex(n.c_str());
  nl_sock* sk = nl_socket_alloc();
  if (sk != nullptr && nl_connect(sk, NETLINK_ROUTE) == 0) {
    rtnl_link* l = nullptr;
    if (rtnl_link_get_kernel(sk, 0, port.c_str(), &l) == 0 && l != nullptr) {
      (void)rtnl_link_get_carrier_changes(l, &s.carrier_changes);
      rtnl_link_put(l);
    }
  }
  if (sk != nullptr) nl_socket_free(sk);
  return s;
}

class Branch {
 public:
  Branch(const std::string& mode, bool tag, const std::string& phonesim, const std::string& hook)
      : mode_(mode), tag_(tag), phonesim_(phonesim), files_("ve-tftp") {
    provisioning_tree(files_.path());
    auto pair = nt::NetnsPair::create();
    if (!pair) fail("namespaces: " + pair.error());
    ns_ = std::move(*pair);
    check(nt::add_veth("vport0", "vphone0", ns_->peer_fd()), "veth vport0");
    check(nt::set_link_up("vport0", true), "vport0 up");
    // Subinterface mode: the uplink's own (untagged, data VLAN) address is the administrator's,
    // voiceedge does not touch it (docs/network.md); Kea needs it to serve the data subnet there.
    if (mode == "subinterface") sh("ip addr add 10.10.10.1/24 dev vport0");
    // The phone side: vphone0 carries the phone's MAC (its CPU port); the PC hangs off the
    // phone's internal switch (a bridge) and sends untagged.
    ns_->in_peer([&] {
      // No IPv6 on the phone side, and the switch device gets a MAC of its own (a bridge takes
      // its lowest port's, the phone's): otherwise its IGMP/IPv6 chatter would go out untagged
      // with the phone's MAC, which a real phone never sends.
      sh("sysctl -w net.ipv6.conf.all.disable_ipv6=1 && sysctl -w net.ipv6.conf.default.disable_ipv6=1");
      check(nt::add_veth("vpcport", "pc0", ns_->peer_fd()), "veth pc0");
      sh(
          fmt::format("ip link set vphone0 address {} && ip link set pc0 address {} && brctl addbr phsw && "
                      "ip link set phsw address 02:00:00:00:5e:01 && "
                      "brctl addif phsw vphone0 && brctl addif phsw vpcport && "
                      "ip link set phsw up && ip link set vphone0 up && ip link set vpcport up && ip link set pc0 up",
                      kPhone1, kPc));
      return 0;
    });
    daemon_ = std::make_unique<ve::test::Daemon>(site_yaml(mode, files_.path(), hook));
  }

  ve::test::Daemon& daemon() { return *daemon_; }
  nt::NetnsPair& ns() { return *ns_; }

  void start_daemon() {
    if (!daemon_->start(60s)) fail("voiceedged did not start:\n" + tail(daemon_->log(), 30));
  }

  ve::test::Child start_phone(const std::string& mac, const fs::path& log, std::vector<std::string> extra) {
    std::vector<std::string> argv = {phonesim_, "--interface",   "vphone0", "--phones",    "1",  "--first-mac", mac,
                                     "--json",  "--expect-vlan", "100",     "--timeout-s", "150"};
    if (tag_) argv.push_back("--tag-voice-vlan");
    argv.insert(argv.end(), extra.begin(), extra.end());
    return ns_->in_peer([&] { return ve::test::Child(argv, log); });
  }

  // busybox udhcpc as the PC: one lease, asking for option 150 too; the script records what came.
  ve::test::Child start_pc(const fs::path& out) {
    const fs::path script = files_.path().parent_path() / "pc-lease.sh";
    // Written aside and renamed: the test reads the file as soon as it exists.
    std::ofstream(script) << "#!/bin/sh\n[ \"$1\" = bound ] && env > " << out.string() << ".part && mv " << out.string()
                          << ".part " << out.string() << "\nexit 0\n";
    fs::permissions(script, fs::perms::owner_all);
    return ns_->in_peer([&] {
      return ve::test::Child(
          {"udhcpc", "-i", "pc0", "-f", "-q", "-n", "-t", "20", "-T", "3", "-O", "150", "-s", script.string()},
          files_.path().parent_path() / "pc-udhcpc.log");
    });
  }

  json ctl_json(const std::vector<std::string>& words) { return daemon_->ctl_json(words); }
  std::string ctl_text(const std::vector<std::string>& words) { return daemon_->ctl(words).out; }
  const fs::path& dir() const { return daemon_->dir().path(); }

 private:
  std::string mode_;
  bool tag_ = true;
  std::string phonesim_;
  ve::test::TempDir files_;
  std::unique_ptr<nt::NetnsPair> ns_;
  std::unique_ptr<ve::test::Daemon> daemon_;
};

std::string env_value(const std::string& env, const std::string& key) {
  std::istringstream in(env);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return {};
}

// ------------------------------------------------------------------------------------ one mode

// `mode` is bridge or subinterface; "bridge:untagged" runs the phone without --tag-voice-vlan, a
// self-check that must FAIL (its DHCP lands in the data VLAN, its frames are untagged).
std::string run_mode(const std::string& mode_arg, const std::string& phonesim, const std::string& hook) {
  const bool tag = mode_arg.find(":untagged") == std::string::npos;
  const std::string mode = mode_arg.substr(0, mode_arg.find(':'));
  if (mode != "bridge" && mode != "subinterface") fail("unknown mode " + mode_arg);
  const auto began = std::chrono::steady_clock::now();
  auto secs = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count() /
           1000.0;
  };
  say(fmt::format("== {} mode{}", mode, tag ? "" : ", phone NOT tagging (must fail)"));
  Branch b(mode, tag, phonesim, hook);
  Capture cap("vport0");
  b.start_daemon();
  const std::string voice_if = mode == "bridge" ? "ve-br0.100" : "vport0.100";
  const std::string data_if = mode == "bridge" ? "ve-br0.10" : "vport0";
  if (!ve::test::eventually(
          [&] {
            auto st = b.ctl_json({"show", "interfaces"});
            return st.is_object() && st.dump().find("\"state\":\"ok\"") != std::string::npos &&
                   if_nametoindex(voice_if.c_str()) != 0;
          },
          30s))
    fail(fmt::format("{} mode: vport0 not programmed / {} missing: {}", mode, voice_if,
                     b.ctl_json({"show", "interfaces"}).dump()));
  const auto interfaces = b.ctl_json({"show", "interfaces"});
  say(fmt::format("[{:.1f}s] show interfaces: {}", secs(), interfaces.dump()));

  // Kea is started by the daemon (the phone's DHCP retransmits cover a slow start, too).
  if (!ve::test::eventually(
          [&] {
            return b.ctl_json({"show", "dhcp", "leases"})["status"].dump().find("running") != std::string::npos;
          },
          30s))
    say("note: Kea not reported running yet: " + b.ctl_json({"show", "dhcp", "leases"})["status"].dump());

  const fs::path phone_log = b.dir() / "phone1.log";
  const fs::path pc_env = b.dir() / "pc.env";
  auto phone = b.start_phone(kPhone1, phone_log, {"--hold-s", "600", "--refresh-s", "6", "--transport", "http"});
  auto pc = b.start_pc(pc_env);

  const json result = wait_result(phone, phone_log, kPhone1);
  if (result.is_null())
    fail(fmt::format("{} mode: phone 1 gave no result: {}\n{}", mode, tail(ve::test::read_file(phone_log), 20),
                     tail(b.daemon().log(), 30)));
  say(fmt::format("[{:.1f}s] phone 1: registered={} ip={} vlan={} step3: {} | step4: {}", secs(),
                  result.value("registered", false), str(result, "ip"), result["voice_vlan"].dump(),
                  step_detail(result["steps"], 3), step_detail(result["steps"], 4)));
  if (!result.value("registered", false))
    fail(fmt::format("{} mode: phone 1 not registered: {}\n{}", mode, str(result, "failure"),
                     tail(b.daemon().log(), 40)));
  const std::string ip1 = str(result, "ip");
  if (ip1.rfind("10.10.100.", 0) != 0) fail(mode + " mode: phone 1 leased " + ip1 + ", not in the voice subnet");
  if (step_detail(result["steps"], 3).find("tagging from now on (over vphone0.100)") == std::string::npos)
    fail(mode + " mode: phone 1 did not tag: " + step_detail(result["steps"], 3));
  if (step_detail(result["steps"], 4).find("option 150 [10.10.100.1]") == std::string::npos)
    fail(mode + " mode: phone 1's lease lacks option 150: " + step_detail(result["steps"], 4));

  // The PC: a data VLAN lease, no option 150 although it asked.
  if (!ve::test::eventually([&] { return fs::exists(pc_env) || !pc.running(); }, 60s) || !fs::exists(pc_env))
    fail(mode + " mode: the PC got no lease: " + ve::test::read_file(b.dir() / "pc-udhcpc.log"));
  const std::string pc_lease = ve::test::read_file(pc_env);
  const std::string pc_ip = env_value(pc_lease, "ip");
  say(fmt::format("[{:.1f}s] PC: ip={} router={} opt150='{}' tftp='{}'", secs(), pc_ip, env_value(pc_lease, "router"),
                  env_value(pc_lease, "opt150"), env_value(pc_lease, "tftp")));
  if (pc_ip.rfind("10.10.10.", 0) != 0) fail(mode + " mode: PC leased '" + pc_ip + "', not in the data subnet");
  if (!env_value(pc_lease, "opt150").empty() || !env_value(pc_lease, "tftp").empty())
    fail(mode + " mode: the PC was given TFTP servers (option 150/66)");

  // The box's view of the journey.
  const auto journey = b.ctl_json({"show", "journey", "SEP001E7A000001"});
  say(b.ctl_text({"show", "journey", "SEP001E7A000001"}));
  const std::string j3 = step_detail(journey["steps"], 3);
  const std::string j4 = step_detail(journey["steps"], 4);
  if (j3.find("100") == std::string::npos) fail(mode + " mode: journey step 3 does not name VLAN 100: " + j3);
  if (j4.find("10.10.100.") == std::string::npos)
    fail(mode + " mode: journey step 4 is not in the voice subnet: " + j4);

  // The wire: everything the phone sent after CDP is tagged 100; the PC's frames are untagged.
  auto frames = cap.frames();
  auto phone_tags = tags_from(frames, {kPhone1}, 100);
  auto pc_tags = tags_from(frames, {kPc}, 0);
  // What the box sent: to the phone's MAC, or a DHCP answer for it (broadcast), only on VLAN 100;
  // DHCP answers for the PC only untagged.
  int to_phone_untagged = 0, pc_answers_tagged = 0;
  for (const auto& f : frames) {
    if (!f.outgoing) continue;
    if ((f.dst == kPhone1 || f.chaddr == kPhone1) && f.vlan != 100) ++to_phone_untagged;
    if (f.chaddr == kPc && f.vlan != 0) ++pc_answers_tagged;
  }
  say(fmt::format("[{:.1f}s] capture on vport0: {} frames; phone tagged 100: {}; PC untagged: {}", secs(),
                  frames.size(), counts(phone_tags.tagged), counts(pc_tags.tagged)));
  if (!phone_tags.wrong.empty())
    fail(mode +
         " mode: phone frames not tagged 100 on vport0: " + fmt::format("{}", fmt::join(phone_tags.wrong, "; ")));
  for (const char* k : {"dhcp", "http", "sip"})
    if (phone_tags.tagged[k] == 0) fail(fmt::format("{} mode: no {} frame from the phone tagged 100", mode, k));
  if (!pc_tags.wrong.empty())
    fail(mode + " mode: PC frames tagged on vport0: " + fmt::format("{}", fmt::join(pc_tags.wrong, "; ")));
  if (pc_tags.tagged["dhcp"] == 0) fail(mode + " mode: no untagged DHCP from the PC seen");
  if (pc_answers_tagged != 0)
    fail(fmt::format("{} mode: {} DHCP answers for the PC left vport0 tagged", mode, pc_answers_tagged));
  if (to_phone_untagged != 0)
    fail(fmt::format("{} mode: {} frames to the phone (or DHCP answers for it) left vport0 not tagged 100", mode,
                     to_phone_untagged));

  // ----- restart with the phone registered
  const std::vector<std::string> links = mode == "bridge"
                                             ? std::vector<std::string>{"vport0", "ve-br0", "ve-br0.100", "ve-br0.10"}
                                             : std::vector<std::string>{"vport0", "vport0.100"};
  const auto before = link_state(links, "vport0");
  const auto programmed_before = interfaces["ports"].dump();
  b.daemon().stop(SIGTERM);
  b.start_daemon();
  const auto restarted_at = secs();
  auto after_if = b.ctl_json({"show", "interfaces"});
  for (int i = 0; i < 50 && after_if.value("reconciles", 0) == 0; ++i) {
    std::this_thread::sleep_for(100ms);
    after_if = b.ctl_json({"show", "interfaces"});
  }
  const auto after = link_state(links, "vport0");
  say(fmt::format("[{:.1f}s] restarted: actions_applied={} carrier_changes {} -> {}", secs(),
                  after_if.value("actions_applied", -1), before.carrier_changes, after.carrier_changes));
  if (after_if.value("actions_applied", -1) != 0)
    fail(fmt::format("{} mode: the restarted daemon applied {} actions: {}", mode,
                     after_if.value("actions_applied", -1), after_if.dump()));
  if (after_if["ports"].dump() != programmed_before)
    fail(mode + " mode: ports changed across the restart: " + after_if["ports"].dump());
  for (const auto& [name, idx] : before.ifindex)
    if (idx == 0 || after.ifindex.at(name) != idx)
      fail(fmt::format("{} mode: {} re-created or missing across the restart ({} -> {})", mode, name, idx,
                       after.ifindex.at(name)));
  if (after.carrier_changes != before.carrier_changes)
    fail(mode + " mode: vport0's carrier changed across the restart");
  // The restarted daemon reads its state back (and Kea's lease file): give it a moment, but less
  // than phone 1's refresh interval, so what is listed was not just renewed.
  std::string leases, regs;
  ve::test::eventually(
      [&] {
        leases = b.ctl_json({"show", "dhcp", "leases"}).dump();
        regs = b.ctl_json({"show", "sip", "registrations"}).dump();
        return leases.find(ip1) != std::string::npos && regs.find("1001") != std::string::npos;
      },
      5s);
  say(fmt::format("[{:.1f}s] after the restart: lease {} {}, registration 1001 {}", secs(), ip1,
                  leases.find(ip1) != std::string::npos ? "listed" : "MISSING",
                  regs.find("1001") != std::string::npos ? "listed" : "MISSING"));
  if (leases.find(ip1) == std::string::npos) fail(mode + " mode: lease " + ip1 + " gone after the restart: " + leases);
  if (leases.find(pc_ip) == std::string::npos) say("note: the PC's lease is not listed by the daemon: " + leases);
  if (regs.find("1001") == std::string::npos)
    fail(mode + " mode: registration of 1001 gone after the restart: " + regs);

  // Phone 2 boots over TFTP on VLAN 100 after the restart; meanwhile phone 1 refreshes.
  const fs::path phone2_log = b.dir() / "phone2.log";
  auto phone2 = b.start_phone(kPhone2, phone2_log, {"--transport", "tftp"});
  const json result2 = wait_result(phone2, phone2_log, kPhone2);
  if (result2.is_null() || !result2.value("registered", false))
    fail(fmt::format("{} mode: phone 2 (TFTP) did not register: {}\n{}", mode,
                     result2.is_null() ? tail(ve::test::read_file(phone2_log), 20) : str(result2, "failure"),
                     tail(b.daemon().log(), 30)));
  say(fmt::format("[{:.1f}s] phone 2: ip={} step7: {}", secs(), str(result2, "ip"), step_detail(result2["steps"], 7)));
  if (step_detail(result2["steps"], 7).find("tftp") == std::string::npos)
    fail(mode + " mode: phone 2's config did not come over TFTP: " + step_detail(result2["steps"], 7));
  // Let phone 1 refresh at least once against the restarted daemon, then end its hold.
  const double wait_until = restarted_at + 8;
  while (secs() < wait_until) std::this_thread::sleep_for(200ms);
  phone.stop(SIGINT, 20s);
  const auto refresh = refresh_line(phone_log, kPhone1);
  say(fmt::format("[{:.1f}s] phone 1 after the restart: {}", secs(), refresh.dump()));
  if (refresh.is_null() || !refresh.value("registered_at_end", false) || refresh.value("ok", 0) == 0)
    fail(mode + " mode: phone 1 not registered at the end: " + tail(ve::test::read_file(phone_log), 5));
  auto frames2 = cap.frames();
  auto tags2 = tags_from(frames2, {kPhone1, kPhone2}, 100);
  say(fmt::format("[{:.1f}s] capture after the restart: phones tagged 100: {}", secs(), counts(tags2.tagged)));
  if (!tags2.wrong.empty())
    fail(mode + " mode: phone frames not tagged 100: " + fmt::format("{}", fmt::join(tags2.wrong, "; ")));
  if (tags2.tagged["tftp"] == 0) fail(mode + " mode: no TFTP request from phone 2 tagged 100");
  return fmt::format("{}:phone-{}-tagged-100,pc-{}-untagged,restart-0-actions", mode, ip1, pc_ip);
}

}  // namespace

int main(int argc, char** argv) {
  utsname u{};
  ::uname(&u);
  say(std::string("e2e_voice_vlan: kernel ") + u.release);
  if (argc < 3) {
    say("VE-QEMU-RESULT: FAIL usage: e2e_voice_vlan PHONESIM HOOK [bridge|subinterface...]");
    return 1;
  }
  std::vector<std::string> modes;
  for (int i = 3; i < argc; ++i) modes.emplace_back(argv[i]);
  if (modes.empty()) modes = {"bridge", "subinterface"};
  std::string summary;
  try {
    if (geteuid() != 0) fail("needs root");
    for (const auto& m : modes) summary += (summary.empty() ? "" : " ") + run_mode(m, argv[1], argv[2]);
  } catch (const std::exception& e) {
    say(std::string("VE-QEMU-RESULT: FAIL ") + e.what());
    return 1;
  }
  say("VE-QEMU-RESULT: PASS " + summary);
  return 0;
}
