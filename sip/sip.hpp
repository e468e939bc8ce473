#pragma once
// voiceedge SIP: a zero-copy message parser (the codec, pure) and the registrar server.
//
// Parser shape follows Kamailio: a Message holds string_views into the buffer it was parsed from;
// the first pass only splits the start line and the header lines and classifies header names
// (long and compact forms); typed parsing of Via/Contact/CSeq/Authorization happens on request
// through the free parse_* functions. The buffer must outlive the Message.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "config/config.hpp"
#include "sip/authenticator.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace boost::asio {
class io_context;
}

namespace ve::sip {

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

enum class ParseError {
  Empty,
  TooLarge,        // message above Limits::max_message_bytes
  LineTooLong,     // a line above Limits::max_line_bytes
  TooManyHeaders,  // above Limits::max_headers
  BadStartLine,
  BadVersion,  // not SIP/2.0
  BadStatusCode,
  BadHeader,    // header line without a name or colon
  NoHeaderEnd,  // no empty line ends the headers
  BadContentLength,
  BodyTruncated,  // fewer body bytes than Content-Length
  BadUri,
  BadVia,
  BadNameAddr,
  BadCSeq,
  BadNumber,
  BadAuth,
};
std::string_view to_string(ParseError e);

struct Limits {
  std::size_t max_message_bytes = 65535;
  std::size_t max_headers = 100;
  std::size_t max_line_bytes = 8192;
};

// Header names known to the parser. Everything else is Other, never an error.
// When adding a type: the enum, the name table in message_parser.cpp, to_string().
enum class HeaderType : std::uint8_t {
  Other,
  Via,
  From,
  To,
  CallId,
  CSeq,
  Contact,
  Expires,
  MinExpires,
  MaxForwards,
  ContentLength,
  ContentType,
  Authorization,
  ProxyAuthorization,
  WwwAuthenticate,
  UserAgent,
  Server,
  Supported,
  Require,
  Reason,
  Event,
  AllowEvents,
  Allow,
  Route,
  RecordRoute,
  ReferTo,
  Date,
};
std::string_view to_string(HeaderType t);

// One header line as found: the name as written and the value with surrounding whitespace
// trimmed. A folded value still contains its CRLF+WS continuation; the typed parsers treat it as
// whitespace.
struct Header {
  HeaderType type = HeaderType::Other;
  std::string_view name;
  std::string_view value;
};

enum class Method : std::uint8_t {
  Other,
  Register,
  Invite,
  Ack,
  Bye,
  Cancel,
  Options,
  Refer,
  Subscribe,
  Notify,
  Publish,
  Message,
  Info,
  Prack,
  Update,
};
Method method_from(std::string_view token);
std::string_view to_string(Method m);

struct Message {
  std::string_view raw;  // the whole message (start line to end of body)
  bool is_request = false;
  Method method = Method::Other;
  std::string_view method_text;  // requests
  std::string_view request_uri;  // requests
  int status = 0;                // responses
  std::string_view reason;       // responses
  std::vector<Header> headers;   // in order
  std::string_view body;

