#pragma once
// net/: the voice VLAN data plane and the link monitor.
//
// Three layers, each usable alone:
//  - the reconciler (pure): `plan(wanted, present, features) -> Plan` compares what the site file
//    wants with what the kernel has and returns only the difference, plus per-port issues;
//  - the programmer (libnl-route): reads the kernel's state into `Present`, probes what the kernel
//    supports, applies a plan's actions;
//  - the link monitor (rtnetlink RTNLGRP_LINK on a Boost.Asio io_context): up/down, carrier,
//    rename, removal, late-appearing links.
// `Manager` ties them together for the daemon: reconcile on start, reload and link events; keep a
// per-port status for `show.interfaces`.
//
// Ownership: every link voiceedge creates carries IFLA_IFALIAS "voiceedge". Only such links are
// ever deleted or have their VLANs/addresses removed; anything else is only added to.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "ve/result.hpp"

namespace ve::net {

inline constexpr std::string_view kOwnerAlias = "voiceedge";
inline constexpr std::size_t kMaxIfNameLen = 15;  // IFNAMSIZ - 1

enum class Mode { None, Bridge, Subinterface };
std::string_view to_string(Mode m);

// What the running kernel can do, found by probing (see Programmer::probe_features).
struct KernelFeatures {
  bool bridge = false;                 // can create a Linux bridge at all
  bool bridge_vlan_filtering = false;  // IFLA_BR_VLAN_FILTERING accepted
  bool vlan_8021q = false;             // "vlan" link kind (8021q) available
};

// An IPv4 address with prefix length; address in host byte order.
struct Ipv4Cidr {
  std::uint32_t address = 0;
  int prefix_len = 0;
  std::string to_string() const;
  friend bool operator==(const Ipv4Cidr&, const Ipv4Cidr&) = default;
};

// ---- what the site file wants -------------------------------------------------------------

struct WantedPort {
  std::string name;
  int pvid = 1;        // data VLAN: untagged on the port
  int voice_vlan = 0;  // tagged on the port; 0 = none
};

struct WantedVlanInterface {
  std::string name;    // e.g. "ve-br0.100" or "eth1.100"
  std::string parent;  // the bridge (bridge mode) or the port/uplink (subinterface mode)
  int vid = 0;
  std::optional<Ipv4Cidr> address;  // the subnet's router address
};

struct Wanted {
  Mode mode = Mode::None;
  std::string bridge;  // bridge mode only
  std::vector<WantedPort> ports;
  std::vector<WantedVlanInterface> vlan_interfaces;
};

// The site file's view: ports, subnets and the `net:` keys become a Wanted topology.
Wanted wanted_from_config(const config::SiteConfig& config);
// Where a subnet's router address lives (and where Kea, TFTP, HTTP and SIP should listen) in the
// configured mode: "ve-br0.100" in bridge mode, "eth1.100" or "eth1" in subinterface mode, the
// subnet's own `interface` in mode none.
std::string service_interface(const config::SiteConfig& config, const config::Subnet& subnet);
// "<parent>.<vid>", shortening the parent so that the result fits IFNAMSIZ.
std::string vlan_interface_name(std::string_view parent, int vid);

// ---- what the kernel has ------------------------------------------------------------------

struct BridgeVlan {
  int vid = 0;
  bool pvid = false;
  bool untagged = false;
  friend bool operator==(const BridgeVlan&, const BridgeVlan&) = default;
};

struct PresentLink {
  int ifindex = 0;
  std::string name;
  std::string kind;   // "bridge", "vlan", "veth", ... empty for plain hardware
  std::string alias;  // IFLA_IFALIAS; kOwnerAlias marks ours
  int master = 0;     // ifindex of the bridge it is a port of, 0 = none
  int parent = 0;     // IFLA_LINK: the lower device of a stacked link (VLAN); 0 for veth/none
  int vlan_id = 0;    // VLAN links only
  bool admin_up = false;
  bool carrier = false;
  bool vlan_filtering = false;  // bridges only
  bool owned() const { return alias == kOwnerAlias; }
};

struct Present {
  std::vector<PresentLink> links;
  std::map<int, std::vector<BridgeVlan>> bridge_vlans;  // by ifindex (ports and bridge itself)
  std::map<int, std::vector<Ipv4Cidr>> addresses;       // IPv4 only, by ifindex
  const PresentLink* find(std::string_view name) const;
  const PresentLink* find(int ifindex) const;
};

// ---- the difference -----------------------------------------------------------------------

enum class ActionKind {
  CreateBridge,         // name; VLAN filtering on, default PVID 0, alias "voiceedge"
  EnableVlanFiltering,  // name (a bridge)
  SetMaster,            // name -> peer (bridge)
  ReleaseMaster,        // name
  AddBridgeVlan,        // name, vid, pvid, untagged, self (the bridge device itself)
  DelBridgeVlan,        // name, vid, self
  CreateVlanLink,       // name on peer (parent), vid; alias "voiceedge"
  AddAddress,           // name, address
  DelAddress,           // name, address
  SetUp,                // name
  DeleteLink,           // name (only ever one of ours)
};
std::string_view to_string(ActionKind k);

struct Action {
  ActionKind kind = ActionKind::SetUp;
  std::string name;
  std::string peer;
  int vid = 0;
  bool pvid = false;
  bool untagged = false;
  bool self = false;
  Ipv4Cidr address;
  friend bool operator==(const Action&, const Action&) = default;
};
// One line for logs and show.interfaces: "add vlan 100 tagged on eth1".
std::string describe(const Action& a);

enum class IssueKind { Unsupported, Absent, Conflict, Failed };
std::string_view to_string(IssueKind k);

struct Issue {
  std::string subject;  // a port name or a VLAN interface name
  IssueKind kind = IssueKind::Failed;
  std::string message;
};

struct Plan {
  std::vector<Action> actions;  // in the order they must be applied
  std::vector<Issue> issues;
  bool empty() const { return actions.empty(); }
};

// The reconciler. Pure: same inputs, same plan. Already right -> no actions. Links without the
// voiceedge alias are never deleted, released or stripped of VLANs or addresses.
Plan plan(const Wanted& wanted, const Present& present, const KernelFeatures& features);

// ---- bridge VLAN attributes (IFLA_AF_SPEC of AF_BRIDGE link messages) ---------------------

enum class VlanSpecError { Truncated, BadLength, BadVid, UnterminatedRange };
std::string_view to_string(VlanSpecError e);

// Decodes the payload of IFLA_AF_SPEC: IFLA_BRIDGE_VLAN_INFO entries (ranges expanded); other
// attributes are skipped. Bounds-checked; never reads past `spec`.
Result<std::vector<BridgeVlan>, VlanSpecError> decode_vlan_spec(std::span<const std::byte> spec);
// Encodes the payload of IFLA_AF_SPEC for one VLAN: IFLA_BRIDGE_FLAGS (SELF when `self`) and one
// IFLA_BRIDGE_VLAN_INFO.
std::vector<std::byte> encode_vlan_spec(const BridgeVlan& vlan, bool self);

// ---- the programmer (libnl-route) ---------------------------------------------------------

struct NetError {
  std::string what;  // the operation, e.g. "add vlan 100 tagged on eth1"
  int code = 0;      // errno (positive) when known
  std::string message;
  std::string to_string() const;
};

class Programmer {
 public:
  // Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
  static Result<std::unique_ptr<Programmer>, NetError> open();
  ~Programmer();
  Programmer(const Programmer&) = delete;
  Programmer& operator=(const Programmer&) = delete;

