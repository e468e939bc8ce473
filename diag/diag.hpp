#pragma once
// Per-phone diagnostics: which phone a captured frame belongs to (frame.cpp), pcapng output
// (pcapng.cpp), the boot recorder that keeps every phone's most recent boot (boot_recorder.cpp),
// secret scrubbing (scrub.cpp), .tar.gz archives (archive.cpp), a ring of recent log lines
// (log_ring.cpp) and the libpcap capture hub on the daemon's io_context (capture_hub.cpp, the only
// file here that opens a socket).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "ve/mac.hpp"
#include "ve/result.hpp"

namespace boost::asio {
class io_context;
}

namespace ve::diag {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// ---------------------------------------------------------------------------------------------
// Frame classification: just enough of Ethernet, 802.1Q, ARP, IPv4, UDP/TCP and BOOTP to say
// which phone a frame is about. Every length is checked; a short or odd frame yields less detail,
// never a read past the buffer.

struct DhcpInfo {
  std::uint8_t op = 0;            // 1 request, 2 reply
  std::uint8_t message_type = 0;  // option 53 (1 DISCOVER ... 5 ACK), 0 when absent
  MacAddress chaddr;              // only when htype 1 / hlen 6
  std::uint32_t yiaddr = 0;       // host byte order
  std::uint32_t ciaddr = 0;
};

struct FrameInfo {
  MacAddress source;
  MacAddress destination;
  std::optional<std::uint16_t> vlan;
  bool cdp = false;   // 802.3 + SNAP, Cisco OUI, PID 0x2000
  bool lldp = false;  // ethertype 0x88cc
  bool arp = false;
  MacAddress arp_sender_mac;
  std::uint32_t arp_sender_ip = 0;
  std::uint32_t arp_target_ip = 0;
  bool ipv4 = false;
  std::uint32_t ip_source = 0;  // host byte order
  std::uint32_t ip_destination = 0;
  std::uint8_t ip_protocol = 0;  // 6 TCP, 17 UDP
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  std::size_t payload_offset = 0;  // of the UDP/TCP payload in the frame (0 when none)
  std::size_t payload_length = 0;
  std::optional<DhcpInfo> dhcp;
};

bool is_multicast(const MacAddress& mac);
// Nullopt when the frame is shorter than an Ethernet header.
std::optional<FrameInfo> classify_frame(ByteView frame);

// ---------------------------------------------------------------------------------------------
// pcapng (draft-ietf-opsawg-pcapng), host byte order, microsecond timestamps, LINKTYPE_ETHERNET.

struct Packet {
  std::chrono::system_clock::time_point time;
  std::uint32_t original_length = 0;
  std::string interface;
  Bytes data;  // possibly truncated to the snap length
};

// Produces a stream of pcapng blocks: the section header first, an interface description the
// first time an interface is used, then one enhanced packet block per packet. The output can be
// cut after any call to packet() and is still a complete file.
class PcapngWriter {
 public:
  static constexpr std::uint32_t kSnapLength = 262144;
  std::string header() const;  // section header block (call once, first)
  // The blocks for one packet (an interface block first if `p.interface` is new).
  std::string packet(const Packet& p);
  // Undoes the interface the last packet() introduced (its blocks were not delivered).
  void rollback();
  // A whole file for a list of packets.
  static std::string file(const std::vector<Packet>& packets);

 private:
  std::map<std::string, std::uint32_t> interfaces_;
  std::optional<std::string> last_added_;
};

// ---------------------------------------------------------------------------------------------
// Boot recorder: every phone's most recent boot, in memory, bounded per phone and in total.

struct RecorderLimits {
  std::size_t per_phone_bytes = 256 * 1024;
  std::size_t total_bytes = 64 * 1024 * 1024;
  std::chrono::seconds boot_timeout{300};  // a boot not registered by then has given up
};

enum class BootState { Booting, Registered, Failed };
std::string_view to_string(BootState s);

struct BootRecord {
  MacAddress mac;
  BootState state = BootState::Booting;
  std::string failure;  // the first failure's detail
  std::chrono::system_clock::time_point started;
  std::chrono::system_clock::time_point ended;  // zero while booting
  // When the phone registered, also after a failed step (a missing dial plan does not stop a
  // phone): the boot is over then, later frames are not part of it; zero until then.
  std::chrono::system_clock::time_point registered_at;
  std::chrono::steady_clock::time_point started_steady;
  std::deque<Packet> packets;  // empty while packed: use all_packets() / packet_count()
  // A registered boot, once settled, is kept deflated in one buffer: it is rarely asked for, and
  // per-packet storage (a vector, a deque slot) plus its SIP, HTTP and DHCP text cost about four
  // times as much (docs/benchmarks.md, Boot storm).
  std::string packed;
  std::size_t packed_packets = 0;
  std::size_t bytes = 0;       // held: packets' data sizes (+ per-packet overhead), or packed size
  std::uint64_t cut = 0;       // packets cut (oldest first) to stay within the bounds
  std::uint64_t recorded = 0;  // packets ever added to this boot
  bool persisted = false;      // the failed boot's file in the state dir is current

  bool is_packed() const { return !packed.empty(); }
  std::size_t packet_count() const { return is_packed() ? packed_packets : packets.size(); }
  std::vector<Packet> all_packets() const;  // oldest first, inflated when packed
};

// Cost of one stored packet against the bounds: its bytes plus bookkeeping.
std::size_t stored_size(const Packet& p);

class BootRecorder {
 public:
  explicit BootRecorder(RecorderLimits limits);

  void set_limits(const RecorderLimits& limits);  // re-applies the bounds at once
  const RecorderLimits& limits() const { return limits_; }

