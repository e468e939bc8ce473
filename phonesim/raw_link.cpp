// The simulator's one pcap handle: every phone's CDP and DHCP frames go out through it and every
// CDP frame / DHCP reply comes in through it, demultiplexed by the simulator.
#include <pcap/pcap.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim::detail {

namespace {
// CDP from the switch, and DHCP replies (broadcast or unicast to any phone MAC: promiscuous).
constexpr const char* kFilter = "ether dst 01:00:0c:cc:cc:cc or (udp dst port 68)";
constexpr int kSnapLength = 2048;
constexpr int kBufferBytes = 16 << 20;  // a boot storm answers hundreds of DISCOVERs at once
constexpr int kMaxFramesPerWake = 256;
}  // namespace

Watchdog::Watchdog(const asio::any_io_executor& ex, Clock::duration after, std::function<void()> on_expire)
    : timer_(ex) {
  timer_.expires_after(after);
  timer_.async_wait([alive = alive_, fired = fired_, f = std::move(on_expire)](const error_code& ec) {
    if (ec || !*alive) return;
    *fired = true;
    f();
  });
}

Watchdog::~Watchdog() {
  *alive_ = false;
  timer_.cancel();
}

bool RawLink::open(const std::string& interface, Receiver receiver, std::string& error) {
  close();
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_create(interface.c_str(), errbuf);
  if (p == nullptr) {
    error = errbuf;
    return false;
  }
  pcap_ = p;
  pcap_set_snaplen(p, kSnapLength);
  pcap_set_promisc(p, 1);
  pcap_set_immediate_mode(p, 1);
  pcap_set_buffer_size(p, kBufferBytes);
  auto fail = [&](std::string why) {
    error = std::move(why);
    close();
    return false;
  };
  if (int rc = pcap_activate(p); rc < 0) return fail(std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p));
  if (pcap_datalink(p) != DLT_EN10MB) return fail("not an Ethernet interface");
  // Our own transmissions (DISCOVERs, the phones' CDP) must not come back as input.
  pcap_setdirection(p, PCAP_D_IN);
  bpf_program program{};
  if (pcap_compile(p, &program, kFilter, 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(p, &program) != 0) {
    std::string why = std::string("BPF filter: ") + pcap_geterr(p);
    pcap_freecode(&program);
    return fail(why);
  }
  pcap_freecode(&program);
  if (pcap_setnonblock(p, 1, errbuf) != 0) return fail(errbuf);
  const int fd = pcap_get_selectable_fd(p);
  if (fd < 0) return fail("no selectable fd");
  descriptor_.assign(fd);
  receiver_ = std::move(receiver);
  open_ = true;
  wait();
  return true;
}

bool RawLink::send(ByteView frame) {
  if (!open_) return false;
  if (pcap_inject(pcap_, frame.data(), frame.size()) != static_cast<int>(frame.size())) {
    ++send_errors_;
    return false;
  }
  return true;
}

void RawLink::close() {
  open_ = false;
  if (descriptor_.is_open()) {
    error_code ignored;
    descriptor_.cancel(ignored);
    (void)descriptor_.release();  // pcap owns the fd
  }
  if (pcap_ != nullptr) {
    pcap_close(pcap_);
    pcap_ = nullptr;
  }
}

void RawLink::wait() {
  descriptor_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec == asio::error::operation_aborted || !open_) return;
    on_readable();
  });
}

void RawLink::on_readable() {
  // Copy frames out first: handlers send (pcap_inject) and must not run inside pcap_dispatch.
  std::vector<Bytes> frames;
  auto collect = [](u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
    reinterpret_cast<std::vector<Bytes>*>(user)->emplace_back(bytes, bytes + header->caplen);
  };
  const int n = pcap_dispatch(pcap_, kMaxFramesPerWake, collect, reinterpret_cast<u_char*>(&frames));
  if (n < 0) return;  // the interface went away: phones waiting on frames time out and say so
  received_ += frames.size();
  for (const auto& f : frames) {
    if (!open_) return;
    receiver_(f);
  }
  if (open_) wait();
}

}  // namespace ve::phonesim::detail
