// The voice VLAN proof, run inside a VM whose kernel has 8021q and bridge VLAN filtering (see
// run_net_vlan_proof.sh). Uses ve_net's own Manager to program the box, then checks real frames:
//   box ns:   vport0 in ve-br0 (PVID 10 untagged, 100 tagged), ve-br0.100 = 10.10.100.1/24,
//             ve-br0.10 = 10.10.10.1/24 -- all programmed by net::Manager
//   phone ns: vphone0 (untagged, 10.10.10.50/24) and vphone0.100 (tagged, 10.10.100.50/24)
// Asserts: a frame tagged 100 reaches ve-br0.100 (and not ve-br0.10); an untagged frame lands in
// VLAN 10 (ve-br0.10, not ve-br0.100); a frame tagged 200 (not allowed on the port) reaches
// neither; UDP to each router address is answered; a second reconcile applies nothing.
// Then: a "restart" (a new Manager) applies nothing and never takes vport0 down; a port that
// appears later (vport2) is programmed; a reload (voice 100 -> 101, subnet 10 dropped) changes
// VLANs in place, removes only our own ve-br0.10 and leaves foreign links alone; subinterface
// mode on an uplink (vup0) carries VLAN 100 tagged to vup0.100.
// Prints one line "VE-QEMU-RESULT: PASS ..." or "VE-QEMU-RESULT: FAIL <reason>"; exit 0 / 1.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include "net/net.hpp"
#include "tests/net_testns.hpp"

namespace {

using namespace ve;
namespace nt = ve::net::testing;

constexpr std::uint16_t kTestEthertype = 0x88b5;  // IEEE local experimental
const std::string kVoice = "VE-VOICE-100";
const std::string kData = "VE-DATA-UNTAGGED";
const std::string kForeign = "VE-FOREIGN-200";

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

[[noreturn]] void fail(const std::string& why) {
  std::cout << "VE-QEMU-RESULT: FAIL " << why << std::endl;
  std::exit(1);
}

int packet_socket(const std::string& ifname) {
  int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd < 0) fail("packet socket: " + std::string(std::strerror(errno)));
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (sll.sll_ifindex == 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
    fail("bind packet socket to " + ifname + ": " + std::strerror(errno));
  return fd;
}

std::vector<unsigned char> frame(int vid, const std::string& payload) {
  std::vector<unsigned char> f(12, 0xff);  // broadcast destination, then source
  const unsigned char src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x42};
  std::memcpy(f.data() + 6, src, 6);
  if (vid != 0) {
    f.insert(f.end(), {0x81, 0x00, static_cast<unsigned char>(vid >> 8), static_cast<unsigned char>(vid & 0xff)});
  }
  f.insert(f.end(), {kTestEthertype >> 8, kTestEthertype & 0xff});
  f.insert(f.end(), payload.begin(), payload.end());
  while (f.size() < 60) f.push_back(0);
  return f;
}

// Which markers arrived on `fd` within `ms`.
std::set<std::string> drain(int fd, int ms) {
  std::set<std::string> seen;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  unsigned char buf[2048];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) continue;
    std::string data(reinterpret_cast<char*>(buf), static_cast<std::size_t>(n));
    for (const auto& m : {kVoice, kData, kForeign})
      if (data.find(m) != std::string::npos) seen.insert(m);
  }
  return seen;
}

std::string list(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ",") + x;
  return out.empty() ? "nothing" : out;
}

int udp_socket(const std::string& ip, std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    fail("bind udp " + ip + ": " + std::strerror(errno));
  return fd;
}

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) > 0;
}