  // Boot boundaries. begin_boot() replaces the phone's previous record; the others are no-ops for
  // a phone without a boot in progress.
  void begin_boot(const MacAddress& mac, std::chrono::system_clock::time_point now);
  void registered(const MacAddress& mac, std::chrono::system_clock::time_point now);
  void failed(const MacAddress& mac, const std::string& why, std::chrono::system_clock::time_point now);
  // Boots older than the timeout that have not registered become Failed; returns their MACs.
  std::vector<MacAddress> expire(std::chrono::steady_clock::time_point now);
  // Packs (deflates) the boots of registered phones (failed steps or not) whose late frames
  // have all come in; returns how many.
  std::size_t pack_settled(std::chrono::system_clock::time_point now);

  bool booting(const MacAddress& mac) const;
  bool has_record(const MacAddress& mac) const { return boots_.count(mac) != 0; }
  // Adds a packet to the phone's boot in progress (ignored when it has none). A registered boot
  // still takes packets captured before, or just after, its registration (frames arrive late).
  void add(const MacAddress& mac, const Packet& p);

  const BootRecord* find(const MacAddress& mac) const;
  void mark_persisted(const MacAddress& mac);
  std::vector<MacAddress> failed_unpersisted() const;

  std::size_t total_bytes() const { return total_; }
  std::size_t phones() const { return boots_.size(); }
  std::uint64_t cut_total() const { return cut_total_; }
  std::size_t count(BootState s) const;
  std::size_t packed_boots() const;

 private:
  void trim_phone(BootRecord& r);
  void trim_total();
  void drop_front(BootRecord& r);
  void pack(BootRecord& r);
  void unpack(BootRecord& r);

  // Which record loses its oldest packet when the total is exceeded: registered boots before
  // booting or failed ones, the largest first.
  using Rank = std::tuple<int, std::size_t, MacAddress>;
  static Rank rank(const BootRecord& r);
  void unindex(const BootRecord& r) { index_.erase(rank(r)); }
  // Only records with packets are candidates: an emptied one must not shadow the next victim.
  void reindex(const BootRecord& r) {
    if (!r.packets.empty() || r.is_packed()) index_.insert(rank(r));
  }

  RecorderLimits limits_;
  std::map<MacAddress, BootRecord> boots_;
  std::set<Rank> index_;
  std::size_t total_ = 0;
  std::uint64_t cut_total_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Secrets

// Every occurrence of every secret (empty ones ignored) replaced by '*' of the same length, so
// packet lengths and offsets do not change.
void scrub(std::string& text, const std::vector<std::string>& secrets);
void scrub(Bytes& data, const std::vector<std::string>& secrets);
// Packets: each one, and across packet boundaries within one UDP/TCP flow (a secret split over
// two TFTP blocks or TCP segments is masked in both).
void scrub(std::vector<Packet>& packets, const std::vector<std::string>& secrets);
// XML: the text of every element (and value of every attribute) whose name contains "password"
// or "secret" (any case) becomes "********".
std::string mask_xml_passwords(const std::string& xml);

// ---------------------------------------------------------------------------------------------
// .tar.gz (POSIX ustar members, gzip via zlib)

class TarGz {
 public:
  void add(const std::string& name, std::string_view content,
           std::chrono::system_clock::time_point mtime = std::chrono::system_clock::now());
  // The whole archive, gzip-compressed.
  std::string finish() const;
  const std::vector<std::pair<std::string, std::string>>& members() const { return members_; }

 private:
  std::vector<std::pair<std::string, std::string>> members_;
  std::vector<std::int64_t> mtimes_;
};

// ---------------------------------------------------------------------------------------------
// Recent log lines (the daemon's own ring when not under systemd). Thread-safe: spdlog sinks
// may be called from any thread.

class LogRing {
 public:
  explicit LogRing(std::size_t max_lines = 20000) : max_(max_lines) {}
  void add(std::string line);
  // Lines that mention any of `needles` (exact substring; an IPv4 address must not be followed by
  // another digit), oldest first, at most `limit`.
  std::vector<std::string> matching(const std::vector<std::string>& needles, std::size_t limit) const;
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::deque<std::string> lines_;
  std::size_t max_;
};

// The spellings a log line may use for a phone: 00:11:.., 0011.2233.4455, 001122334455, SEP...
std::vector<std::string> mac_spellings(const MacAddress& mac);
// True when `line` contains `needle`, and a needle ending in a digit is not followed by a digit.
bool mentions(std::string_view line, std::string_view needle);

// ---------------------------------------------------------------------------------------------
// Capture hub: one libpcap handle per interface the box uses with phones (both directions,
// non-promiscuous), frames handed to a callback on the io_context. Interfaces that do not exist
// yet are retried.

class CaptureHub {
 public:
  using Receiver = std::function<void(const std::string& interface, const Packet& packet)>;
  CaptureHub(boost::asio::io_context& io, Receiver receiver);
  ~CaptureHub();
  CaptureHub(const CaptureHub&) = delete;
  CaptureHub& operator=(const CaptureHub&) = delete;

  // Interface name -> the kernel ring libpcap asks for on it (bytes): a port carries one or two
  // phones, a voice VLAN interface all of them, and 48 ports at a storm's ring size would be
  // 192 MiB. Opens handles for new names, closes those no longer listed (a changed size applies
  // when the handle is next opened).
  void set_interfaces(const std::map<std::string, int>& interfaces);
  void stop();

  struct InterfaceStatus {
    std::string name;
    bool open = false;
    std::string error;
    std::uint64_t frames = 0;
    std::uint64_t kernel_drops = 0;
  };
  std::vector<InterfaceStatus> status() const;
  // MAC addresses of the box's own captured interfaces (never attributed to a phone).
  std::set<MacAddress> own_macs() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ve::diag