  // First header of this type, or nullptr.
  const Header* find(HeaderType type) const;
  // Value of the first header of this type, or empty.
  std::string_view value(HeaderType type) const;
  std::size_t count(HeaderType type) const;
  // Header by (case-insensitive) name, for Other headers.
  const Header* find_named(std::string_view name) const;
};

// Parses one complete message (a datagram, or one frame cut by StreamFramer).
// Over UDP, bytes after Content-Length are ignored (RFC 3261 18.3).
Result<Message, ParseError> parse_message(std::string_view bytes, const Limits& limits = {});

// For a request that failed parse_message: the readable header lines, so that a 400 can still be
// built. Returns a message only if the start line is a request and Via, From, To, Call-ID and
// CSeq are all present; lines without a colon are skipped.
std::optional<Message> salvage_request(std::string_view bytes, const Limits& limits = {});

// ---- typed parsers over header values (lazy: callers ask for what they need) ----

struct Param {
  std::string_view name;
  std::string_view value;  // without quotes; empty when the parameter has no value
  bool has_value = false;
};
using Params = std::vector<Param>;
const Param* find_param(const Params& params, std::string_view name);  // case-insensitive

struct Uri {
  std::string_view scheme;  // sip, sips, tel, urn...
  std::string_view user;
  std::string_view password;
  std::string_view host;  // IPv6 keeps its brackets
  std::optional<std::uint16_t> port;
  Params params;
  std::string_view headers;  // after '?', raw
};
Result<Uri, ParseError> parse_uri(std::string_view text);

// name-addr or addr-spec with header parameters (From, To, Contact, Route...).
struct NameAddr {
  std::string_view display;  // without quotes
  std::string_view uri;      // the URI text
  Params params;             // header parameters (tag, expires, +sip.instance...)
  bool star = false;         // Contact: *
  std::string_view tag() const;
};
Result<NameAddr, ParseError> parse_name_addr(std::string_view text);

// Calls f(item) for each item of a comma-separated header value, respecting quotes and <>; items
// are trimmed, empty ones skipped (the items split_list() returns, without building a vector).
// f returns void, or bool: false stops the walk, and for_each_list_item then returns false.
template <class F>
bool for_each_list_item(std::string_view value, F&& f);
// Splits a comma-separated header value, respecting quotes and <>.
std::vector<std::string_view> split_list(std::string_view value);
// True when the message has at least one non-empty Via value (somewhere to send a response).
bool has_via_value(const Message& m);

struct Via {
  std::string_view protocol;   // "SIP/2.0"
  std::string_view transport;  // UDP, TCP, TLS...
  std::string_view host;
  std::optional<std::uint16_t> port;
  Params params;
  std::string_view branch() const;
};
Result<Via, ParseError> parse_via(std::string_view one_via);
// Every Via value of the message, in order (header by header, comma lists split).
std::vector<std::string_view> via_values(const Message& m);

struct CSeq {
  std::uint32_t number = 0;
  std::string_view method;
};
Result<CSeq, ParseError> parse_cseq(std::string_view value);

Result<std::uint32_t, ParseError> parse_uint(std::string_view value);

// The headers request_defect() checks, as it parsed them, for the handlers to reuse instead of
// parsing again (views into the message, so into its buffer). Filled only as far as the check
// got: complete when request_defect() returns nullopt.
struct RequestParts {
  std::string_view top_via_text;  // the first Via value
  Via top_via;
  NameAddr from;
  NameAddr to;
  CSeq cseq;
  std::optional<std::uint32_t> expires;       // the Expires header
  std::optional<std::uint32_t> max_forwards;  // the Max-Forwards header
  std::vector<NameAddr> contacts;             // every Contact value in order (a * has star set)
};

// What makes a parsed request unusable whatever its method (RFC 3261 8.2, RFC 4475 3.1.2, 3.3.1,
// 3.3.8): From, To, Call-ID or CSeq missing or repeated, a Via, From, To, Contact, CSeq,
// Max-Forwards or Expires that does not parse (CSeq at or above 2^31, Max-Forwards above 255),
// or a Request-URI with white space or <>. nullopt when the request is usable; the text names
// the defect for a "400 Bad Request (...)". Unknown URI schemes are not a defect (that is 416).
std::optional<std::string_view> request_defect(const Message& m);
// The same check, handing back what it parsed.
std::optional<std::string_view> request_defect(const Message& m, RequestParts& parts);

// Authorization / Proxy-Authorization: Digest credentials.
struct DigestCredentials {
  std::string_view username;
  std::string_view realm;
  std::string_view nonce;
  std::string_view uri;
  std::string_view response;
  std::string_view algorithm;
  std::string_view cnonce;
  std::string_view opaque;
  std::string_view qop;
  std::string_view nc;
};
Result<DigestCredentials, ParseError> parse_digest_credentials(std::string_view value);

// Whitespace trimmed; a folded value's CRLF+WS counts as whitespace.
std::string_view trim(std::string_view s);
// Copy with each run of whitespace (folds included) collapsed to one space, for storing.
std::string collapse_whitespace(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// TCP stream framing by Content-Length (RFC 3261 18.3): feed bytes as they arrive, take whole
// messages out. Several messages may sit in one read; one message may span reads.
class StreamFramer {
 public:
  explicit StreamFramer(Limits limits = {}) : limits_(limits) {}

  struct Frame {
    enum class Kind { Message, Ping } kind = Kind::Message;  // Ping: a CRLFCRLF keep-alive
    std::string_view bytes;                                  // valid until the next append()/consume()
  };
  enum class Error { TooLarge, BadContentLength, LineTooLong };

  void append(std::string_view bytes) { buffer_.append(bytes); }
  // The next whole frame, nothing (need more bytes) or an error (the stream cannot be resynced:
  // close it). Call consume() after handling a returned frame.
  Result<std::optional<Frame>, Error> next();
  void consume();
  std::size_t buffered() const { return buffer_.size(); }
  // The bytes not yet consumed (after an error: the offending message, to answer it with a 400).
  std::string_view data() const { return buffer_; }

 private:
  Limits limits_;
  std::string buffer_;
  std::size_t pending_ = 0;  // bytes of the frame returned by next()
};
std::string_view to_string(StreamFramer::Error e);

std::string_view trim(std::string_view s);

template <class F>
bool for_each_list_item(std::string_view value, F&& f) {
  auto emit = [&](std::string_view item) {
    item = trim(item);
    if (item.empty()) return true;
    if constexpr (std::is_same_v<decltype(f(item)), bool>) {
      return f(item);
    } else {
      f(item);
      return true;
    }
  };
  bool quoted = false;
  int angle = 0;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
      continue;
    }
    if (c == '"')
      quoted = true;
    else if (c == '<')
      ++angle;
    else if (c == '>' && angle > 0)
      --angle;
    else if (c == ',' && angle == 0) {
      if (!emit(value.substr(begin, i - begin))) return false;
      begin = i + 1;
    }
  }
  return emit(value.substr(begin));
}

