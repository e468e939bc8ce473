#pragma once
// The site file: one YAML file per branch, loaded into an immutable, validated SiteConfig.
// Keys and defaults: docs/config.md. Every error carries FILE:LINE:COL.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ve/ipv4.hpp"
#include "ve/mac.hpp"
#include "ve/result.hpp"

namespace ve::config {

// A password. Prints as *** so that a stray format call cannot leak it.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }
  friend std::ostream& operator<<(std::ostream& os, const Secret&) { return os << "***"; }
  friend bool operator==(const Secret&, const Secret&) = default;

 private:
  std::string value_;
};

struct Ipv4 {
  std::uint32_t value = 0;  // host byte order
  static std::optional<Ipv4> parse(std::string_view text);
  std::string to_string() const;
  friend auto operator<=>(const Ipv4&, const Ipv4&) = default;
};

struct Ipv4Prefix {
  Ipv4 network;
  int length = 0;
  bool contains(Ipv4 a) const;
  std::uint32_t mask() const { return prefix_mask(length); }
  std::string to_string() const;
};

// "udp:0.0.0.0:5060", "0.0.0.0:69", "127.0.0.1:8080"
struct Endpoint {
  std::string transport;  // "udp", "tcp" or empty where the key implies it
  std::string host;       // literal IPv4 address
  std::uint16_t port = 0;
  std::string to_string() const;
};

struct SiteInfo {
  std::string name = "voiceedge";
  std::string timezone = "UTC";
  std::string locale = "English_United_States";
};

struct ControlConfig {
  std::string socket = "/run/voiceedge/control.sock";
  std::optional<Endpoint> http;  // status page; absent = off
  // Control socket roles (checked with SO_PEERCRED; root and the daemon's user are always
  // admins). A group name or a numeric GID; "" = nobody else.
  std::string read_group = "voiceedge";         // may run show commands
  std::string admin_group = "voiceedge-admin";  // may also change things (power, reload)
};

enum class PoeMode { Auto, Off, Static };
enum class PoePriority { Critical, High, Low };

struct PortPoe {
  PoeMode mode = PoeMode::Auto;
  PoePriority priority = PoePriority::Low;
  double max_watts = 30.0;
};

struct Port {
  std::string name;
  int voice_vlan = 0;  // 0 = none
  int data_vlan = 1;
  PortPoe poe;
};

struct CdpConfig {
  bool enabled = true;
  int interval_s = 60;
  int holdtime_s = 180;
  int fast_start_count = 5;
};

struct LldpConfig {
  bool enabled = true;
  bool med = true;
  int voice_priority = 5;  // L2 priority in the voice network policy
  int voice_dscp = 46;
};

struct PoeSimPort {
  int power_class = 0;  // 0-8, as classified
  double draw_watts = 0;
  bool connected = true;
  int domain = 0;  // PSE power domain (sim_pse)
};

// The sim PSE behaving like a kernel 6.17 PSE with its own priorities and per-domain budget.
struct PoeSimPse {
  int prio_max = 0;                // 0 = no priority support (the manager budgets)
  double domain_budget_watts = 0;  // every domain's budget; 0 = unlimited
};

struct PoeConfig {
  std::string driver = "sim";  // sim | linux-pse
  double budget_watts = 370;
  std::map<std::string, PoeSimPort> sim;  // by port name
  PoeSimPse sim_pse;
};

struct KeaConfig {
  bool manage = true;
  std::string binary = "/usr/sbin/kea-dhcp4";
  std::string hook_library = "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_voiceedge.so";
  std::string event_socket = "/run/voiceedge/kea-events.sock";  // the hook reports leases here
  int valid_lifetime_s = 3600;
  // Receive buffer of each of Kea's raw sockets (the hook sets it; 0 = the kernel's default,
  // net.core.rmem_default): room for a boot storm's burst of DISCOVERs (receive_buffer.hpp).
  int socket_receive_buffer_kib = 2048;
};

struct Subnet {
  int vlan = 0;
  std::string interface;
  Ipv4Prefix prefix;
  Ipv4 pool_first;
  Ipv4 pool_last;
  Ipv4 router;
  std::vector<Ipv4> dns;
  std::vector<Ipv4> tftp_servers;  // option 150 in this order; option 66 = the first
};

struct PhoneMatch {
  std::vector<std::string> vendor_class_prefixes{"Cisco Systems, Inc. IP Phone"};
  std::vector<std::string> ouis;  // normalised "00:11:22"
};

struct DhcpConfig {
  KeaConfig kea;
  std::vector<Subnet> subnets;
  PhoneMatch phone_match;
};

struct CallManager {
  std::string name;
  std::string host;
  std::uint16_t sip_port = 5060;
  int priority = 0;
};

struct TftpConfig {
  Endpoint listen{"udp", "0.0.0.0", 69};
  int max_transfers = 1000;
  int max_per_client = 16;
};

struct HttpConfig {
  Endpoint listen{"tcp", "0.0.0.0", 6970};
  int max_connections = 1000;
};

