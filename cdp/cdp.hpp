#pragma once
// CDP v2 and LLDP(-MED): pure codecs (cdp_codec.cpp, lldp_codec.cpp) and the per-port agent
// (agent.cpp, the only file here that opens a pcap handle or owns a timer).
//
// Frames are whole Ethernet frames (destination MAC first); decoders accept an optional 802.1Q tag.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace boost::asio {
class io_context;
}

namespace ve::cdp {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline constexpr std::array<std::uint8_t, 6> kCdpMulticast{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc};
inline constexpr std::array<std::uint8_t, 6> kLldpMulticast{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e};
inline constexpr std::uint16_t kLldpEthertype = 0x88cc;

// One closed set for both decoders.
enum class DecodeError {
  Truncated,      // shorter than a header, or a length field points past the buffer
  WrongProtocol,  // not CDP (other Cisco SNAP PIDs such as VTP/DTP) or not LLDP
  BadVersion,     // CDP version other than 1 or 2
  BadChecksum,    // CDP checksum does not verify
  TlvOverrun,     // a TLV length runs past the end of the PDU
  BadTlvLength,   // a TLV too short (or too long) for what its type must carry
  BadTlvValue,    // inconsistent contents (address count, empty mandatory id...)
  MissingTlv,     // LLDP: Chassis ID, Port ID and TTL must come first, in order
};
std::string_view to_string(DecodeError e);

struct RawTlv {
  std::uint16_t type = 0;  // CDP type, or LLDP type (127 = organisationally specific, value keeps OUI)
  Bytes value;
  friend bool operator==(const RawTlv&, const RawTlv&) = default;
};

// ---------------------------------------------------------------------------------------------
// CDP

namespace capability {
inline constexpr std::uint32_t kRouter = 0x01;
inline constexpr std::uint32_t kTransparentBridge = 0x02;
inline constexpr std::uint32_t kSourceRouteBridge = 0x04;
inline constexpr std::uint32_t kSwitch = 0x08;
inline constexpr std::uint32_t kHost = 0x10;
inline constexpr std::uint32_t kIgmp = 0x20;
inline constexpr std::uint32_t kRepeater = 0x40;
inline constexpr std::uint32_t kPhone = 0x80;
inline constexpr std::uint32_t kRemotelyManaged = 0x100;
inline constexpr std::uint32_t kCvtaStpDispute = 0x200;
inline constexpr std::uint32_t kMacRelay = 0x400;
}  // namespace capability

// IOS letter codes for a capability bitmap ("R S I", "H P M").
std::string capability_letters(std::uint32_t caps);

// LLDP system capabilities (IEEE 802.1AB 8.5.8.1).
namespace lldp_capability {
inline constexpr std::uint16_t kOther = 0x0001;
inline constexpr std::uint16_t kRepeater = 0x0002;
inline constexpr std::uint16_t kBridge = 0x0004;
inline constexpr std::uint16_t kWlanAccessPoint = 0x0008;
inline constexpr std::uint16_t kRouter = 0x0010;
inline constexpr std::uint16_t kTelephone = 0x0020;
inline constexpr std::uint16_t kDocsis = 0x0040;
inline constexpr std::uint16_t kStation = 0x0080;
inline constexpr std::uint16_t kCvlan = 0x0100;
inline constexpr std::uint16_t kSvlan = 0x0200;
inline constexpr std::uint16_t kTpmr = 0x0400;
}  // namespace lldp_capability

// IOS's LLDP letters ("B T": Bridge, Telephone) and the names ("Bridge", "Telephone", ...;
// unknown bits as "bit 11").
std::string lldp_capability_letters(std::uint16_t caps);
std::vector<std::string> lldp_capability_names(std::uint16_t caps);

// An entry of the Addresses (0x02) and Management Addresses (0x16) TLVs.
struct CdpAddress {
  std::uint8_t protocol_type = 1;  // 1 = NLPID, 2 = 802.2
  Bytes protocol{0xcc};            // NLPID 0xcc = IPv4
  Bytes address;
  static CdpAddress ipv4(std::uint32_t host_order);
  bool is_ipv4() const { return protocol_type == 1 && protocol == Bytes{0xcc} && address.size() == 4; }
  // Dotted quad for IPv4, otherwise hex.
  std::string to_string() const;
  friend bool operator==(const CdpAddress&, const CdpAddress&) = default;
};

// 0x0e: Appliance VLAN (VoIP VLAN Reply).
struct ApplianceVlan {
  std::uint8_t appliance_type = 1;  // 1 = telephony
  std::uint16_t vlan = 0;
  friend bool operator==(const ApplianceVlan&, const ApplianceVlan&) = default;
};

// 0x19: what the phone asks for, highest level first.
struct PowerRequested {
  std::uint16_t request_id = 0;
  std::uint16_t management_id = 0;
  std::vector<std::uint32_t> levels_mw;
  friend bool operator==(const PowerRequested&, const PowerRequested&) = default;
};

// 0x1a: what the switch grants.
struct PowerAvailable {
  std::uint16_t request_id = 0;     // echo of the last request id, 0 if none since link up
  std::uint16_t management_id = 0;  // changes whenever the grant changes (never 0 when sent)
  std::uint32_t available_mw = 0;
  std::uint32_t management_mw = 0xffffffff;  // no preference
  friend bool operator==(const PowerAvailable&, const PowerAvailable&) = default;
};

// The CDP PDU (after LLC/SNAP). Absent optionals = TLV not present.
struct CdpPdu {
  std::uint8_t version = 2;
  std::uint8_t ttl_s = 180;
  std::uint16_t checksum = 0;  // as received; encode() computes it

