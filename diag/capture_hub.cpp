// The capture hub: libpcap handles on the daemon's io_context, one per interface, both directions.
// Frames are copied out of libpcap's buffer before the receiver runs.
#include <pcap/pcap.h>

#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "diag/diag.hpp"
#include "ve/log.hpp"

namespace ve::diag {

namespace asio = boost::asio;

namespace {
constexpr int kSnapLength = 65535;
constexpr int kMaxFramesPerWake = 256;
constexpr auto kRetry = std::chrono::seconds(3);
constexpr auto kBlockTimeout = std::chrono::milliseconds(20);

std::optional<MacAddress> interface_mac(const std::string& name) {
  std::ifstream in("/sys/class/net/" + name + "/address");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  return MacAddress::parse(text);
}
}  // namespace

struct CaptureHub::Impl : std::enable_shared_from_this<Impl> {
  struct Handle {
    Handle(asio::io_context& io, std::string n, int ring)
        : name(std::move(n)), ring_bytes(ring), descriptor(io), retry(io) {}
    ~Handle() { close(); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    void close() {
      if (descriptor.is_open()) {
        boost::system::error_code ignored;
        descriptor.cancel(ignored);
        (void)descriptor.release();  // pcap owns the fd
      }
      if (pcap != nullptr) {
        pcap_close(pcap);
        pcap = nullptr;
      }
      retry.cancel();
    }
    std::string name;
    int ring_bytes;
    asio::posix::stream_descriptor descriptor;
    asio::steady_timer retry;
    pcap_t* pcap = nullptr;
    std::string error;
    std::optional<MacAddress> mac;
    std::uint64_t frames = 0;
  };

  Impl(asio::io_context& io_in, Receiver r) : io(io_in), receiver(std::move(r)) {}

  asio::io_context& io;
  Receiver receiver;
  std::map<std::string, std::shared_ptr<Handle>> handles;
  bool stopped = false;

  void open(const std::shared_ptr<Handle>& h) {
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_create(h->name.c_str(), errbuf);
    auto fail = [&](const std::string& why) {
      if (why != h->error)
        logger("diag")->warn("capture on {}: {} (retrying every {} s)", h->name, why, kRetry.count());
      h->error = why;
      if (p != nullptr) pcap_close(p);
      h->pcap = nullptr;
      schedule_retry(h);
    };
    if (p == nullptr) return fail(errbuf);
    pcap_set_snaplen(p, kSnapLength);
    pcap_set_promisc(p, 0);
    // Not immediate mode: that makes libpcap use TPACKET_V2, whose ring has one fixed slot per
    // frame sized for the largest (GRO) frame: 128 KiB per slot on a veth or an offloading NIC,
    // so an 8 MiB request became 128 slots in 16 MiB, every storm frame costing 128 KiB.
    // TPACKET_V3 packs frames into 256 KiB blocks: the ring is the size asked for and holds that
    // many bytes of frames. A block reaches us when full or after kBlockTimeout; the recorder
    // keeps frames by their capture time, so the delay loses nothing.
    pcap_set_immediate_mode(p, 0);
    pcap_set_timeout(p, static_cast<int>(kBlockTimeout.count()));
    pcap_set_buffer_size(p, h->ring_bytes);
    if (int rc = pcap_activate(p); rc < 0) return fail(std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p));
    if (pcap_datalink(p) != DLT_EN10MB) return fail("not an Ethernet interface");
    pcap_setdirection(p, PCAP_D_INOUT);
    if (pcap_setnonblock(p, 1, errbuf) != 0) return fail(errbuf);
    const int fd = pcap_get_selectable_fd(p);
    if (fd < 0) return fail("no selectable fd");
    if (!h->error.empty()) logger("diag")->info("capturing on {} again", h->name);
    h->error.clear();
    h->pcap = p;
    h->mac = interface_mac(h->name);
    h->descriptor.assign(fd);
    wait(h);
  }