// Who may fetch a phone's generated SEP<MAC>.cnf.xml (it carries the line passwords).
// Lease: only the address DHCP leased to that MAC, or the phone's `ip:` binding. Open: anyone.
enum class ConfigAccess { Lease, Open };

struct ProvisioningConfig {
  std::string root = "/var/lib/voiceedge/tftp";
  TftpConfig tftp;
  HttpConfig http;
  bool secure = false;
  std::vector<CallManager> call_manager_group;  // sorted by priority
  std::string default_load;
  bool auto_register = false;
  ConfigAccess config_access = ConfigAccess::Lease;
};

// One member of the central cluster (sip.upstream).
struct Upstream {
  std::string name;
  std::string host;  // literal IPv4 address
  std::uint16_t port = 5060;
  std::string transport = "udp";  // udp | tcp
};

// How the box decides that the cluster is gone and back (sip.survivability).
struct Survivability {
  int probe_interval_s = 30;  // OPTIONS to each upstream this often
  int probe_failures = 3;     // misses in a row before an upstream is down
  int rehome_after_s = 120;   // an upstream must answer this long before phones go back to it
};

struct SipConfig {
  std::vector<Endpoint> listen{{"udp", "0.0.0.0", 5060}, {"tcp", "0.0.0.0", 5060}};
  std::string realm = "voiceedge";
  int default_expires_s = 3600;
  int min_expires_s = 60;
  int max_expires_s = 7200;
  // Calls: how long the proxy lets phones ring before answering 408 (Timer C).
  int ring_timeout_s = 180;
  int max_bindings_per_line = 10;  // a new binding beyond it replaces the line's oldest
  // SRST: the central call-control cluster the box fronts, tried in this order. Empty: the box is
  // the call control (no probing, no survivable mode).
  std::vector<Upstream> upstream;
  Survivability survivability;
};

enum class NetMode { None, Bridge, Subinterface };

struct NetConfig {
  NetMode mode = NetMode::Bridge;
  std::string bridge = "ve-br0";
  std::string uplink;  // subinterface mode: the interface carrying the tagged VLANs
};

// Call forwarding of one line, applied by the SIP proxy (the box retargets itself; no 302).
struct LineForward {
  std::string all;        // every call goes here instead
  std::string busy;       // when every phone of the line answers busy (486/600)
  std::string no_answer;  // when none answers within no_answer_s
  int no_answer_s = 20;
};

// Per-phone packet capture and reports (diag/): the boot recorder's bounds.
struct DiagnosticsConfig {
  int boot_capture_per_phone_kib = 256;  // one phone's most recent boot, oldest packets cut first
  int boot_capture_total_mib = 64;       // all phones together
  int boot_timeout_s = 300;              // a boot not registered by then has given up (failed)
};

struct Line {
  int button = 1;
  std::string extension;
  std::string display;
  std::string auth_user;
  Secret password;
  LineForward forward{};
};

struct Phone {
  MacAddress mac;
  std::string model;
  std::string description;
  std::string load;  // empty = provisioning.default_load
  std::string port;  // optional: the port it is plugged into
  std::vector<Line> lines;
  std::optional<Ipv4> ip;  // static address allowed to fetch this phone's config (no lease needed)
};

struct ConfigError;  // below; a vector of it may be declared before it is complete (C++17)

struct SiteConfig {
  std::filesystem::path source;  // the file it was loaded from
  SiteInfo site;
  std::string state_dir = "/var/lib/voiceedge";
  ControlConfig control;
  std::vector<Port> ports;
  CdpConfig cdp;
  LldpConfig lldp;
  PoeConfig poe;
  DhcpConfig dhcp;
  ProvisioningConfig provisioning;
  SipConfig sip;
  NetConfig net;
  DiagnosticsConfig diagnostics;
  std::vector<Phone> phones;
  // Legal but risky settings (--check-config prints them, the daemon logs them at load).
  std::vector<ConfigError> warnings;

  const Phone* find_phone(const MacAddress& mac) const;
  const Port* find_port(const std::string& name) const;
  // The line whose auth_user (or extension) is `user`, with its phone.
  std::pair<const Phone*, const Line*> find_line(const std::string& user) const;
};

using SiteConfigPtr = std::shared_ptr<const SiteConfig>;

struct ConfigError {
  std::string file;
  int line = 0;          // 1-based; 0 when no position is known
  int column = 0;        // 1-based
  std::string key_path;  // e.g. "ports[0].voice_vlan"
  std::string message;
  // FILE:LINE:COL: message
  std::string to_string() const;
};

using LoadResult = Result<SiteConfigPtr, std::vector<ConfigError>>;

// Reads and validates a site file. All errors are returned at once.
LoadResult load_file(const std::filesystem::path& path);
// Same, from text (for tests); `name` is used in error messages.
LoadResult load_string(const std::string& yaml, const std::string& name = "<string>");

// The config as JSON for `show config`: every password is "***".
nlohmann::json to_json(const SiteConfig& config);

std::string_view to_string(PoeMode m);
std::string_view to_string(PoePriority p);
std::string_view to_string(NetMode m);
std::string_view to_string(ConfigAccess a);

}  // namespace ve::config
