#pragma once
// Calls between the branch's phones: an RFC 3261 section 16 transaction-stateful proxy (not a
// B2BUA: media flows phone to phone). It authenticates callers with proxy digest, looks the
// called line up in the location store, forks to every registered contact, Record-Routes so the
// dialog's requests come back through the box, and keeps the full UDP transaction layer
// (section 17: timers A-K, 100 Trying, CANCEL, hop-by-hop ACK for non-2xx).
//
// The proxy knows no sockets: it sends through a Wire (the transports in the server, a recorder
// in tests) and keeps time with asio timers on the io_context it is given.
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sip/authenticator.hpp"
#include "sip/digest.hpp"
#include "sip/location_store.hpp"
#include "sip/registrar.hpp"

namespace ve::sip {

class UpstreamMonitor;
class FlowTokens;

// Where a message goes. For a phone registered over TCP, ip:port is its flow (the connection it
// registered on, found by its remote address) and contact_* is where to connect when that flow is
// gone.
struct Destination {
  Transport transport = Transport::Udp;
  std::string ip;
  std::uint16_t port = 0;
  std::string contact_ip;
  std::uint16_t contact_port = 0;
};

class Wire {
 public:
  virtual ~Wire() = default;
  virtual void send(const Destination& to, const std::string& bytes) = 0;
  // Our "ip:port" as seen by a peer at `peer_ip` over `t` (for Via and Record-Route).
  virtual std::string local_address(Transport t, const std::string& peer_ip) const = 0;
  // Is host:port one of our listening addresses (a Route or Request-URI that means us)?
  virtual bool is_local(std::string_view host, std::uint16_t port) const = 0;
};

class Proxy {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  Proxy(
      boost::asio::io_context& io, config::SiteConfigPtr config, LocationStore& store, EventSink& events,
      ServerOptions options, Wire& wire, Authenticator& auth,
      Now now = [] { return std::chrono::system_clock::now(); });
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Should the proxy, rather than the registrar, handle this parsed message? Every response,
  // every call-related method, and requests addressed to a line or carrying a Route.
  bool wants(const Message& m) const;
  // Handles a parsed message that wants() took; answers and forwards through the Wire.
  void handle(const Message& m, const Source& src);
  void set_config(config::SiteConfigPtr config);
  // SRST (sip.upstream): the probe state deciding between relaying to the cluster and serving
  // the phones locally, and the key of the Path flow tokens. Without it the box is the call control.
  void set_upstream(const UpstreamMonitor* upstream, const FlowTokens* tokens) {
    upstream_ = upstream;
    tokens_ = tokens;
  }
  // In upstream mode: is this REGISTER for the cluster (not a Cisco keep-alive to the box)?
  bool relays_register(const Message& m) const;
  // Called with each call that ended (for the call detail records).
  void on_call_ended(std::function<void(const CallInfo&)> fn) { on_call_ended_ = std::move(fn); }

  // Active calls first, then the most recent ended ones (newest first).
  std::vector<CallInfo> calls() const;
  // Ended calls from before a restart (newest first), for calls().
  void set_history(std::vector<CallInfo> ended);
  const CallCounters& counters() const { return counters_; }
  std::size_t transactions() const;

 private:
  struct ServerTx;
  struct ClientTx;
  struct Call;
  struct Timer;

