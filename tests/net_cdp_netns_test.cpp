// net/ + cdp/ together (needs root; label netns): the link monitor's port-down, as wired in the
// daemon (Manager listener -> cdp::AgentSet::link_changed), expires the CDP neighbour a phone
// announced and records the phone event, within a second of the phone's side going down.
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "cdp/cdp.hpp"
#include "net/net.hpp"
#include "tests/net_testns.hpp"

namespace ve::net {
namespace {

using namespace std::chrono_literals;

struct RecordingSink : EventSink {
  std::vector<PhoneEvent> events;
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
};

// The phone: sends one CDP announcement from the peer end of the veth.
bool send_phone_cdp(const std::string& ifname, const MacAddress& mac) {
  cdp::CdpFrame f;
  f.source = mac;
  f.pdu.device_id = "SEP001122334455";
  f.pdu.platform = "Cisco IP Phone 7841";
  f.pdu.port_id = "Port 1";
  f.pdu.capabilities = cdp::capability::kHost | cdp::capability::kPhone;
  f.pdu.ttl_s = 180;
  cdp::Bytes bytes = cdp::encode_cdp(f);
  int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd < 0) return false;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  sll.sll_halen = 6;
  bool ok = sll.sll_ifindex != 0 && ::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&sll),
                                             sizeof sll) == static_cast<ssize_t>(bytes.size());
  ::close(fd);
  return ok;
}

TEST(NetCdpNetns, PeerDownExpiresCdpNeighbourWithinASecond) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
  auto pair = testing::NetnsPair::create();
  ASSERT_TRUE(pair.has_value()) << pair.error();
  auto& ns = **pair;
  ASSERT_TRUE(testing::add_veth("vcdp0", "vcdp0p", ns.peer_fd()).has_value());
  ASSERT_TRUE(testing::set_link_up("vcdp0", true).has_value());
  ASSERT_TRUE(ns.in_peer([] { return testing::set_link_up("vcdp0p", true); }).has_value());

  boost::asio::io_context io;
  auto run_until = [&](const std::function<bool()>& done, std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    while (!done() && std::chrono::steady_clock::now() - start < limit) io.run_for(10ms);
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  };

  RecordingSink sink;
  cdp::Hooks hooks;
  hooks.events = &sink;
  cdp::AgentSet agents(
      io, [&](const std::string& port) { return cdp::make_pcap_link(io, port); }, hooks);
  cdp::AgentSettings settings;
  settings.fast_start_count = 1;
  agents.apply({cdp::PortSettings{"vcdp0", 100, 10}}, settings);

  auto site = std::make_shared<config::SiteConfig>();
  site->net.mode = config::NetMode::None;  // only the monitor matters here
  site->ports = {{"vcdp0", 100, 10, {}}};
  Manager manager(io, site, [&](const std::string& port, bool up) { agents.link_changed(port, up); });
  ASSERT_TRUE(manager.start().has_value());

  const MacAddress phone = *MacAddress::parse("00:11:22:33:44:55");
  auto has_neighbour = [&] {
    cdp::Agent* a = agents.find("vcdp0");
    return a != nullptr && !a->neighbors().empty();
  };
  // The capture may need a moment to open; announce until the agent has learned the phone.
  for (int i = 0; i < 20 && !has_neighbour(); ++i) {
    ASSERT_TRUE(ns.in_peer([&] { return send_phone_cdp("vcdp0p", phone); }));
    run_until(has_neighbour, 200ms);
  }
  ASSERT_TRUE(has_neighbour()) << "the CDP agent never learned the phone";
  sink.events.clear();

  ASSERT_TRUE(ns.in_peer([] { return testing::set_link_up("vcdp0p", false); }).has_value());
  auto took = run_until([&] { return !has_neighbour(); }, 1000ms);
  EXPECT_LT(took, 1000ms);
  EXPECT_FALSE(has_neighbour()) << "link down must expire the port's neighbours";
  bool recorded = false;
  for (const auto& e : sink.events)
    recorded |= e.mac == phone && e.port == "vcdp0" && e.detail.find("link down") != std::string::npos;
  EXPECT_TRUE(recorded) << "expected a phone event naming the unplug";
  std::cout << "[ measured ] CDP neighbour expired " << took.count() << " ms after the peer went down\n";
  manager.stop();
  agents.stop_all();
}

}  // namespace
}  // namespace ve::net