  void schedule_retry(const std::shared_ptr<Handle>& h) {
    if (stopped) return;
    std::weak_ptr<Handle> weak = h;
    std::weak_ptr<Impl> self = weak_from_this();
    h->retry.expires_after(kRetry);
    h->retry.async_wait([weak, self](const boost::system::error_code& ec) {
      auto hh = weak.lock();
      auto s = self.lock();
      if (ec || !hh || !s || s->stopped) return;
      s->open(hh);
    });
  }

  void wait(const std::shared_ptr<Handle>& h) {
    std::weak_ptr<Handle> weak = h;
    std::weak_ptr<Impl> self = weak_from_this();
    h->descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                             [weak, self](const boost::system::error_code& ec) {
                               auto hh = weak.lock();
                               auto s = self.lock();
                               if (!hh || !s || ec == asio::error::operation_aborted || hh->pcap == nullptr) return;
                               s->readable(hh, ec);
                             });
  }

  void readable(const std::shared_ptr<Handle>& h, const boost::system::error_code& ec) {
    if (ec) return lost(h, ec.message());
    std::vector<Packet> packets;
    auto collect = [](u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
      auto* out = reinterpret_cast<std::vector<Packet>*>(user);
      Packet p;
      p.time = std::chrono::system_clock::time_point(std::chrono::seconds(header->ts.tv_sec) +
                                                     std::chrono::microseconds(header->ts.tv_usec));
      p.original_length = header->len;
      p.data.assign(bytes, bytes + header->caplen);
      out->push_back(std::move(p));
    };
    const int n = pcap_dispatch(h->pcap, kMaxFramesPerWake, collect, reinterpret_cast<u_char*>(&packets));
    if (n < 0) return lost(h, pcap_geterr(h->pcap));
    h->frames += packets.size();
    for (auto& p : packets) {
      p.interface = h->name;
      receiver(h->name, p);
    }
    if (h->pcap != nullptr) wait(h);
  }

  void lost(const std::shared_ptr<Handle>& h, const std::string& why) {
    logger("diag")->warn("capture on {} failed: {}", h->name, why);
    h->close();
    h->error = why;
    schedule_retry(h);
  }
};

CaptureHub::CaptureHub(asio::io_context& io, Receiver receiver)
    : impl_(std::make_shared<Impl>(io, std::move(receiver))) {}

CaptureHub::~CaptureHub() { stop(); }

void CaptureHub::set_interfaces(const std::map<std::string, int>& interfaces) {
  impl_->stopped = false;
  for (auto it = impl_->handles.begin(); it != impl_->handles.end();) {
    if (interfaces.count(it->first) == 0) {
      it->second->close();
      it = impl_->handles.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, ring_bytes] : interfaces) {
    if (impl_->handles.count(name) != 0) continue;
    auto h = std::make_shared<Impl::Handle>(impl_->io, name, ring_bytes);
    impl_->handles.emplace(name, h);
    impl_->open(h);
  }
}

void CaptureHub::stop() {
  impl_->stopped = true;
  for (auto& [name, h] : impl_->handles) h->close();
  impl_->handles.clear();
}

std::vector<CaptureHub::InterfaceStatus> CaptureHub::status() const {
  std::vector<InterfaceStatus> out;
  for (const auto& [name, h] : impl_->handles) {
    InterfaceStatus s;
    s.name = name;
    s.open = h->pcap != nullptr;
    s.error = h->error;
    s.frames = h->frames;
    if (h->pcap != nullptr) {
      pcap_stat st{};
      if (pcap_stats(h->pcap, &st) == 0) s.kernel_drops = st.ps_drop;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::set<MacAddress> CaptureHub::own_macs() const {
  std::set<MacAddress> out;
  for (const auto& [name, h] : impl_->handles)
    if (h->mac) out.insert(*h->mac);
  return out;
}

}  // namespace ve::diag