  std::optional<std::string> device_id;                         // 0x01
  std::optional<std::vector<CdpAddress>> addresses;             // 0x02
  std::optional<std::string> port_id;                           // 0x03
  std::optional<std::uint32_t> capabilities;                    // 0x04
  std::optional<std::string> software_version;                  // 0x05
  std::optional<std::string> platform;                          // 0x06
  std::optional<std::uint16_t> native_vlan;                     // 0x0a
  std::optional<bool> full_duplex;                              // 0x0b
  std::optional<ApplianceVlan> voip_vlan_reply;                 // 0x0e
  std::optional<Bytes> voip_vlan_query;                         // 0x0f (opaque; a 7960 sends 20 02 00 01)
  std::optional<std::uint16_t> power_mw;                        // 0x10
  std::optional<std::uint32_t> mtu;                             // 0x11
  std::optional<std::uint8_t> trust_bitmap;                     // 0x12
  std::optional<std::uint8_t> untrusted_cos;                    // 0x13
  std::optional<std::vector<CdpAddress>> management_addresses;  // 0x16
  std::optional<PowerRequested> power_requested;                // 0x19
  std::optional<PowerAvailable> power_available;                // 0x1a
  std::vector<RawTlv> unknown;                                  // kept in order, re-emitted last

  friend bool operator==(const CdpPdu&, const CdpPdu&) = default;
};

struct CdpFrame {
  MacAddress destination{kCdpMulticast};
  MacAddress source;
  std::optional<std::uint16_t> vlan_tag;  // 802.1Q VID if the frame was tagged
  CdpPdu pdu;
};

// RFC 1071 sum with Cisco's odd-length rule (last byte signed): see protocol-notes.md.
std::uint16_t cdp_checksum(ByteView pdu);

Result<CdpPdu, DecodeError> decode_cdp_pdu(ByteView pdu);
Result<CdpFrame, DecodeError> decode_cdp(ByteView frame);
// The PDU bytes with a valid checksum (pdu.checksum is ignored).
Bytes encode_cdp_pdu(const CdpPdu& pdu);
// A whole 802.3 + LLC/SNAP frame (padded to 60 bytes), untagged.
Bytes encode_cdp(const CdpFrame& frame);

// ---------------------------------------------------------------------------------------------
// LLDP and LLDP-MED (TIA-1057)

namespace lldp_med_capability {
inline constexpr std::uint16_t kCapabilities = 0x01;
inline constexpr std::uint16_t kNetworkPolicy = 0x02;
inline constexpr std::uint16_t kLocation = 0x04;
inline constexpr std::uint16_t kPowerPse = 0x08;
inline constexpr std::uint16_t kPowerPd = 0x10;
inline constexpr std::uint16_t kInventory = 0x20;
}  // namespace lldp_med_capability

enum class MedDeviceType : std::uint8_t {
  NotDefined = 0,
  EndpointClass1 = 1,
  EndpointClass2 = 2,
  EndpointClass3 = 3,  // IP phones
  NetworkConnectivity = 4,
};

struct LldpId {
  std::uint8_t subtype = 0;  // chassis: 4 MAC, 7 local; port: 3 MAC, 5 ifname, 7 local
  Bytes value;
  // MAC subtypes as 00:11:.., others as text (non-printables escaped).
  std::string to_string(bool is_chassis) const;
  friend bool operator==(const LldpId&, const LldpId&) = default;
};

// IANA address family numbers as LLDP uses them (management address, network-address ids).
namespace address_family {
inline constexpr std::uint8_t kIpv4 = 1;
inline constexpr std::uint8_t kIpv6 = 2;
inline constexpr std::uint8_t kMac = 6;  // "802" (all 802 media, canonical MAC order)
}  // namespace address_family

// "10.0.0.1", "fe80::1", "00:11:22:33:44:55" for the families above with the right length;
// otherwise "family N: 0a0b0c" (hex, so nothing unknown is lost or mangled).
std::string address_to_string(std::uint8_t family, ByteView address);

struct LldpManagementAddress {
  std::uint8_t subtype = 1;  // IANA address family, 1 = IPv4
  Bytes address;
  std::uint8_t interface_subtype = 2;  // 2 = ifIndex
  std::uint32_t interface_number = 0;
  Bytes oid;
  std::string to_string() const;
  friend bool operator==(const LldpManagementAddress&, const LldpManagementAddress&) = default;
};

struct MedCapabilities {
  std::uint16_t capabilities = 0;
  MedDeviceType device_type = MedDeviceType::NotDefined;
  friend bool operator==(const MedCapabilities&, const MedCapabilities&) = default;
};

// MED Network Policy: app<<24 | unknown<<23 | tagged<<22 | vlan<<9 | prio<<6 | dscp.
struct NetworkPolicy {
  std::uint8_t application = 1;  // 1 voice, 2 voice signalling
  bool unknown = false;
  bool tagged = true;
  std::uint16_t vlan = 0;        // 12 bits
  std::uint8_t l2_priority = 5;  // 3 bits
  std::uint8_t dscp = 46;        // 6 bits
  friend bool operator==(const NetworkPolicy&, const NetworkPolicy&) = default;
};

// MED Extended Power-via-MDI: type<<6 | source<<4 | priority, then power in 0.1 W.
struct ExtendedPower {
  std::uint8_t power_type = 0;  // 0 PSE, 1 PD
  std::uint8_t source = 1;      // PSE: 1 primary; PD: 1 PSE, 2 local, 3 both
  std::uint8_t priority = 3;    // 1 critical, 2 high, 3 low
  std::uint16_t power_dw = 0;   // tenths of a watt
  std::uint32_t power_mw() const { return std::uint32_t{power_dw} * 100; }
  friend bool operator==(const ExtendedPower&, const ExtendedPower&) = default;
};

struct MedInventory {
  std::optional<std::string> hardware_revision, firmware_revision, software_revision, serial_number, manufacturer,
      model, asset_id;
  friend bool operator==(const MedInventory&, const MedInventory&) = default;
};

struct LldpPdu {
  LldpId chassis_id;
  LldpId port_id;
  std::uint16_t ttl_s = 120;
  std::optional<std::string> port_description;              // 4
  std::optional<std::string> system_name;                   // 5
  std::optional<std::string> system_description;            // 6
  std::optional<std::uint16_t> system_capabilities;         // 7 (available, lldp_capability bits)
  std::optional<std::uint16_t> enabled_capabilities;        // 7 (enabled)
  std::vector<LldpManagementAddress> management_addresses;  // 8
  std::optional<MedCapabilities> med_capabilities;
  std::vector<NetworkPolicy> network_policies;
  std::optional<ExtendedPower> extended_power;
  MedInventory inventory;
  std::vector<RawTlv> unknown;  // other TLVs (org-specific ones keep their OUI + subtype)
  bool is_med() const { return med_capabilities.has_value(); }
  friend bool operator==(const LldpPdu&, const LldpPdu&) = default;
};

struct LldpFrame {
  MacAddress destination{kLldpMulticast};
  MacAddress source;
  std::optional<std::uint16_t> vlan_tag;
  LldpPdu pdu;
};

Result<LldpPdu, DecodeError> decode_lldp_pdu(ByteView pdu);
Result<LldpFrame, DecodeError> decode_lldp(ByteView frame);
Bytes encode_lldp_pdu(const LldpPdu& pdu);
Bytes encode_lldp(const LldpFrame& frame);

// ---------------------------------------------------------------------------------------------
// Agent: one per port.

// Sends and receives raw frames on one interface. The real one is pcap-based (make_pcap_link);
// tests use an in-memory one.
class FrameLink {
 public:
  using Receiver = std::function<void(ByteView frame)>;
  using FailureHandler = std::function<void(const std::string& why)>;
  virtual ~FrameLink() = default;
  // Starts delivering received CDP/LLDP frames to `receiver` on the io_context. False + reason on
  // failure (interface missing, no permission). `on_failure` reports a later capture error (the
  // interface went away); the link is then unusable until opened again.
  virtual bool open(Receiver receiver, FailureHandler on_failure, std::string& error) = 0;
  virtual bool send(ByteView frame) = 0;
  virtual void close() = 0;
  virtual MacAddress mac() const = 0;
};

// A libpcap link on `interface`: BPF filter for both multicast destinations, multicast
// membership, non-blocking, integrated with `io` via the selectable fd.
std::unique_ptr<FrameLink> make_pcap_link(boost::asio::io_context& io, const std::string& interface);

// Per-port settings.
struct PortSettings {
  std::string name;
  int voice_vlan = 0;  // 0 = none
  int data_vlan = 1;
  std::uint32_t max_power_mw = 30000;    // used when no PoE manager answers
  std::uint8_t lldp_power_priority = 3;  // MED: 1 critical, 2 high, 3 low
  // The phones the site file puts on this port. When there are any, only they negotiate power
  // and count as verified neighbours; otherwise the first phone after link-up is the port's phone.
  std::vector<MacAddress> phones{};
  friend bool operator==(const PortSettings&, const PortSettings&) = default;
};

// Settings shared by all ports.
struct AgentSettings {
  std::string device_id = "voiceedge";  // CDP Device-ID / LLDP system name
  std::string platform = "voiceedge";
  std::string software_version = "voiceedge";
  std::optional<std::uint32_t> management_ipv4;  // host order
  bool cdp_enabled = true;
  bool lldp_enabled = true;
  bool lldp_med = true;
  int interval_s = 60;
  int holdtime_s = 180;
  int fast_start_count = 5;
  std::chrono::milliseconds fast_start_spacing{1000};
  int med_fast_start_count = 4;  // TIA-1057 fast start after a MED endpoint appears
  std::uint8_t voice_priority = 5;
  std::uint8_t voice_dscp = 46;
  // MED network policy for voice signalling (application type 2): Cisco's CS3 / CoS 3.
  std::uint8_t signalling_priority = 3;
  std::uint8_t signalling_dscp = 24;
  std::size_t max_neighbors_per_port = 32;
  friend bool operator==(const AgentSettings&, const AgentSettings&) = default;
};

enum class Protocol { Cdp, Lldp };
std::string_view to_string(Protocol p);

struct Neighbor {
  Protocol protocol = Protocol::Cdp;
  std::string port;       // our interface
  MacAddress source;      // frame source MAC
  MacAddress phone_mac;   // from SEP<MAC> device id if present, else source
  std::string device_id;  // CDP Device-ID or LLDP system name / chassis id
  std::string platform;   // CDP platform or MED model
  std::string port_id;    // their port
  std::string software_version;
  std::uint32_t capabilities = 0;            // CDP bitmap; for LLDP the enabled system capabilities
  std::uint32_t available_capabilities = 0;  // LLDP: the system capabilities it has
  std::vector<std::string> addresses;
  std::optional<std::uint32_t> native_vlan;
  bool asked_voice_vlan = false;                    // sent a VoIP VLAN Query
  bool med_endpoint = false;                        // LLDP with LLDP-MED capabilities
  std::optional<std::uint32_t> power_requested_mw;  // highest level asked for
  std::optional<std::uint32_t> power_granted_mw;    // what we answered
  // Verified: a phone the site file puts on this port, or the port's phone (the one that
  // negotiates power). Unverified neighbours are evicted first when the table is full.
  bool verified = false;
  std::vector<NetworkPolicy> policies;  // LLDP-MED: what the endpoint says it uses
  std::string policy_warning;           // its voice policy disagrees with the port's
  std::uint16_t holdtime_s = 0;
  std::chrono::system_clock::time_point first_seen;
  std::chrono::system_clock::time_point last_seen;
  std::chrono::steady_clock::time_point expires;
};

struct Counters {
  std::uint64_t cdp_sent = 0;
  std::uint64_t cdp_received = 0;
  std::uint64_t lldp_sent = 0;
  std::uint64_t lldp_received = 0;
  std::uint64_t malformed = 0;
  std::uint64_t ignored = 0;            // other Cisco protocols on the CDP MAC, foreign frames
  std::uint64_t neighbors_dropped = 0;  // table full of verified neighbours
  std::uint64_t neighbors_evicted = 0;  // unverified neighbours pushed out by newer ones
  std::uint64_t power_refused = 0;      // power requests from a device that is not the port's phone
  std::uint64_t send_errors = 0;
  std::uint64_t voice_vlan_replies = 0;  // immediate replies to a VoIP VLAN Query
  std::uint64_t power_replies = 0;       // immediate replies to a power request
};

struct Hooks {
  // PoE manager: `requested_mw` asked on `port`, returns granted mW; nullopt (or no hook) when no
  // PoE manager runs, and the port's max_power_mw caps the grant instead.
  std::function<std::optional<std::uint32_t>(const std::string& port, std::uint32_t requested_mw)> negotiate_power;
  // PoE manager: mW allocated on `port` now.
  std::function<std::uint32_t(const std::string& port)> available_power;
  // A device (phone MAC) appeared on `port`; called before its power request is negotiated so the
  // PoE manager can name the phone.
  std::function<void(const std::string& port, const MacAddress& mac)> device_seen;
  EventSink* events = nullptr;
  std::function<std::chrono::steady_clock::time_point()> steady_now;  // default steady_clock
  std::function<std::chrono::system_clock::time_point()> wall_now;    // default system_clock
};

// Speaks CDP and LLDP-MED on one port. Lives on one io_context; not thread-safe.
class Agent {
 public:
  Agent(boost::asio::io_context& io, std::unique_ptr<FrameLink> link, PortSettings port, AgentSettings settings,
        Hooks hooks);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Opens the link and begins the fast start. If the link cannot open, retries every few seconds.
  void start();
  // Sends TTL 0 (CDP and LLDP shutdown) and stops sending; neighbours are dropped.
  void stop();
  // New settings: VLAN changes restart the fast start so phones learn them at once.
  void reconfigure(const PortSettings& port, const AgentSettings& settings);
  // Link state from the link monitor: up restarts the fast start, down clears neighbours.
  void link_changed(bool up);
  // Removes neighbours past their holdtime (also runs on a timer); returns how many expired.
  std::size_t expire_neighbors();

  const std::string& port_name() const;
  const PortSettings& port() const;
  std::vector<Neighbor> neighbors() const;
  Counters counters() const;
  bool link_open() const;
  std::string last_error() const;

  // The frames this agent would advertise now (for tests and `show`).
  Bytes build_cdp_advertisement() const;
  Bytes build_lldp_advertisement() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// All ports of a site: creates, reconfigures and removes agents.
class AgentSet {
 public:
  using LinkFactory = std::function<std::unique_ptr<FrameLink>(const std::string& port)>;
  AgentSet(boost::asio::io_context& io, LinkFactory links, Hooks hooks);
  ~AgentSet();

  // Adds agents for new ports, reconfigures kept ones, stops and removes dropped ones.
  void apply(const std::vector<PortSettings>& ports, const AgentSettings& settings);
  void stop_all();
  void link_changed(const std::string& port, bool up);

  Agent* find(const std::string& port);
  std::vector<const Agent*> agents() const;  // sorted by port name

 private:
  boost::asio::io_context& io_;
  LinkFactory links_;
  Hooks hooks_;
  AgentSettings settings_;
  std::map<std::string, std::unique_ptr<Agent>> agents_;
};

}  // namespace ve::cdp