// The phone sends a datagram to the router address; the box answers; the phone gets the answer.
void udp_round_trip(nt::NetnsPair& ns, const std::string& phone_ip, const std::string& router_ip) {
  Fd box(udp_socket(router_ip, 7000));
  Fd phone(ns.in_peer([&] { return udp_socket(phone_ip, 7001); }));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(7000);
  inet_pton(AF_INET, router_ip.c_str(), &to.sin_addr);
  const char ping[] = "ping";
  // The first datagram may wait for ARP; retry a few times.
  for (int i = 0; i < 50 && !wait_readable(box.fd, 0); ++i) {
    (void)::sendto(phone.fd, ping, 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    wait_readable(box.fd, 100);
  }
  char buf[64];
  sockaddr_in from{};
  socklen_t fl = sizeof from;
  ssize_t n = ::recvfrom(box.fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
  if (n != 4) fail(fmt::format("no datagram from {} reached router {}", phone_ip, router_ip));
  char from_ip[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &from.sin_addr, from_ip, sizeof from_ip);
  if (phone_ip != from_ip) fail(fmt::format("datagram to {} came from {}, not {}", router_ip, from_ip, phone_ip));
  (void)::sendto(box.fd, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), fl);
  if (!wait_readable(phone.fd, 5000)) fail(fmt::format("no answer from router {} to {}", router_ip, phone_ip));
}

config::Subnet subnet(int vlan, const std::string& net24) {
  config::Subnet s;
  s.vlan = vlan;
  s.interface = "vport0";
  s.prefix = {*config::Ipv4::parse(net24 + ".0"), 24};
  s.router = *config::Ipv4::parse(net24 + ".1");
  return s;
}

std::shared_ptr<config::SiteConfig> make_site(std::vector<config::Port> ports, std::vector<config::Subnet> subnets) {
  auto site = std::make_shared<config::SiteConfig>();
  site->net.mode = config::NetMode::Bridge;
  site->ports = std::move(ports);
  site->dhcp.subnets = std::move(subnets);
  return site;
}

// A copy: callers often pass a temporary status.
nlohmann::json port_json(const nlohmann::json& status, const std::string& name) {
  for (const auto& p : status["ports"])
    if (p["name"] == name) return p;
  return nlohmann::json::object({{"name", name}, {"state", "missing"}, {"programmed", ""}});
}

// Sends one frame (tagged `vid`, 0 = untagged) from the phone side and reports whether it showed
// up on the box's `ifname`.
bool frame_reaches(nt::NetnsPair& ns, const std::string& phone_if, int vid, const std::string& box_if) {
  Fd on_box(packet_socket(box_if));
  Fd sender(ns.in_peer([&] { return packet_socket(phone_if); }));
  auto fr = frame(vid, kVoice);
  for (int i = 0; i < 3; ++i) (void)::send(sender.fd, fr.data(), fr.size(), 0);
  return drain(on_box.fd, 300).count(kVoice) != 0;
}

}  // namespace

