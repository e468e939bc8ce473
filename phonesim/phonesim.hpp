#pragma once
// voiceedge-phonesim: N simulated Cisco IP phones on one interface, each walking the 14 boot steps
// of shared/docs/phone-boot-sequence.md against a real voiceedge box (CDP, DHCP with raw frames
// and the phone's own MAC, HTTP 6970 / TFTP downloads in a real phone's order, TCP + REGISTER
// with digest).
//
// Two libraries:
//   ve_phonesim_codec  pure builders/parsers: DHCP client frames, SIP digest and REGISTER,
//                      the phone config XML (libxml2), .loads lists. No sockets, clocks, logging.
//   ve_phonesim        the simulator: one io_context, one pcap handle demultiplexed by MAC,
//                      bounded boots in flight, results as text or JSON lines.
#include <array>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ve/ipv4.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace ve::sip {
struct Message;
}

namespace ve::phonesim {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// ---------------------------------------------------------------------------------------------
// DHCP client codec (RFC 2131/2132): whole Ethernet + IPv4 + UDP frames, as a phone sends them.
// Addresses are host byte order.

enum class DhcpMessageType : std::uint8_t {
  Discover = 1,
  Offer = 2,
  Request = 3,
  Decline = 4,
  Ack = 5,
  Nak = 6,
  Release = 7,
  Inform = 8,
};
std::string_view to_string(DhcpMessageType t);

inline constexpr std::uint8_t kOptionSubnetMask = 1;
inline constexpr std::uint8_t kOptionRouter = 3;
inline constexpr std::uint8_t kOptionDns = 6;
inline constexpr std::uint8_t kOptionHostname = 12;
inline constexpr std::uint8_t kOptionDomainName = 15;
inline constexpr std::uint8_t kOptionNtp = 42;
inline constexpr std::uint8_t kOptionRequestedIp = 50;
inline constexpr std::uint8_t kOptionLeaseTime = 51;
inline constexpr std::uint8_t kOptionMessageType = 53;
inline constexpr std::uint8_t kOptionServerId = 54;
inline constexpr std::uint8_t kOptionPrl = 55;
inline constexpr std::uint8_t kOptionMessage = 56;
inline constexpr std::uint8_t kOptionVendorClass = 60;
inline constexpr std::uint8_t kOptionClientId = 61;
inline constexpr std::uint8_t kOptionTftpServerName = 66;
inline constexpr std::uint8_t kOptionTftpServers = 150;

// What a Cisco phone puts in option 55: subnet, router, DNS, domain, NTP, 66 and 150.
inline constexpr std::array<std::uint8_t, 7> kCiscoPhonePrl{1, 3, 6, 15, 42, 66, 150};

// "Cisco Systems, Inc. IP Phone CP-7841": the vendor class Kea and our hook match on.
std::string vendor_class_for(std::string_view model);

struct DhcpClientMessage {
  DhcpMessageType type = DhcpMessageType::Discover;
  MacAddress mac;  // chaddr, client id and the frame's source MAC
  std::uint32_t xid = 0;
  std::uint16_t secs = 0;
  bool broadcast = true;     // the phone has no address yet: ask for broadcast replies
  std::uint32_t ciaddr = 0;  // renewing: the leased address (also the frame's source IP)
  std::string vendor_class;
  std::vector<std::uint8_t> parameter_list{kCiscoPhonePrl.begin(), kCiscoPhonePrl.end()};
  std::optional<std::uint32_t> requested_ip;  // option 50 (REQUEST after an OFFER)
  std::optional<std::uint32_t> server_id;     // option 54 (REQUEST after an OFFER)
  std::string hostname;                       // option 12, omitted when empty
};

// The BOOTP/DHCP payload alone.
Bytes encode_dhcp_message(const DhcpClientMessage& m);
// Ethernet (src = m.mac, dst broadcast) + IPv4 (ciaddr, else 0.0.0.0 -> 255.255.255.255) + UDP 68 -> 67.
Bytes encode_dhcp_frame(const DhcpClientMessage& m);

enum class DhcpError {
  Truncated,        // shorter than a header, or a length points past the end
  NotIpv4Udp,       // not an IPv4/UDP frame
  NotToClientPort,  // UDP destination is not 68
  BadIpHeader,      // IHL, total length or header checksum wrong
  NotBootReply,     // op is not BOOTREPLY or htype/hlen are not Ethernet
  BadMagicCookie,
  BadOption,      // an option runs past the end or has a wrong length for its code
  NoMessageType,  // option 53 missing
};
std::string_view to_string(DhcpError e);

struct DhcpServerMessage {
  DhcpMessageType type = DhcpMessageType::Offer;
  std::uint32_t xid = 0;
  MacAddress chaddr;
  std::uint32_t yiaddr = 0;
  std::uint32_t siaddr = 0;
  std::optional<std::uint32_t> server_id;
  std::optional<std::uint32_t> subnet_mask;
  std::vector<std::uint32_t> routers;
  std::vector<std::uint32_t> dns;
  std::optional<std::uint32_t> lease_time_s;
  std::vector<std::uint32_t> tftp_servers;      // option 150, in order
  std::optional<std::string> tftp_server_name;  // option 66
  std::optional<std::string> message;           // option 56 (NAK reason)
  std::size_t option_count = 0;
};

Result<DhcpServerMessage, DhcpError> decode_dhcp_message(ByteView bootp);
// Accepts an optional 802.1Q tag; the UDP destination must be port 68.
Result<DhcpServerMessage, DhcpError> decode_dhcp_frame(ByteView frame);

// RFC 1071 ones' complement sum, as used by the IPv4 and UDP checksums.
std::uint16_t internet_checksum(ByteView data, std::uint32_t initial = 0);

// Address text: the project's one parser and printer (ve/ipv4.hpp).
using ve::parse_ipv4;
inline std::string ipv4_to_string(std::uint32_t host_order) { return format_ipv4(host_order); }
// 255.255.255.0 -> 24; nullopt for a non-contiguous mask.
inline std::optional<int> prefix_length(std::uint32_t mask) { return prefix_length_of(mask); }

// ---------------------------------------------------------------------------------------------
// SIP client codec: digest (RFC 2617, MD5, qop=auth or none) and a Cisco-shaped REGISTER.

std::string md5_hex(std::string_view data);

struct DigestChallenge {
  std::string realm;
  std::string nonce;
  std::string opaque;
  std::string algorithm;  // empty = MD5
  std::vector<std::string> qop_options;
  bool stale = false;
};
// A WWW-Authenticate (or Proxy-Authenticate) value: Digest realm="...", nonce="...", ...
Result<DigestChallenge, std::string> parse_digest_challenge(std::string_view value);

struct DigestInput {
  std::string username;
  std::string password;
  std::string method;  // REGISTER
  std::string uri;     // the Request-URI
  std::string cnonce;
  std::uint32_t nonce_count = 1;
};
// The hex response; with qop=auth when the challenge offers it (nc/cnonce used), else RFC 2069.
// Empty when the challenge asks for an algorithm other than MD5.
std::string digest_response(const DigestChallenge& c, const DigestInput& in);
// The whole Authorization header value (Digest username=..., response=...).
std::string authorization_value(const DigestChallenge& c, const DigestInput& in);

struct RegisterParams {
  std::string registrar_host;  // Request-URI and AoR host (the call manager's address)
  std::uint16_t registrar_port = 5060;
  std::string user;  // the line's name (extension), or the device name without a line
  std::string local_ip;
  std::uint16_t local_port = 0;
  MacAddress mac;
  std::string model;         // CP-7841
  std::string model_code;    // +u.sip!model.ccm.cisco.com, omitted when empty
  std::string user_agent;    // Cisco-CP7841/14.2.1
  std::string contact_user;  // the per-device UUID
  std::string call_id;
  std::string from_tag;
  std::string branch;
  std::uint32_t cseq = 1;
  std::uint32_t expires_s = 3600;
  std::string active_load;
  std::string inactive_load;
  std::string authorization;  // Authorization header value, omitted when empty
};
std::string build_register(const RegisterParams& p);

// Cisco's "+u.sip!model" codes we know from captures (8851 = 684); empty when unknown.
std::string cisco_model_code(std::string_view model);
// "Cisco-CP7841/14.2.1" from the model and the running load (sip78xx.14-2-1-0001-14).
std::string user_agent_for(std::string_view model, std::string_view load);

// ---------------------------------------------------------------------------------------------
// SIP calls as a phone makes them: requests (INVITE with SDP, ACK, BYE) and the answers to the
// requests a phone receives (RFC 3261 8.2.6, 12.1.1). Pure: the caller supplies tags and branches.

// An SDP offer/answer for one PCMU audio stream (RFC 4566); no media is sent.
std::string build_sdp(std::string_view user, std::string_view ip, std::uint16_t rtp_port, std::uint64_t session_id);

struct RequestParams {
  std::string method;  // INVITE, ACK, BYE
  std::string request_uri;
  std::string local_ip;  // Via sent-by (TCP)
  std::uint16_t local_port = 0;
  std::string branch;
  std::string from;  // whole From value with its tag: <sip:1001@10.10.100.1>;tag=...
  std::string to;    // whole To value (with the remote tag inside a dialog)
  std::string call_id;
  std::uint32_t cseq = 1;
  std::vector<std::string> route;   // Route values in order (the route set), none when empty
  std::string contact;              // Contact URI (without <>), omitted when empty
  std::string user_agent;           // omitted when empty
  std::string authorization;        // Authorization value, omitted when empty
  std::string proxy_authorization;  // Proxy-Authorization value, omitted when empty
  std::string sdp;                  // application/sdp body, none when empty
};
std::string build_request(const RequestParams& p);

struct ResponseParams {
  int status = 200;
  std::string reason = "OK";
  std::string to_tag;         // added to To when the request's To has no tag
  std::string contact;        // Contact URI (without <>), omitted when empty
  bool record_route = false;  // copy the request's Record-Route (responses that make a dialog)
  std::string user_agent;     // Server header, omitted when empty
  std::string extra_headers;  // whole lines, each ending in CRLF
  std::string sdp;            // application/sdp body, none when empty
};
// A response to `request`: its Vias, From, To, Call-ID and CSeq copied (RFC 3261 8.2.6.2).
std::string build_response(const sip::Message& request, const ResponseParams& p);

// The route set of a dialog (RFC 3261 12.1): the Record-Route values of `m` in order (UAS, from
// the request) or reversed (UAC, from the 2xx). Empty without Record-Route.
std::vector<std::string> route_set_of(const sip::Message& m, bool uac);
// The URI of the first Contact of `m` (the remote target of a dialog), or empty.
std::string contact_uri_of(const sip::Message& m);
// The user part of a From/To value's URI ("1001" of "Desk 1" <sip:1001@host>;tag=x), or empty.
std::string user_of(std::string_view name_addr);

// ---------------------------------------------------------------------------------------------
// Phone configuration files (SEP<MAC>.cnf.xml / XMLDefault.cnf.xml) and load lists.

struct CallManagerEntry {
  int priority = 0;
  std::string name;
  std::string host;  // processNodeName
  std::uint16_t sip_port = 5060;
};

struct LineConfig {
  int button = 1;
  std::string name;  // extension
  std::string display_name;
  std::string auth_name;
  std::string auth_password;  // a secret: never printed
};

struct PhoneConfig {
  std::string root;                             // "device" or "Default"
  std::vector<CallManagerEntry> call_managers;  // sorted by priority (stable)
  std::string load_information;
  std::vector<LineConfig> lines;
  std::string user_locale;
  std::string network_locale;
  std::string dial_template;
  std::string softkey_file;
  std::optional<int> register_expires_s;  // sipStack/timerRegisterExpires
  std::optional<int> transport;           // transportLayerProtocol (1 = TCP)
  std::string version_stamp;
};
Result<PhoneConfig, std::string> parse_phone_config(std::string_view xml);

// A <load>.loads file: one file name per line ('#' starts a comment), or an XML image list
// whose elements carry the names in a `name`/`file` attribute. Names are returned in order.
std::vector<std::string> parse_loads_file(std::string_view text);

// File names a phone of `model` asks for (protocol-notes.md "Names").
std::string locale_jar_for(std::string_view model);  // sp-sip.jar (78xx), sl-be-sip.jar (88xx)
std::string ring_list_for(std::string_view model);   // Ringlist-wb.xml (78xx/88xx) or Ringlist.xml

// ---------------------------------------------------------------------------------------------
// Results

// ok: done. expected: not found, as on a non-secure site (CTL/ITL). missing: an optional file is
// absent (recorded, not fatal). failed: the phone cannot go on. skipped: not attempted.
enum class StepOutcome { Ok, Expected, Missing, Failed, Skipped };
std::string_view to_string(StepOutcome o);

struct StepRecord {
  Step step = Step::Power;
  StepOutcome outcome = StepOutcome::Ok;
  std::string detail;
  std::chrono::milliseconds at{0};  // since this phone's boot began
  std::chrono::milliseconds took{0};
};

// One call the phone placed or answered.
enum class CallDirection { Placed, Received };
std::string_view to_string(CallDirection d);

struct CallRecord {
  CallDirection direction = CallDirection::Placed;
  std::string peer;  // the other line's extension
  std::string call_id;
  int final_code = 0;                              // the INVITE's final response; 0: none (see detail)
  std::string reason;                              // its reason phrase, or why there was none
  bool ringing = false;                            // a 180/183 came (placed) or was sent (received)
  bool answered = false;                           // 2xx and ACK: the call was up
  std::string ended_by;                            // who hung up or refused (486/600/603): caller, callee
  int bye_code = 0;                                // placed: the answer to our BYE (0: none)
  std::optional<std::chrono::milliseconds> setup;  // INVITE to its final response
  std::string detail;                              // what went wrong, for the record
};

struct PhoneResult {
  MacAddress mac;
  std::string model;
  std::string ip;
  std::optional<int> voice_vlan;
  std::string config_file;         // SEP….cnf.xml or XMLDefault.cnf.xml
  std::string registered_with;     // host:port of the call manager
  std::vector<std::string> lines;  // registered line names
  std::string active_load;
  std::string inactive_load;
  bool registered = false;
  int reached_step = 0;
  std::optional<std::chrono::milliseconds> time_to_registered;  // from this phone's boot start
  std::chrono::milliseconds started_at{0};                      // since the simulator started
  std::optional<Step> failed_step;
  std::string failure;
  std::vector<StepRecord> steps;
  int refresh_ok = 0;
  int refresh_failed = 0;
  int lease_renewed = 0;  // DHCP renewals answered with an ACK while holding
  int lease_renew_failed = 0;
  bool registered_at_end = false;
  std::vector<CallRecord> calls;  // in the order they began
};

// ---------------------------------------------------------------------------------------------
// The simulator

enum class FetchTransport { Auto, Http, Tftp };

struct Options {
  std::string interface;
  int phones = 1;
  MacAddress first_mac{std::array<std::uint8_t, 6>{0x00, 0x1e, 0x7a, 0x00, 0x00, 0x01}};
  std::string model = "CP-7841";
  std::string load;           // the phone's own running load; empty = whatever its config names
  std::string inactive_load;  // reported in the REGISTER Reason header
  std::optional<int> expect_vlan;
  // As a Cisco phone: once CDP names a voice VLAN, DHCP and all IP traffic go 802.1Q-tagged over
  // <interface>.<vlan> (created by the simulator; needs the kernel's 8021q), CDP stays untagged.
  bool tag_voice_vlan = false;
  int concurrency = 100;              // boots in flight
  std::chrono::seconds timeout{120};  // per phone, whole boot
  std::chrono::seconds cdp_timeout{15};
  std::chrono::seconds dhcp_timeout{60};
  std::chrono::seconds fetch_timeout{10};  // per file
  std::chrono::seconds sip_timeout{10};    // per request
  FetchTransport transport = FetchTransport::Auto;
  std::uint16_t tftp_windowsize = 1;  // RFC 7440 window asked for over TFTP (1: lockstep, no option)
  std::uint32_t power_request_mw = 6300;
  std::chrono::seconds hold{0};                 // keep registrations refreshed this long after the last boot
  std::chrono::seconds refresh{0};              // re-REGISTER interval while holding; 0 = expires/2
  bool keep_addresses = false;                  // leave the leased addresses on the interface at exit
  std::string call;                             // extension to call once registered; empty: no call
  std::chrono::milliseconds call_after{1000};   // after the registration
  std::chrono::seconds call_seconds{2};         // talk time before the BYE
  std::chrono::milliseconds answer_after{300};  // ringing time of an incoming call
  bool busy = false;                            // answer incoming calls 486 Busy Here
  bool ignore_notify = false;                   // leave service-control NOTIFYs unanswered (a hung phone)
  bool json = false;
  bool verbose = false;
};

// Runs the whole simulation; writes one result per phone (as each boot ends) and a summary to
// `out`, diagnostics to `err`. Returns the exit status: 0 all registered, 1 any phone failed,
// 2 the simulator itself could not run (interface, permissions).
int run(const Options& options, std::ostream& out, std::ostream& err);

// Rendering (also used by tests).
std::string result_line(const PhoneResult& r, bool verbose);
std::string result_json(const PhoneResult& r);
// "call placed to 1002: 200 OK in 40 ms, ringing, hung up by the caller, BYE 200".
std::string call_line(const CallRecord& c);
// A placed call that went the whole way: 2xx, then our BYE answered 200.
bool call_completed(const CallRecord& c);

}  // namespace ve::phonesim
