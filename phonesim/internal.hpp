#pragma once
// Private to phonesim/: the socket-owning pieces of the simulator. Everything runs on one
// io_context thread; coroutines (boost::asio::awaitable) keep each phone's boot readable as the
// sequence of steps it is. No exceptions cross the I/O path: every operation uses
// redirect_error and returns a value.
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including <utility>

#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <nlohmann/json.hpp>

#include "cdp/cdp.hpp"
#include "phonesim/phonesim.hpp"
#include "sip/sip.hpp"

struct pcap;
struct nl_sock;

namespace ve::phonesim::detail {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Completion token: no exceptions, the error lands in `ec`.
inline auto token(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// Calls `on_expire` once after `after` unless destroyed first. Used to cancel a socket operation
// that would otherwise wait forever (Boost 1.74 has no awaitable operators).
class Watchdog {
 public:
  Watchdog(const asio::any_io_executor& ex, Clock::duration after, std::function<void()> on_expire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  bool fired() const { return *fired_; }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<bool> fired_ = std::make_shared<bool>(false);
};

// ---------------------------------------------------------------------------------------------
// One pcap handle on the phones' interface: CDP frames and DHCP replies in, any frame out.

class RawLink {
 public:
  using Receiver = std::function<void(ByteView frame)>;
  explicit RawLink(asio::io_context& io) : descriptor_(io) {}
  ~RawLink() { close(); }
  RawLink(const RawLink&) = delete;
  RawLink& operator=(const RawLink&) = delete;

  bool open(const std::string& interface, Receiver receiver, std::string& error);
  bool send(ByteView frame);
  void close();
  std::uint64_t received() const { return received_; }
  std::uint64_t send_errors() const { return send_errors_; }

 private:
  void wait();
  void on_readable();
  asio::posix::stream_descriptor descriptor_;
  pcap* pcap_ = nullptr;
  Receiver receiver_;
  bool open_ = false;
  std::uint64_t received_ = 0;
  std::uint64_t send_errors_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The leased addresses on the interface (rtnetlink through libnl-route), so that kernel TCP/UDP
// sockets can bind to each phone's own address. Removed again on destruction unless kept.

class AddressTable {
 public:
  AddressTable() = default;
  ~AddressTable();
  AddressTable(const AddressTable&) = delete;
  AddressTable& operator=(const AddressTable&) = delete;

  Result<void, std::string> open(const std::string& interface);
  // Adds ip/32 (owned: removed later) or finds it already there (not owned).
  Result<void, std::string> add(std::uint32_t ip);
  // A link-scope route to the leased subnet through the interface, unless one exists.
  Result<void, std::string> ensure_route(std::uint32_t network, int prefix);
  void remove_all();
  void keep(bool k) { keep_ = k; }
  std::size_t added() const { return owned_addresses_.size(); }

 private:
  nl_sock* sock_ = nullptr;
  int ifindex_ = 0;
  std::string interface_;
  std::vector<std::uint32_t> owned_addresses_;
  std::vector<std::pair<std::uint32_t, int>> owned_routes_;
  std::vector<std::pair<std::uint32_t, int>> known_routes_;
  bool keep_ = false;
};

// ---------------------------------------------------------------------------------------------
// The voice VLAN interface (<interface>.<vlan>, rtnetlink) a tagging phone sends through: the
// kernel adds the 802.1Q tag. Deleted on destruction when we created it, unless kept.

class VlanLink {
 public:
  VlanLink() = default;
  ~VlanLink();
  VlanLink(const VlanLink&) = delete;
  VlanLink& operator=(const VlanLink&) = delete;

  // Creates (or adopts an existing) 802.1Q link for `vid` on `parent` and sets it up.
  Result<void, std::string> open(const std::string& parent, int vid);
  void remove();
  void keep(bool k) { keep_ = k; }
  const std::string& name() const { return name_; }
  int vid() const { return vid_; }
  bool is_open() const { return vid_ != 0; }

 private:
  nl_sock* sock_ = nullptr;
  std::string name_;
  int vid_ = 0;
  bool owned_ = false;
  bool keep_ = false;
};

// "eth0.100"; the parent is shortened so that the name fits IFNAMSIZ.
std::string vlan_link_name(const std::string& parent, int vid);

// ---------------------------------------------------------------------------------------------
// Provisioning downloads: HTTP 6970 first, TFTP per file when HTTP cannot be reached.

enum class FetchStatus { Ok, NotFound, Error, Unreachable };

struct FetchResult {
  FetchStatus status = FetchStatus::Unreachable;
  std::string body;
  std::string via;     // "http 10.10.100.1:6970" / "tftp 10.10.100.1"
  std::string detail;  // why it failed, for the record
};

struct FetchSettings {
  FetchTransport transport = FetchTransport::Auto;
  std::chrono::seconds timeout{10};
  std::size_t max_bytes = std::size_t{256} << 20;
  std::uint16_t http_port = 6970;
  std::uint16_t tftp_port = 69;
  std::uint16_t tftp_windowsize = 1;  // > 1: ask for RFC 7440 windowsize
  std::string user_agent;
};

class FileClient {
 public:
  FileClient(asio::any_io_executor ex, std::uint32_t local_ip, std::vector<std::uint32_t> servers,
             FetchSettings settings);
  ~FileClient();
  asio::awaitable<FetchResult> fetch(std::string name);

 private:
  asio::awaitable<FetchResult> http_get(std::uint32_t server, const std::string& name);
  asio::awaitable<FetchResult> tftp_get(std::uint32_t server, const std::string& name);
  asio::any_io_executor ex_;
  std::uint32_t local_ip_;
  std::vector<std::uint32_t> servers_;
  FetchSettings settings_;
  std::size_t current_ = 0;                  // the server that answered last
  std::map<std::uint32_t, bool> http_dead_;  // HTTP connect failed: TFTP only from now on
  std::optional<boost::beast::tcp_stream> http_;
  std::uint32_t http_server_ = 0;
};

// ---------------------------------------------------------------------------------------------
// SIP over TCP to one call manager.

struct SipResponse {
  int status = 0;
  std::string reason;
  std::string www_authenticate;
  std::string contact_expires;   // expires= of our Contact in a 200, or the Expires header
  std::string message;           // the whole final response, to parse for what a call needs
  std::vector<int> provisional;  // 1xx seen before it, in order
};

// One TCP connection to the call manager, shared by the phone's transactions and by the requests
// the box sends the phone. A single reader per connection takes every message off the stream:
// responses go to the transaction that waits for them (Call-ID, CSeq number and method), requests
// (INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY...) to the request handler. Writes are queued so that
// a response sent while a transaction is in flight never interleaves with its bytes.
class SipConnection {
 public:
  using RequestHandler = std::function<void(std::string message)>;
  SipConnection(asio::any_io_executor ex, std::uint32_t local_ip) : ex_(std::move(ex)), local_ip_(local_ip) {}
  ~SipConnection() { close(); }
  SipConnection(const SipConnection&) = delete;
  SipConnection& operator=(const SipConnection&) = delete;

  void on_request(RequestHandler handler) { on_request_ = std::move(handler); }
  // Empty string on success, else why not. Starts the reader.
  asio::awaitable<std::string> connect(std::uint32_t host, std::uint16_t port, std::chrono::seconds timeout);
  // Sends `request` and waits for the final response with this Call-ID, CSeq number and method.
  // `timeout` runs until the first response; after a provisional one the wait goes on up to
  // kProceedingLimit (a phone ringing: the proxy's no-answer timer ends it with a 408).
  asio::awaitable<Result<SipResponse, std::string>> transact(std::string request, std::string call_id,
                                                             std::uint32_t cseq, std::string method,
                                                             std::chrono::seconds timeout);
  // Queues a message that expects no response of its own (responses, ACK). Dropped when closed.
  void send(std::string message);
  bool is_open() const { return socket_ && socket_->is_open(); }
  std::uint16_t local_port() const { return local_port_; }
  void close();

  static constexpr std::chrono::seconds kProceedingLimit{180};

 private:
  struct Waiter {
    std::string call_id;
    std::uint32_t cseq = 0;
    std::string method;
    std::vector<int> provisional;
    std::optional<Result<SipResponse, std::string>> outcome;
    asio::steady_timer* wake = nullptr;
  };
  asio::awaitable<void> read_loop(std::uint64_t generation);
  asio::awaitable<void> write_loop(std::uint64_t generation);
  void dispatch(std::string_view frame);
  // The stream is unusable: every waiting transaction gets `why`.
  void fail(const std::string& why);

  asio::any_io_executor ex_;
  std::uint32_t local_ip_;
  std::optional<asio::ip::tcp::socket> socket_;
  std::uint16_t local_port_ = 0;
  std::uint64_t generation_ = 0;  // bumped by close(): a reader or writer of an old socket stops
  sip::StreamFramer framer_;
  std::vector<Waiter*> waiters_;
  std::deque<std::string> outbox_;
  bool writing_ = false;
  RequestHandler on_request_;
};

// ---------------------------------------------------------------------------------------------
// The simulator's state every phone sees, and one simulated phone.

class Phone;

struct Shared {
  Shared(asio::io_context& io_in, const Options& options_in, RawLink& link_in, AddressTable& addresses_in)
      : io(io_in), options(options_in), link(link_in), addresses(addresses_in) {}
  asio::io_context& io;
  const Options& options;
  RawLink& link;
  AddressTable& addresses;
  std::mt19937_64 rng{std::random_device{}()};
  bool kernel_has_8021q = false;
  // Where DHCP frames go and leased addresses live: `link`/`addresses`, or, once the phones tag
  // (--tag-voice-vlan), the voice VLAN interface's. `ip_interface` names it for messages.
  RawLink* ip_link = &link;
  AddressTable* ip_addresses = &addresses;
  std::string ip_interface = options.interface;
  // --tag-voice-vlan: switch DHCP and IP traffic to <interface>.<vlan> (idempotent per VLAN).
  std::function<Result<void, std::string>(int vlan)> join_voice_vlan;
  Clock::time_point start = Clock::now();
  bool stopping = false;  // the hold is over: refresh loops end
  // The switch's CDP, as last heard; phones in step 3 wait for a frame newer than their query.
  std::uint64_t cdp_seq = 0;
  std::optional<cdp::CdpFrame> last_cdp;
  std::vector<Phone*> cdp_waiters;
  std::uint64_t malformed_frames = 0;
  std::uint64_t foreign_dhcp = 0;  // replies for MACs that are not ours
  std::function<void(const Phone&)> on_boot_done;
  // A service-control NOTIFY was handled (answered, or ignored with --ignore-notify) and, when
  // answered, the restart or reset it asked for is over: one JSON object for the output.
  std::function<void(const nlohmann::json&)> on_control;
};

// The phone's registration state for one line, kept for refreshes.
struct LineState {
  std::string name;
  std::string auth_name;
  std::string auth_password;
  std::string call_id;
  std::string from_tag;
  std::uint32_t cseq = 0;
  std::optional<DigestChallenge> challenge;
  std::uint32_t nonce_count = 0;
  std::uint32_t expires_s = 3600;
};

class Phone {
 public:
  Phone(Shared& shared, MacAddress mac);
  Phone(const Phone&) = delete;
  Phone& operator=(const Phone&) = delete;

  // Steps 1-14, in order; ends registered or with the failed step named.
  asio::awaitable<void> boot();
  // While the simulator holds: re-REGISTER every interval (reconnecting by priority if needed).
  asio::awaitable<void> keep_registered();

  // --call: once registered, call that extension, talk, hang up (recorded in result().calls).
  asio::awaitable<void> place_call();
  // Closes the call manager connection (the run is over).
  void hang_up_line();

  void on_dhcp(DhcpServerMessage m);
  void wake();  // something this phone may be waiting for happened
  const PhoneResult& result() const { return result_; }
  const MacAddress& mac() const { return mac_; }

 private:
  enum class RegisterOutcome { Registered, Rejected, Unreachable };

  asio::awaitable<bool> wait_until(Clock::time_point t);  // true: woken, false: time passed
  void record(Step step, StepOutcome outcome, std::string detail, Clock::time_point began);
  bool out_of_time(Step step);

  asio::awaitable<bool> step_cdp();
  asio::awaitable<bool> step_dhcp();
  asio::awaitable<bool> step_files();
  asio::awaitable<bool> step_load();
  asio::awaitable<void> step_optional(Step step, std::string name, std::string what);
  asio::awaitable<bool> step_register();
  asio::awaitable<bool> renew_lease();
  asio::awaitable<bool> refresh_registration();
  asio::awaitable<void> steps_after_registration();
  asio::awaitable<std::pair<RegisterOutcome, std::string>> register_line(LineState& line, const CallManagerEntry& cm,
                                                                         std::uint32_t cm_host);
  asio::awaitable<std::pair<RegisterOutcome, std::string>> register_all(const CallManagerEntry& cm,
                                                                        std::uint32_t cm_host);
  // A file the boot cannot go on without: retried while no server answers, until the deadline.
  asio::awaitable<FetchResult> fetch_required(const std::string& name);
  asio::awaitable<void> sleep_until(Clock::time_point t);
  // A sleep on its own timer: coroutines that run beside keep_registered() use this, not signal_.
  asio::awaitable<void> pause(Clock::duration d);

  // Requests from the box on the call manager connection (answering side of a call).
  struct IncomingCall {
    std::string invite;  // the INVITE as received, re-parsed to build each response
    std::string to_tag;
    std::size_t record = 0;  // index into result_.calls
    Clock::time_point began{};
    int final_sent = 0;  // status of the final response sent, 0: still ringing
    // Rings until --answer-after-ms; cancelled by a CANCEL or the end of the run. Shared with the
    // answering coroutine, which outlives the entry when the call is erased first.
    std::shared_ptr<asio::steady_timer> ring;
  };
  void on_sip_request(std::string message);
  // Event: service-control (Cisco's restart/reset from the call manager): answers it and leaves
  // the action for keep_registered() to carry out.
  void on_service_control(const sip::Message& m, const std::function<void(int, std::string)>& reply);
  // action=restart: fetch the config files again and register anew; action=reset: the whole boot.
  asio::awaitable<void> carry_out_control();
  std::string control_action_;  // pending: restart | reset
  bool rebooting_ = false;      // a reset's boot: the simulator already has this phone's result
  nlohmann::json control_event_;
  void on_invite(const sip::Message& m, std::string message);
  asio::awaitable<void> answer_later(std::string call_id, std::shared_ptr<asio::steady_timer> ring);
  void send_final(IncomingCall& call, int status, std::string reason);
  std::string contact_uri() const;
  std::map<std::string, IncomingCall> incoming_;  // by Call-ID
  std::string cnonce();
  std::string random_hex(int digits);

  Shared& shared_;
  MacAddress mac_;
  PhoneResult result_;
  asio::steady_timer signal_;
  std::vector<DhcpServerMessage> dhcp_inbox_;
  Clock::time_point start_{};
  Clock::time_point deadline_{};
  std::uint32_t ip_ = 0;
  std::uint32_t lease_s_ = 0;
  Clock::time_point leased_at_{};
  std::vector<std::uint32_t> tftp_servers_;
  std::unique_ptr<FileClient> files_;
  PhoneConfig config_;
  std::vector<LineState> lines_;
  std::unique_ptr<SipConnection> sip_;
  std::string contact_user_;
  std::optional<CallManagerEntry> registered_cm_;
  std::uint32_t registered_cm_host_ = 0;
};

// Rendering of the run's summary (report.cpp).
nlohmann::json summary_json(const std::vector<const PhoneResult*>& results, int phones,
                            std::chrono::milliseconds elapsed, bool held, bool interrupted, const std::string& tagging);
std::string summary_text(const nlohmann::json& summary);
nlohmann::json calls_json(const std::vector<CallRecord>& calls);

}  // namespace ve::phonesim::detail
