#pragma once
// The registrar's logic without sockets: one received message in, at most one response out.
// Transports (transport_udp.cpp, transport_tcp.cpp) feed it; tests drive it directly.
#include <ctime>
#include <functional>
#include <set>
#include <unordered_map>
#include <string>

#include "config/config.hpp"
#include "sip/authenticator.hpp"
#include "sip/digest.hpp"
#include "sip/location_store.hpp"
#include "sip/sip.hpp"
#include "ve/phone_event.hpp"

namespace spdlog {
class logger;
}

namespace ve::sip {

class UpstreamMonitor;

// Survivable mode (SRST): REGISTERs are granted at most this long (or sip.min_expires_s if that
// is higher), so phones try the cluster again soon after it is back.
constexpr std::uint32_t kSurvivableExpiresS = 60;

struct Source {
  Transport transport = Transport::Udp;
  std::string ip;
  std::uint16_t port = 0;
  std::uint64_t connection = 0;  // TCP connection id, 0 for UDP
  std::string local;             // our ip:port it arrived on
};

// The top Via of a response built here: received (and rport) say where the request really came
// from (RFC 3261 18.2.1, RFC 3581). Shared by the registrar and the proxy.
void append_top_via(std::string& out, std::string_view text, const Source& src);
void append_top_via(std::string& out, std::string_view text, const Via& via, const Source& src);  // parsed

struct Reply {
  std::string bytes;       // empty: send nothing
  std::uint16_t port = 0;  // UDP destination port (RFC 3261 18.2.2 / RFC 3581)
};

class Registrar {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  Registrar(
      config::SiteConfigPtr config, LocationStore& store, EventSink& events, ServerOptions options,
      Now now = [] { return std::chrono::system_clock::now(); });

  Reply handle(std::string_view bytes, const Source& source);
  void set_config(config::SiteConfigPtr config);
  // SRST: the probe state, for the survivable-mode expiry and the timeline's wording.
  void set_upstream(const UpstreamMonitor* upstream) { upstream_ = upstream; }
  // Removes expired bindings, reporting each.
  void sweep();
  // A TCP connection closed: forget that we reported it.
  void connection_closed(std::uint64_t connection) { reported_connections_.erase(connection); }
  const ServerCounters& counters() const { return counters_; }
  // Shared with the proxy (407): one nonce table and one guess throttle for REGISTER and calls.
  Authenticator& authenticator() { return auth_; }
  ServerCounters& counters() { return counters_; }
  std::vector<BindingInfo> registrations() const;

 private:
  Reply handle_register(const Message& m, const RequestParts& parts, const Source& src);
  // nullopt when authenticated, else the answer (challenge, 400, 403, or nothing when blocked).
  std::optional<Reply> authenticate(const Message& m, const RequestParts& parts, const Source& src,
                                    const std::string& user, const config::Phone* phone, const config::Line* line,
                                    std::chrono::system_clock::time_point now);
  void report_claim(const MacAddress& mac, Step step, Outcome outcome, const std::string& detail, const Source& src);
  // `parts`: what request_defect() parsed (nullptr before it ran, or when it found a defect: the
  // headers are parsed here then). The answer's headers up to Server:, then `extra`, then
  // Content-Length: 0; begin_response() writes the first part only, for answers built in place.
  Reply respond(const Message& m, const RequestParts* parts, const Source& src, int code, std::string_view reason,
                std::string_view extra = {});
  void begin_response(Reply& r, const Message& m, const RequestParts* parts, const Source& src, int code,
                      std::string_view reason);
  void report(const std::optional<MacAddress>& mac, Step step, Outcome outcome, std::string detail, const Source& src,
              Facts attributes = {});

  // SiteConfig::find_line scans every phone; REGISTER rates want a map (same precedence:
  // auth_user first, then extension).
  void index_lines();
  std::pair<const config::Phone*, const config::Line*> find_line(const std::string& user) const;

  config::SiteConfigPtr config_;
  std::unordered_map<std::string, std::pair<const config::Phone*, const config::Line*>> lines_;
  std::shared_ptr<spdlog::logger> log_;
  LocationStore& store_;
  EventSink& events_;
  ServerOptions options_;
  Now now_;
  NonceSource nonces_;
  Authenticator auth_;
  std::string tag_key_;
  std::time_t date_second_ = 0;  // the second date_line_ was formatted for
  std::string date_line_;
  std::string tag_scratch_;  // the To tag's hash input, reused
  ServerCounters counters_;
  std::set<std::uint64_t> reported_connections_;
  const UpstreamMonitor* upstream_ = nullptr;
  // Malformed input is untrusted and may come in floods: warn at most once per second.
  bool malformed_log_allowed();
  std::chrono::system_clock::time_point last_malformed_log_{};
};

// Cisco REGISTER details from Contact parameters and the Reason header.
struct CiscoDeviceInfo {
  std::optional<MacAddress> mac;  // from +sip.instance, else the SEP device name
  std::string device_name;
  std::string model;
  std::string active_load;
  std::string inactive_load;
  std::string reason_name;
};
CiscoDeviceInfo cisco_device_info(const NameAddr& contact, std::string_view reason_header);

}  // namespace ve::sip
