// The libpcap link a port's agent sends and receives on: the only file in cdp/ that touches a
// capture handle. Frames are copied out of pcap's buffer before the agent sees them, so the agent
// may send (pcap_inject) from its receive path.
#include <linux/if_packet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "cdp/cdp.hpp"
#include "ve/log.hpp"

namespace ve::cdp {

namespace asio = boost::asio;

namespace {

constexpr const char* kFilter = "ether dst 01:00:0c:cc:cc:cc or ether dst 01:80:c2:00:00:0e";
// A CDP or LLDP frame is at most a tagged Ethernet frame (1522 bytes). The kernel ring
// (immediate mode: TPACKET_V2, one fixed slot per frame) has two such slots per page; at 2048 it
// had one, and libpcap's default 2 MiB request became 986 slots in 3.9 MiB of RSS per port. CDP
// and LLDP are a few frames per phone: 512 KiB is about 330 slots in 0.65 MiB.
constexpr int kSnapLength = 1522;
constexpr int kRingBytes = 512 * 1024;
constexpr int kMaxFramesPerWake = 64;  // bounds the work done per readiness event

std::optional<MacAddress> read_interface_mac(const std::string& interface) {
  std::ifstream in("/sys/class/net/" + interface + "/address");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  return MacAddress::parse(text);
}

class PcapLink final : public FrameLink {
 public:
  PcapLink(asio::io_context& io, std::string interface) : state_(std::make_shared<State>(io, std::move(interface))) {}
  ~PcapLink() override { close(); }

  bool open(Receiver receiver, FailureHandler on_failure, std::string& error) override {
    close();
    State& s = *state_;
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_create(s.interface.c_str(), errbuf);
    if (p == nullptr) {
      error = errbuf;
      return false;
    }
    s.pcap = p;
    pcap_set_snaplen(p, kSnapLength);
    pcap_set_buffer_size(p, kRingBytes);
    pcap_set_promisc(p, 0);  // multicast membership below is enough
    pcap_set_immediate_mode(p, 1);
    if (int rc = pcap_activate(p); rc < 0) {
      error = std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p);
      close();
      return false;
    }
    if (pcap_datalink(p) != DLT_EN10MB) {
      error = "not an Ethernet interface";
      close();
      return false;
    }
    // Only what arrives: our own transmissions would otherwise loop back as "neighbours".
    pcap_setdirection(p, PCAP_D_IN);
    bpf_program program{};
    if (pcap_compile(p, &program, kFilter, 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(p, &program) != 0) {
      error = std::string("BPF filter: ") + pcap_geterr(p);
      pcap_freecode(&program);
      close();
      return false;
    }
    pcap_freecode(&program);
    if (pcap_setnonblock(p, 1, errbuf) != 0) {
      error = errbuf;
      close();
      return false;
    }
    const int fd = pcap_get_selectable_fd(p);
    if (fd < 0) {
      error = "no selectable fd";
      close();
      return false;
    }
    join_multicast(fd);
    s.mac = read_interface_mac(s.interface).value_or(MacAddress{});
    s.receiver = std::move(receiver);
    s.on_failure = std::move(on_failure);
    s.descriptor.assign(fd);
    s.open = true;
    wait(state_);
    return true;
  }

  bool send(ByteView frame) override {
    State& s = *state_;
    if (!s.open) return false;
    return pcap_inject(s.pcap, frame.data(), frame.size()) == static_cast<int>(frame.size());
  }

  void close() override {
    State& s = *state_;
    s.open = false;
    if (s.descriptor.is_open()) {
      boost::system::error_code ignored;
      s.descriptor.cancel(ignored);
      (void)s.descriptor.release();  // pcap owns the fd and closes it
    }
    if (s.pcap != nullptr) {
      pcap_close(s.pcap);
      s.pcap = nullptr;
    }
  }

  MacAddress mac() const override { return state_->mac; }

 private:
  struct State {
    State(asio::io_context& io, std::string name) : descriptor(io), interface(std::move(name)) {}
    asio::posix::stream_descriptor descriptor;
    std::string interface;
    pcap_t* pcap = nullptr;
    bool open = false;
    MacAddress mac;
    Receiver receiver;
    FailureHandler on_failure;
  };

  void join_multicast(int fd) {
    const unsigned index = if_nametoindex(state_->interface.c_str());
    for (const auto& group : {kCdpMulticast, kLldpMulticast}) {
      packet_mreq mreq{};
      mreq.mr_ifindex = static_cast<int>(index);
      mreq.mr_type = PACKET_MR_MULTICAST;
      mreq.mr_alen = 6;
      std::copy(group.begin(), group.end(), mreq.mr_address);
      if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        logger("cdp")->warn("{}: cannot join multicast group: {}", state_->interface, std::strerror(errno));
      }
    }
  }

  static void wait(const std::shared_ptr<State>& state) {
    std::weak_ptr<State> weak = state;
    state->descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                 [weak](const boost::system::error_code& ec) {
                                   auto s = weak.lock();
                                   if (!s || ec == asio::error::operation_aborted || !s->open) return;
                                   on_readable(s, ec);
                                 });
  }

  static void on_readable(const std::shared_ptr<State>& s, const boost::system::error_code& ec) {
    if (ec) {
      fail(s, ec.message());
      return;
    }
    // Copy frames out first: the receiver may send (pcap_inject) and must not run inside dispatch.
    std::vector<Bytes> frames;
    auto collect = [](u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
      auto* out = reinterpret_cast<std::vector<Bytes>*>(user);
      out->emplace_back(bytes, bytes + header->caplen);
    };
    const int n = pcap_dispatch(s->pcap, kMaxFramesPerWake, collect, reinterpret_cast<u_char*>(&frames));
    if (n < 0) {
      fail(s, pcap_geterr(s->pcap));
      return;
    }
    auto receiver = s->receiver;  // the receiver may close this link
    for (const auto& f : frames) {
      if (!s->open) return;
      receiver(f);
    }
    if (s->open) wait(s);
  }

  static void fail(const std::shared_ptr<State>& s, const std::string& why) {
    auto on_failure = s->on_failure;
    if (on_failure) on_failure(why);
  }

  std::shared_ptr<State> state_;
};

}  // namespace

std::unique_ptr<FrameLink> make_pcap_link(asio::io_context& io, const std::string& interface) {
  return std::make_unique<PcapLink>(io, interface);
}

}  // namespace ve::cdp
