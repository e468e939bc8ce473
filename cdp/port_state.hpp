#pragma once
// Internal to cdp/: what one port's agent knows, shared by the agent (timers, link, lifecycle) and
// its two speakers (cdp_speaker.cpp, lldp_speaker.cpp): the port's settings, the neighbour table,
// the port's phone and the power it was granted. Single-threaded, on the agent's io_context.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "cdp/cdp.hpp"

namespace ve::cdp::detail {

// Untrusted input (malformed frames, refused power requests) is logged at most this often per port.
inline constexpr auto kUntrustedWarnEvery = std::chrono::seconds(10);

inline bool valid_vlan(int v) { return v >= 1 && v <= 4094; }
// A Cisco phone's device id is SEP<MAC>; the MAC in it names the phone even behind a PC port.
std::optional<MacAddress> mac_from_sep_name(std::string_view name);

struct NeighborKey {
  Protocol protocol;
  MacAddress source;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  friend auto operator<=>(const NeighborKey&, const NeighborKey&) = default;
};

class PortState {
 public:
  PortState(FrameLink& link, PortSettings port, AgentSettings settings, Hooks hooks);

  FrameLink& link;
  PortSettings port;
  AgentSettings settings;
  Hooks hooks;
  std::shared_ptr<spdlog::logger> log;
  Counters counters;
  std::map<NeighborKey, Neighbor> table;
  // LLDP-MED: MED TLVs are sent only while a MED endpoint is a neighbour (TIA-1057).
  bool med_endpoint_seen = false;
  // What CDP power negotiation granted the port's phone; LLDP-MED advertises the same figure.
  std::optional<std::uint32_t> cdp_granted_mw;

  // The voice VLAN is tagged on the phone's uplink unless it is the port's data VLAN as well.
  bool voice_tagged() const;
  // Decides whether `n` is the port's phone: a site-file phone for this port (its frames come from
  // its own MAC), or, with none in the site file, the first phone after link-up. Only the port's
  // phone negotiates power and names the port's device to PoE.
  bool claim_port_phone(Neighbor& n, bool looks_like_phone);
  void refuse_power(Neighbor* n, std::uint32_t requested_mw);
  // Grant for a request of the port's phone: the PoE manager's answer, else the port's cap.
  std::uint32_t negotiate(std::uint32_t requested_mw) const;
  // mW the port offers now (the CDP grant once there is one, else what PoE allocated).
  std::uint32_t available_mw() const;

  // A frame the codec refused: counted, logged rate-limited, dropped.
  void rejected(Protocol protocol, DecodeError error);
  // Finds or inserts a neighbour. A full table (flood) makes room by evicting the unverified
  // neighbour seen longest ago; nullptr when every entry is verified.
  Neighbor* upsert(Protocol protocol, const MacAddress& source, bool& is_new);
  void touch(Neighbor& n, std::uint16_t ttl_s);
  void forget(Protocol protocol, const MacAddress& source, std::string_view why);
  std::size_t expire();
  void drop_all_neighbors(bool report);

  void report_new(const Neighbor& n, bool is_phone);

 private:
  bool is_site_phone(const MacAddress& mac) const;
  bool protected_source(const MacAddress& source) const;
  void refresh_med();
  void refresh_port_phone();
  void report_gone(const Neighbor& n, std::string_view why);
  void emit(PhoneEvent e);

  // The port's phone (frame source MAC) when the site file names none for this port: the first
  // phone after link-up, until it leaves.
  std::optional<MacAddress> port_phone_;
  std::chrono::steady_clock::time_point last_malformed_warn_{};
  std::chrono::steady_clock::time_point last_refusal_warn_{};
};

// One protocol on one port (lldpd keeps one file per protocol the same way). The agent owns the
// link, the timers and the lifecycle; a speaker builds its protocol's advertisement and acts on
// what it receives.
class Speaker {
 public:
  // What the agent does after a received frame.
  enum class Answer {
    None,
    Reply,      // send this protocol's advertisement now (coalesced: a flood of queries is one frame)
    FastStart,  // LLDP-MED: a new MED endpoint, send now and repeat fast (TIA-1057)
  };
  virtual ~Speaker() = default;
  virtual Protocol protocol() const = 0;
  virtual bool enabled() const = 0;
  // The advertisement with the settings' holdtime, or the shutdown frame when `shutdown`.
  virtual Bytes advertisement(bool shutdown) const = 0;
  virtual Answer receive(ByteView frame) = 0;
  // The link went down: power negotiation starts over on the next link (protocol-notes.md).
  virtual void link_down() = 0;
};

std::unique_ptr<Speaker> make_cdp_speaker(PortState& state);
std::unique_ptr<Speaker> make_lldp_speaker(PortState& state);

}  // namespace ve::cdp::detail