  // Creates and deletes a short-lived probe bridge (and a VLAN link on it) to learn what the
  // kernel supports. Leaves nothing behind.
  KernelFeatures probe_features();
  Result<Present, NetError> read_present();
  Result<void, NetError> apply(const Action& action);
  // Link speed in Mb/s via ethtool, if the driver reports one.
  std::optional<int> speed_mbps(const std::string& ifname);

 private:
  struct Impl;
  explicit Programmer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- the link monitor ---------------------------------------------------------------------

struct LinkEvent {
  enum class Type { Added, Changed, Removed };
  Type type = Type::Changed;
  int ifindex = 0;
  std::string name;
  std::string old_name;  // set when the link was renamed
  bool admin_up = false;
  bool carrier = false;
  bool up() const { return admin_up && carrier; }
};

class LinkMonitor {
 public:
  using Handler = std::function<void(const LinkEvent&)>;
  // Subscribes to RTNLGRP_LINK on `io` and takes a first snapshot; `on_event` is then called on
  // the io_context for every change seen after that (not for the initial links).
  // `receive_buffer` sizes the socket (SO_RCVBUF); tests shrink it to provoke an overflow.
  static Result<std::unique_ptr<LinkMonitor>, NetError> start(boost::asio::io_context& io, Handler on_event,
                                                              int receive_buffer = 1 << 20);
  ~LinkMonitor();
  LinkMonitor(const LinkMonitor&) = delete;
  LinkMonitor& operator=(const LinkMonitor&) = delete;

  // The current table, by ifindex.
  std::vector<LinkEvent> links() const;
  std::optional<LinkEvent> find(const std::string& name) const;
  std::uint64_t messages_seen() const;
  std::uint64_t resyncs() const;  // after socket overflow (ENOBUFS) the table is re-read
  void stop();

 private:
  struct Impl;
  explicit LinkMonitor(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// ---- the manager (what the daemon runs) ---------------------------------------------------

struct PortStatus {
  std::string name;
  bool present = false;
  bool admin_up = false;
  bool carrier = false;
  std::optional<int> speed_mbps;
  int pvid = 0;            // wanted data VLAN
  int voice_vlan = 0;      // wanted voice VLAN
  std::string state;       // "ok", "unsupported", "absent", "conflict", "error", "unmanaged"
  std::string programmed;  // what the kernel has now for this port, e.g. "ve-br0: 10 pvid untagged, 100 tagged"
  std::string error;       // the last issue or failure, empty when none
};

class Manager {
 public:
  struct Options {
    std::chrono::milliseconds reconcile_delay{100};  // debounce for link appear/rename events
  };
  using LinkListener = std::function<void(const std::string& port, bool up)>;

  Manager(boost::asio::io_context& io, config::SiteConfigPtr config, LinkListener on_link, Options options);
  Manager(boost::asio::io_context& io, config::SiteConfigPtr config, LinkListener on_link)
      : Manager(io, std::move(config), std::move(on_link), Options{}) {}
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Probes the kernel, reconciles once and starts the link monitor.
  Result<void, NetError> start();
  void reconfigure(config::SiteConfigPtr config);
  void stop();

  // Reads the kernel, plans and applies (repeating while the kernel converges); returns the
  // actions applied. Safe to call any time on the io thread.
  std::vector<Action> reconcile();

  const KernelFeatures& features() const;
  // Where `subnet`'s router address lives now: net::service_interface() when this kernel can
  // program the configured mode, the subnet's own `interface` otherwise (untagged operation).
  std::string service_interface(const config::Subnet& subnet) const;
  std::vector<PortStatus> ports() const;
  nlohmann::json status_json() const;  // the `data` of show.interfaces
  std::uint64_t reconciles() const;
  std::uint64_t actions_applied() const;  // since construction; a restart onto a right kernel adds 0

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ve::net