// ---------------------------------------------------------------------------------------------
// Registrar server (sockets, clock, SQLite)
// ---------------------------------------------------------------------------------------------

enum class Transport { Udp, Tcp };
std::string_view to_string(Transport t);

// One registered contact, as listed by show.sip.registrations.
struct BindingInfo {
  std::string aor;       // sip:1001@realm-host
  std::string user;      // the line's user part (1001)
  std::string contact;   // the Contact URI
  std::string instance;  // +sip.instance, if any
  Transport transport = Transport::Udp;
  std::string source;  // ip:port the REGISTER came from
  std::string call_id;
  std::uint32_t cseq = 0;
  std::chrono::system_clock::time_point registered_at;
  std::chrono::system_clock::time_point expires_at;
  std::int64_t expires_in_s = 0;  // filled when listing
  std::optional<MacAddress> mac;
  std::string device_name;  // SEP...
  std::string model;
  std::string user_agent;
  std::string active_load;
  std::string inactive_load;
  std::string reason_name;  // Reason: Name=
  // SRST: the upstream that accepted this binding (the box keeps a copy), empty when the box
  // registered the phone itself.
  std::string registered_with;
};

struct ServerCounters {
  std::uint64_t received = 0;
  std::uint64_t malformed_dropped = 0;   // unparseable and no response possible
  std::uint64_t malformed_answered = 0;  // answered 400
  std::uint64_t responses_ignored = 0;   // we are not a proxy: responses are dropped
  std::uint64_t registers = 0;
  std::uint64_t challenges = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t tcp_accepted = 0;
  std::uint64_t tcp_rejected = 0;  // per-source or total limit
  std::uint64_t tcp_idle_closed = 0;
  // Digest (see AuthCounters): stale or unknown nonces, replays (nonce from another address, nc
  // not increasing, uri not the Request-URI), requests refused while a source or user is
  // blocked, and blocks imposed.
  std::uint64_t auth_stale = 0;
  std::uint64_t auth_replays = 0;
  std::uint64_t auth_blocked = 0;
  std::uint64_t auth_blocks = 0;
  std::uint64_t bindings_replaced = 0;     // oldest binding of a line replaced at the cap
  std::uint64_t udp_contacts_trimmed = 0;  // 200 OKs over UDP that listed fewer bindings to fit
  std::uint64_t unverified_events = 0;     // phone events sent marked unverified
};

// One call through the proxy (an INVITE and, once answered, its dialog), as listed by
// show.calls and kept as a call detail record.
struct CallInfo {
  std::string call_id;
  std::string from;         // caller's line (From user)
  std::string to;           // dialled number (Request-URI user)
  std::string answered_by;  // the line that answered (differs from `to` after forwarding)
  std::string state;        // ringing, answered, ended
  std::chrono::system_clock::time_point started;
  std::optional<std::chrono::system_clock::time_point> answered;
  std::optional<std::chrono::system_clock::time_point> ended;
  int final_code = 0;    // the final response to the INVITE (200 when answered)
  std::string reason;    // its reason phrase, or why the box ended it
  std::string ended_by;  // caller, callee or box
  Transport caller_transport = Transport::Udp;
  Transport callee_transport = Transport::Udp;
};