int main() {
  utsname u{};
  ::uname(&u);
  std::cout << "net_vlan_proof: kernel " << u.release << std::endl;
  if (geteuid() != 0) fail("needs root");

  auto pair = nt::NetnsPair::create();
  if (!pair) fail("namespaces: " + pair.error());
  nt::NetnsPair& ns = **pair;

  // The phone side: a veth into the box, untagged address plus a tagged VLAN interface.
  if (auto r = nt::add_veth("vport0", "vphone0", ns.peer_fd()); !r) fail(r.error());
  auto phone_setup = ns.in_peer([]() -> Result<void, std::string> {
    for (auto step : {nt::set_link_up("vphone0", true), nt::add_vlan("vphone0.100", "vphone0", 100),
                      nt::set_link_up("vphone0.100", true), nt::add_address("vphone0", "10.10.10.50/24"),
                      nt::add_address("vphone0.100", "10.10.100.50/24")})
      if (!step) return step;
    return {};
  });
  if (!phone_setup) fail("phone side: " + phone_setup.error());

  // The box: exactly what voiceedged would do for this site file.
  auto site =
      make_site({{"vport0", 100, 10, {}}, {"vport2", 100, 10, {}}}, {subnet(100, "10.10.100"), subnet(10, "10.10.10")});
  boost::asio::io_context io;
  net::Manager manager(io, site, nullptr);
  if (auto r = manager.start(); !r) fail("manager start: " + r.error().to_string());
  const auto& f = manager.features();
  if (!f.bridge_vlan_filtering || !f.vlan_8021q)
    fail(fmt::format("kernel lacks VLAN support in the VM (filtering={}, 8021q={})", f.bridge_vlan_filtering,
                     f.vlan_8021q));
  auto status = manager.status_json();
  std::cout << "show.interfaces: " << status.dump() << std::endl;
  auto port = port_json(status, "vport0");
  if (port_json(status, "vport2")["state"] != "absent") fail("vport2 should be absent at start");
  if (port["state"] != "ok")
    fail("port state " + port["state"].get<std::string>() + ": " + port["error"].get<std::string>());
  if (port["programmed"] != "ve-br0: 10 pvid untagged, 100 tagged")
    fail("port programmed as '" + port["programmed"].get<std::string>() + "'");
  for (const auto& vi : status["vlan_interfaces"])
    if (vi["state"] != "ok" || !vi["up"].get<bool>()) fail("vlan interface " + vi.dump());
  if (manager.service_interface(site->dhcp.subnets[0]) != "ve-br0.100")
    fail("service interface for VLAN 100 is " + manager.service_interface(site->dhcp.subnets[0]));
  auto again = manager.reconcile();
  if (!again.empty())
    fail(fmt::format("second reconcile applied {} actions: {}", again.size(), net::describe(again[0])));

  // Give the bridge port time to reach forwarding (no STP: immediate) and links to settle.
  for (int i = 0; i < 50; ++i) io.run_for(std::chrono::milliseconds(20));

  Fd on_voice(packet_socket("ve-br0.100"));
  Fd on_data(packet_socket("ve-br0.10"));
  Fd sender(ns.in_peer([] { return packet_socket("vphone0"); }));
  for (int round = 0; round < 3; ++round)
    for (const auto& [vid, payload] : {std::pair{100, kVoice}, std::pair{0, kData}, std::pair{200, kForeign}}) {
      auto fr = frame(vid, payload);
      if (::send(sender.fd, fr.data(), fr.size(), 0) != static_cast<ssize_t>(fr.size()))
        fail("send test frame: " + std::string(std::strerror(errno)));
    }
  auto voice_seen = drain(on_voice.fd, 500);
  auto data_seen = drain(on_data.fd, 100);
  std::cout << "frames on ve-br0.100: " << list(voice_seen) << "; on ve-br0.10: " << list(data_seen) << std::endl;
  if (voice_seen.count(kVoice) == 0) fail("tagged voice frame (VLAN 100) did not reach ve-br0.100");
  if (voice_seen.count(kData) != 0) fail("untagged frame leaked into VLAN 100");
  if (data_seen.count(kData) == 0) fail("untagged frame did not land in data VLAN 10 (ve-br0.10)");
  if (data_seen.count(kVoice) != 0) fail("voice frame leaked into data VLAN 10");
  if (voice_seen.count(kForeign) != 0 || data_seen.count(kForeign) != 0)
    fail("frame tagged with VLAN 200 (not on the port) was forwarded");

  udp_round_trip(ns, "10.10.100.50", "10.10.100.1");
  udp_round_trip(ns, "10.10.10.50", "10.10.10.1");
  manager.stop();
  std::cout << "phase 1 ok: frames and routers" << std::endl;

  // Phase 2: a daemon restart onto a right kernel changes nothing and never takes vport0 down.
  int downs = 0;
  net::Manager restarted(io, site, [&](const std::string& p, bool up) {
    if (p == "vport0" && !up) ++downs;
  });
  if (auto r = restarted.start(); !r) fail("restart: " + r.error().to_string());
  for (int i = 0; i < 20; ++i) io.run_for(std::chrono::milliseconds(10));
  if (restarted.actions_applied() != 0) fail(fmt::format("restart applied {} actions", restarted.actions_applied()));
  std::cout << "phase 2 ok: restart applied 0 actions" << std::endl;

  // Phase 3: a configured port that appears later is programmed (link monitor -> reconcile).
  if (auto r = nt::add_veth("vport2", "vphone2", ns.peer_fd()); !r) fail(r.error());
  if (auto r = ns.in_peer([] { return nt::set_link_up("vphone2", true); }); !r) fail(r.error());
  auto late_ok = [&] {
    auto p = port_json(restarted.status_json(), "vport2");
    return p["state"] == "ok" && p["programmed"] == "ve-br0: 10 pvid untagged, 100 tagged";
  };
  for (int i = 0; i < 1000 && !late_ok(); ++i) io.run_for(std::chrono::milliseconds(10));
  if (!late_ok()) fail("late port vport2 not programmed: " + port_json(restarted.status_json(), "vport2").dump());
  if (!frame_reaches(ns, "vphone2", 100, "ve-br0.100"))
    fail("tagged frame from late port vport2 missing on ve-br0.100");
  std::cout << "phase 3 ok: late port vport2 programmed and forwarding" << std::endl;

  // Phase 4: reload. Foreign links first: a bridge and a VLAN interface on ve-br0 not made by us.
  unsigned vport0_index = if_nametoindex("vport0");
  if (auto r = nt::add_vlan("ve-br0.300", "ve-br0", 300); !r) fail(r.error());
  auto reloaded = make_site({{"vport0", 101, 10, {}}, {"vport2", 100, 10, {}}},
                            {subnet(100, "10.10.100"), subnet(101, "10.10.101")});
  restarted.reconfigure(reloaded);
  for (int i = 0; i < 20; ++i) io.run_for(std::chrono::milliseconds(10));
  auto after = restarted.status_json();
  if (port_json(after, "vport0")["programmed"] != "ve-br0: 10 pvid untagged, 101 tagged")
    fail("after reload vport0 is " + port_json(after, "vport0")["programmed"].get<std::string>());
  if (if_nametoindex("ve-br0.10") != 0) fail("our ve-br0.10 should be gone after its subnet was dropped");
  if (if_nametoindex("ve-br0.101") == 0) fail("ve-br0.101 not created on reload");
  if (if_nametoindex("ve-br0.300") == 0) fail("foreign ve-br0.300 was deleted");
  if (if_nametoindex("vport0") != vport0_index) fail("vport0 was re-created");
  if (downs != 0) fail(fmt::format("vport0 went down {} times during restart/reload", downs));
  if (!frame_reaches(ns, "vphone0", 101, "ve-br0.101")) fail("VLAN 101 frame missing on ve-br0.101 after reload");
  if (frame_reaches(ns, "vphone0", 100, "ve-br0.100")) fail("VLAN 100 still accepted on vport0 after reload");
  std::cout << "phase 4 ok: reload in place, foreign ve-br0.300 kept" << std::endl;
  restarted.stop();

  // Phase 5: subinterface mode on an uplink: vup0.100 carries the voice subnet, tagged.
  if (auto r = nt::add_veth("vup0", "vupp0", ns.peer_fd()); !r) fail(r.error());
  if (auto r = ns.in_peer([] { return nt::set_link_up("vupp0", true); }); !r) fail(r.error());
  auto sub = make_site({}, {subnet(100, "10.10.100")});
  sub->net.mode = config::NetMode::Subinterface;
  sub->net.uplink = "vup0";
  net::Manager subif(io, sub, nullptr);
  if (auto r = subif.start(); !r) fail("subinterface start: " + r.error().to_string());
  auto st = subif.status_json();
  if (st["vlan_interfaces"].size() != 1 || st["vlan_interfaces"][0]["name"] != "vup0.100" ||
      st["vlan_interfaces"][0]["state"] != "ok")
    fail("subinterface mode: " + st.dump());
  // The bridge mode's links are ours and nothing wants them now: our VLAN interfaces go, but the
  // bridge stays while the foreign ve-br0.300 sits on it (deleting it would take that along).
  if (if_nametoindex("ve-br0.100") != 0 || if_nametoindex("ve-br0.101") != 0)
    fail("our bridge VLAN interfaces should be removed in subinterface mode");
  if (if_nametoindex("ve-br0") == 0 || if_nametoindex("ve-br0.300") == 0)
    fail("ve-br0 was deleted although the foreign ve-br0.300 sits on it");
  {
    auto prog = net::Programmer::open();
    net::Action del;
    del.kind = net::ActionKind::DeleteLink;
    del.name = "ve-br0.300";  // the operator removes their interface...
    if (!prog || !(*prog)->apply(del)) fail("could not delete ve-br0.300");
  }
  subif.reconcile();  // ...and the next reconcile removes our bridge
  if (if_nametoindex("ve-br0") != 0) fail("our ve-br0 should be removed once nothing foreign depends on it");
  for (int i = 0; i < 20; ++i) io.run_for(std::chrono::milliseconds(10));
  if (!frame_reaches(ns, "vupp0", 100, "vup0.100")) fail("tagged frame missing on vup0.100");
  if (frame_reaches(ns, "vupp0", 0, "vup0.100")) fail("untagged frame on vup0.100");
  if (subif.reconcile().size() != 0) fail("subinterface mode not idempotent");
  subif.stop();
  std::cout << "phase 5 ok: subinterface mode" << std::endl;

  std::cout << "VE-QEMU-RESULT: PASS voice-vlan-100-tagged->ve-br0.100 untagged->vlan-10 vlan-200-dropped "
               "udp-to-both-routers idempotent restart-0-actions late-port reload-in-place foreign-kept subinterface"
            << std::endl;
  return 0;
}