  void on_request(const Message& m, const Source& src);
  void on_response(const Message& m, const Source& src);
  void on_cancel(const Message& m, const Source& src, const std::string& invite_key);
  void on_ack(const Message& m, const Source& src, const std::string& invite_key);
  bool authenticate(const std::shared_ptr<ServerTx>& tx, const Message& req);
  void route_in_dialog(const Message& m, const Source& src, const std::shared_ptr<ServerTx>& tx);
  void start_target(const std::shared_ptr<ServerTx>& tx, const std::string& extension, bool first);
  void add_branch(const std::shared_ptr<ServerTx>& tx, const Message& req, const Destination& to,
                  std::string_view target_uri, const std::string& user, bool record_route);
  std::string forward_request(const Message& req, std::string_view target_uri, const std::string& via,
                              const std::string& record_route, bool keep_credentials = false) const;
  std::string record_route(const Source& in, const Destination& out) const;
  bool is_our_route(std::string_view route) const;
  void branch_final(const std::shared_ptr<ClientTx>& ctx, int status, std::string forwarded);
  void maybe_finish(const std::shared_ptr<ServerTx>& tx);
  void cancel_branches(const std::shared_ptr<ServerTx>& tx, bool superseded);
  void cancel_branch(const std::shared_ptr<ClientTx>& ctx);
  void answer(const std::shared_ptr<ServerTx>& tx, int code, std::string_view reason, const std::string& extra = {});
  void send_final(const std::shared_ptr<ServerTx>& tx, int status, std::string bytes);
  void send_provisional(const std::shared_ptr<ServerTx>& tx, std::string bytes);
  void retransmit_final(ServerTx* tx);
  void retransmit_request(ClientTx* ctx);
  void terminate_server(const std::string& key);
  void terminate_client(const std::string& key);
  std::shared_ptr<ClientTx> new_client(const std::shared_ptr<ServerTx>& tx, const Destination& to, std::string branch,
                                       const std::string& user);
  void start_client(const std::shared_ptr<ServerTx>& tx, const std::shared_ptr<ClientTx>& ctx,
                    std::string_view method_text);
  void send_client(const std::shared_ptr<ClientTx>& ctx);
  void client_timeout(ClientTx* ctx);
  void ring_timeout(ClientTx* ctx);
  void no_answer(ServerTx* tx);
  void reply_stateless(const Message& m, const Source& src, int code, std::string_view reason,
                       const std::string& extra = {});

  // SRST (proxy_upstream section of proxy.cpp).
  const config::Upstream* upstream_at(std::string_view host, std::uint16_t port) const;
  bool from_upstream(const Source& src) const;
  // A request from the cluster along a Path the box inserted: true when handled here.
  bool relay_along_path(const std::shared_ptr<ServerTx>& tx, const Message& req, const Source& src);
  // Upstream mode: an out-of-dialog request of a phone goes to the cluster, unauthenticated here.
  bool relay_upstream(const std::shared_ptr<ServerTx>& tx, const Message& req);
  // In-dialog: the next Route after ours is an upstream; nullopt when it is not.
  std::optional<Destination> upstream_next_hop(const Message& m) const;
  std::string upstream_record_route(const Source& in, const Destination& out) const;
  void add_prepared_branch(const std::shared_ptr<ServerTx>& tx, const Destination& to, std::string branch,
                           std::string bytes, const std::string& user);
  void upstream_register_answered(const ClientTx& ctx, const Message& resp);

  // Calls: an INVITE's record, its dialog once answered.
  void call_answered(const std::shared_ptr<ServerTx>& tx, const std::shared_ptr<ClientTx>& ctx, const Message& resp);
  void call_ended(const std::string& call_id, int code, std::string reason, std::string side);
  void report_call(const Call& c, const std::string& user, bool placed, Outcome outcome, const std::string& detail);

  std::pair<const config::Phone*, const config::Line*> line_by_user(const std::string& user) const;
  std::pair<const config::Phone*, const config::Line*> line_by_extension(const std::string& ext) const;
  std::vector<BindingInfo> bindings_of(const config::Line& line) const;
  bool is_our_domain(std::string_view host, std::optional<std::uint16_t> port) const;
  std::string make_branch(const Message& m);
  std::string to_tag(const Message& m) const;
  std::vector<BindingInfo> all_bindings() const { return store_.all(); }
  std::chrono::milliseconds t1() const { return options_.t1; }

  boost::asio::io_context& io_;
  config::SiteConfigPtr config_;
  LocationStore& store_;
  EventSink& events_;
  ServerOptions options_;
  Wire& wire_;
  Now now_;
  std::shared_ptr<spdlog::logger> log_;
  Authenticator& auth_;
  NonceSource tags_;  // random key for To tags and branches
  std::string tag_key_;
  std::uint64_t branch_counter_ = 0;
  std::unordered_map<std::string, std::shared_ptr<ServerTx>> servers_;  // branch|sent-by|method
  std::unordered_map<std::string, std::shared_ptr<ClientTx>> clients_;  // branch|method
  std::map<std::string, Call> calls_;                                   // by Call-ID, active
  std::deque<CallInfo> history_;                                        // ended, newest first
  CallCounters counters_;
  std::function<void(const CallInfo&)> on_call_ended_;
  const UpstreamMonitor* upstream_ = nullptr;
  const FlowTokens* tokens_ = nullptr;
};

}  // namespace ve::sip