// Calls by outcome, for /metrics.
struct CallCounters {
  std::uint64_t attempts = 0;         // INVITEs that passed authentication
  std::uint64_t answered = 0;         // 2xx
  std::uint64_t busy = 0;             // 486 / 600
  std::uint64_t no_answer = 0;        // 408 after the ring timeout
  std::uint64_t cancelled = 0;        // 487 after the caller's CANCEL
  std::uint64_t not_found = 0;        // 404
  std::uint64_t unavailable = 0;      // 480
  std::uint64_t failed_other = 0;     // any other final failure
  std::uint64_t auth_challenges = 0;  // 407 sent
  std::uint64_t auth_failures = 0;    // 403 sent
  std::uint64_t relay_denied = 0;     // requests for another domain / unknown dialog
  std::uint64_t forwarded = 0;        // calls retargeted by forward.*
};

// SRST (sip.upstream), as listed by show.sip.upstream: one cluster member's probe state.
struct UpstreamInfo {
  std::string name;
  std::string address;  // udp:10.10.200.1:5060
  std::string state;    // unknown, up, down
  std::chrono::system_clock::time_point since;
  std::optional<std::chrono::system_clock::time_point> last_probe;
  std::optional<std::chrono::system_clock::time_point> last_answer;
  std::optional<std::chrono::milliseconds> rtt;
  int last_status = 0;
  int misses = 0;
  bool usable = false;  // REGISTERs may go to it (up, and answered for rehome_after_s)
  std::optional<std::chrono::system_clock::time_point> answering_since;
};

struct ModeChange {
  std::chrono::system_clock::time_point at;
  std::string from;
  std::string to;
  std::string why;
};

// The box's mode: local (no sip.upstream), upstream or survivable, with its upstreams.
struct UpstreamOverview {
  std::string mode;
  std::chrono::system_clock::time_point since;
  std::string active;  // the upstream REGISTERs and calls go to now, if any
  std::vector<UpstreamInfo> upstreams;
  std::vector<ModeChange> changes;  // most recent last
  int probe_interval_s = 0;
  int probe_failures = 0;
  int rehome_after_s = 0;
};

struct ServerOptions {
  std::chrono::seconds tcp_idle_timeout{300};  // Cisco phones re-REGISTER every ~115 s
  std::size_t tcp_max_connections = 4096;
  std::size_t tcp_max_per_source = 16;
  AuthPolicy auth{};
  // Largest response sent over UDP (RFC 3261 18.1.1: 1300 bytes when the path MTU is unknown).
  // Over TCP the full answer is sent.
  std::size_t udp_max_response = 1300;
  // The MAC holding the DHCP lease of an address, if known (Kea): evidence that a request comes
  // from the phone that owns a line even before it authenticates.
  std::function<std::optional<MacAddress>(const std::string& ip)> lease_mac;
  std::chrono::seconds expiry_sweep{1};
  bool persist = true;  // SQLite in state_dir
  // RFC 3261 timer base values (17.1.1.1); tests shorten them.
  std::chrono::milliseconds t1{500};
  std::chrono::milliseconds t2{4000};
  std::chrono::milliseconds t4{5000};
  std::size_t call_history = 200;  // ended calls kept in memory for show.calls
  Limits limits{};
};

struct ServiceControlRequest;  // sip/phone_control.hpp
struct ServiceControlSent;
struct ServiceControlResult;

class Server {
 public:
  Server(boost::asio::io_context& io, config::SiteConfigPtr config, EventSink& events, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the store, loads persisted bindings, binds every sip.listen endpoint.
  // Errors (port in use, unwritable state dir) come back as text.
  Result<void, std::string> start();
  void stop();
  // New site file: new users/passwords/expiry limits apply to the next request. Listeners are
  // re-bound only if sip.listen changed. Bindings are kept.
  void reconfigure(const config::SiteConfigPtr& config);
  // Reload in two steps: binds the sockets a changed sip.listen needs (unchanged endpoints keep
  // theirs) without touching the live ones; an error (port taken) leaves everything as it was.
  // reconfigure() then swaps them in; abandon_reconfigure() closes them instead.
  Result<void, std::string> prepare_reconfigure(const config::SiteConfigPtr& config);
  void abandon_reconfigure();

  std::vector<BindingInfo> registrations() const;
  ServerCounters counters() const;
  std::vector<CallInfo> calls() const;
  CallCounters call_counters() const;
  UpstreamOverview upstream() const;
  // Bound local ports (useful with port 0 in tests): first UDP, first TCP.
  std::uint16_t udp_port() const;
  std::uint16_t tcp_port() const;
  // Phone control (sip/phone_control.hpp): a service-control NOTIFY over the phone's registered
  // flow. Error text when the phone has no binding; else what was sent, and `done` once with the
  // phone's final response or the timeout (64*T1), on the io_context.
  Result<ServiceControlSent, std::string> service_control(const ServiceControlRequest& req,
                                                          std::function<void(const ServiceControlResult&)> done);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ve::sip
