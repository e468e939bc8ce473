#pragma once
// dhcp/'s pure vocabulary (ve_dhcp_codec), shared by the daemon (ve_dhcp) and the Kea hooks library
// (kea-hooks/, libdhcp_voiceedge.so): which clients are phones, which options a phone gets (150 =
// ordered TFTP list, 66 = the first server), the lease-report datagram the hook sends to the
// daemon, and Kea's memfile lease file.
//
// Everything here is pure (no sockets, clocks, logging, Kea headers): the fuzz build compiles it.
#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "ve/ipv4.hpp"
#include "ve/mac.hpp"
#include "ve/result.hpp"

namespace ve::dhcp {

inline constexpr std::uint8_t kOptionTftpServerName = 66;  // text, one server
inline constexpr std::uint8_t kOptionTftpServers = 150;    // Cisco: list of IPv4 addresses
inline constexpr std::uint8_t kOptionPrl = 55;
inline constexpr std::uint8_t kOptionVendorClass = 60;
inline constexpr std::uint8_t kOptionHostname = 12;

// Why a client counts as a phone (or not).
enum class PhoneReason { NotPhone, VendorClass, Oui, Listed };
std::string_view to_string(PhoneReason r);

// The phone_match rules and the listed phones, compiled once per (re)load of the site file.
class PhoneMatcher {
 public:
  PhoneMatcher(const config::PhoneMatch& match, const std::vector<config::Phone>& phones);

  // `vendor_class` is option 60 as received (any bytes, any length). A listed MAC wins over an
  // OUI, an OUI over the vendor class, so the report says the strongest reason.
  PhoneReason classify(const std::optional<MacAddress>& mac, std::span<const std::uint8_t> vendor_class) const;

  std::size_t oui_count() const { return ouis_.size(); }

 private:
  std::vector<std::string> prefixes_;
  std::vector<Oui> ouis_;
  std::vector<MacAddress> listed_;  // sorted, for binary search
};

// Option 55 (Parameter Request List): the set of option codes a client asked for.
class RequestedOptions {
 public:
  RequestedOptions() = default;
  // Every byte is a code; any length is accepted (a PRL longer than 255 codes repeats codes).
  static RequestedOptions parse(std::span<const std::uint8_t> prl);
  bool contains(std::uint8_t code) const { return codes_.test(code); }
  std::size_t size() const { return codes_.count(); }

 private:
  std::bitset<256> codes_;
};

// What the hook adds to a response. Empty for non-phones.
struct PhoneOptions {
  std::vector<std::uint32_t> tftp_servers;      // option 150, in site-file order (host byte order)
  std::optional<std::string> tftp_server_name;  // option 66, dotted quad of the first server
  bool empty() const { return tftp_servers.empty() && !tftp_server_name; }
};

// The rule: phones get 150 and 66 when they asked for them in option 55; a phone listed in
// `phones:` always gets 150. Nothing without a subnet or without tftp_servers.
PhoneOptions build_phone_options(PhoneReason reason, const RequestedOptions& requested, const config::Subnet* subnet);

// Option 150's payload: 4 bytes per address, network order.
std::vector<std::uint8_t> encode_option150(std::span<const std::uint32_t> servers);

// The site subnet Kea chose, matched by network and length ("10.10.100.0/24").
const config::Subnet* find_subnet(const std::vector<config::Subnet>& subnets, std::uint32_t network, int length);
// The site subnet an address belongs to (fallback when Kea's choice is unknown).
const config::Subnet* find_subnet_containing(const std::vector<config::Subnet>& subnets, std::uint32_t address);

// Address text is ve/ipv4.hpp's (format_ipv4, parse_ipv4, parse_ipv4_prefix), like every folder's.

// Client-supplied text made safe to store and print: printable ASCII kept, everything else '?',
// cut at `max_len` bytes.
std::string printable(std::span<const std::uint8_t> bytes, std::size_t max_len = 255);
std::string printable(std::string_view text, std::size_t max_len = 255);

// ---- Lease reports: hook -> daemon, one JSON object per unix datagram -------------------------

enum class LeaseEventKind { Offer, Ack, Release, Decline, Expire };
std::string_view to_string(LeaseEventKind k);
std::optional<LeaseEventKind> parse_lease_event_kind(std::string_view text);

struct LeaseReport {
  LeaseEventKind kind = LeaseEventKind::Ack;
  MacAddress mac;
  std::uint32_t ip = 0;      // host order
  std::string subnet;        // "10.10.100.0/24", empty if unknown
  std::string hostname;      // option 12 or the lease's hostname, printable()
  std::string vendor_class;  // option 60, printable()
  PhoneReason phone = PhoneReason::NotPhone;
  std::uint32_t lifetime_s = 0;  // 0 when not known (release, expire)
  // When Kea answered (unix ms; 0 = unknown): the daemon may read the report later than the
  // phone acts on the answer, and the timeline must keep the real order.
  std::uint64_t time_ms = 0;
};

inline constexpr std::size_t kMaxReportBytes = 2048;

enum class ReportError { Empty, TooLarge, NotJson, NotObject, BadVersion, MissingField, BadField };
std::string_view to_string(ReportError e);

std::string encode_lease_report(const LeaseReport& report);
Result<LeaseReport, ReportError> decode_lease_report(std::span<const std::uint8_t> datagram);

// ---- Kea's memfile (CSV) lease file: the daemon's lease table reads it at start and for lost reports

struct MemfileLease {
  std::uint32_t ip = 0;
  MacAddress mac;
  std::uint32_t valid_lifetime_s = 0;  // 0: released
  std::int64_t expire = 0;             // unix time
  std::string hostname;
  int state = 0;  // 0 default, 1 declined, 2 expired-reclaimed
};

// Parses Kea's lease4 CSV (header row names the columns). Later rows for an address replace
// earlier ones, as in Kea; malformed rows are skipped. Result in address order.
std::vector<MemfileLease> parse_memfile_leases(std::string_view csv);

}  // namespace ve::dhcp
