#pragma once
// What the DHCP netns tests share beyond tests/support/: the server/client topology, the scapy DHCP
// client (tests/dhcp_client.py) and a stand-in for the daemon's lease-event socket.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/netns.hpp"
#include "tests/support/process.hpp"

namespace ve::test {

namespace fs = std::filesystem;

// The server (Kea, or voiceedged running it) with 10.10.100.1 on its end, and the DHCP clients.
struct DhcpNetwork {
  Namespace server_ns{"vedhs"}, client_ns{"vedhc"};
  std::string server_if = unique_name("veds"), client_if = unique_name("vedc");
  VethPair veth{{&server_ns, server_if, "10.10.100.1/24"}, {&client_ns, client_if}};
};

// One DORA with the scapy client (tests/dhcp_client.py) from the client namespace.
struct DhcpClientRequest {
  std::string mac{};
  std::optional<std::string> vendor_class{};
  std::optional<std::string> vendor_class_hex{};
  std::optional<std::string> prl{};  // "1,3,6,15,66,150"
  std::optional<std::string> raw_options_hex{};
  std::optional<std::string> hostname{};
  std::optional<int> vlan{};  // send 802.1Q-tagged (0: priority-tagged)
  bool discover_only = false;
  double timeout_s = 2.0;
  int tries = 2;
};

inline nlohmann::json dhcp_exchange(const DhcpNetwork& net, const DhcpClientRequest& r) {
  std::vector<std::string> argv{
      "/usr/bin/python3", VE_TESTS_DIR "/dhcp_client.py", "--iface", net.client_if,          "--mac", r.mac,
      "--timeout",        std::to_string(r.timeout_s),    "--tries", std::to_string(r.tries)};
  for (const auto& [flag, value] : {std::pair{"--vendor-class", r.vendor_class},
                                    {"--vendor-class-hex", r.vendor_class_hex},
                                    {"--prl", r.prl},
                                    {"--raw-options-hex", r.raw_options_hex},
                                    {"--hostname", r.hostname}}) {
    if (value) argv.insert(argv.end(), {flag, *value});
  }
  if (r.vlan) argv.insert(argv.end(), {"--vlan", std::to_string(*r.vlan)});
  if (r.discover_only) argv.push_back("--discover-only");
  const auto client = net.client_ns.run(argv);
  auto j = nlohmann::json::parse(client.out, nullptr, false);
  if (client.exit_code != 0 || j.is_discarded()) {
    ADD_FAILURE() << "dhcp_client.py failed (" << client.exit_code << "): " << client.out << client.err;
    return nlohmann::json{{"offer", nullptr}, {"ack", nullptr}};
  }
  return j;
}

// "0a0a64010a0a6402" etc. for the expected option payloads.
inline std::string hex_of(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 0xf];
  }
  return out;
}

// A bound unix datagram socket standing in for the daemon's event socket.
class DatagramReceiver {
 public:
  explicit DatagramReceiver(const std::string& path) : path_(path) {
    ::unlink(path.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~DatagramReceiver() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    char buf[65536];
    for (;;) {
      auto n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0) break;
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Fills the socket's receive queue (a daemon that stopped reading). Returns datagrams queued.
  int fill_queue() {
    const int tx = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    int n = 0;
    const std::string junk(512, 'x');
    while (::sendto(tx, junk.data(), junk.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) > 0 &&
           n < 1000000)
      ++n;
    ::close(tx);
    return n;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

}  // namespace ve::test
