#pragma once
// SRST: the central cluster the box fronts (sip.upstream). Two pieces without sockets or clocks:
//
// - UpstreamMonitor, the probe state machine: each upstream up or down from its OPTIONS answers,
//   and the box's mode (upstream while one is usable, survivable when none is). Time is passed
//   in, so tests drive it without waiting.
// - FlowTokens: the Path entry the box puts into a forwarded REGISTER names the phone's flow (its
//   TCP connection or UDP address) in a token only the box can make, so a request arriving along
//   that Path reaches that phone and a forged one reaches nobody.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "sip/proxy.hpp"

namespace ve::sip {

enum class UpstreamState { Unknown, Up, Down };
std::string_view to_string(UpstreamState s);

// Local: no sip.upstream, the box is the call control. Upstream: REGISTERs and calls go to the
// cluster. Survivable: the cluster is unreachable, the box serves the phones itself.
enum class SipMode { Local, Upstream, Survivable };
std::string_view to_string(SipMode m);

struct UpstreamStatus {
  config::Upstream config;
  Transport transport = Transport::Udp;
  UpstreamState state = UpstreamState::Unknown;
  std::chrono::system_clock::time_point since;  // of the current state
  std::optional<std::chrono::system_clock::time_point> last_probe;
  std::optional<std::chrono::system_clock::time_point> last_answer;
  std::optional<std::chrono::milliseconds> rtt;                          // of the last answer
  int last_status = 0;                                                   // status of the last answer, 0 before any
  int misses = 0;                                                        // unanswered probes in a row
  std::optional<std::chrono::system_clock::time_point> answering_since;  // first of the current run of answers
  bool usable = false;                                                   // up, and re-homed (see UpstreamMonitor)
  std::string address() const;                                           // udp:10.10.200.1:5060
  Destination destination() const;
};

class UpstreamMonitor {
 public:
  using Time = std::chrono::system_clock::time_point;
  UpstreamMonitor(const config::SipConfig& sip, Time now);

  // A new site file: upstreams with the same name, address and transport keep their state.
  void set_config(const config::SipConfig& sip, Time now);

  void probe_sent(std::size_t i, Time now);
  // An answer to a probe: any final status means the upstream's SIP stack is alive, except a
  // 5xx (overloaded, shutting down: down at once, RFC 3261 21.5).
  void answered(std::size_t i, int status, std::chrono::milliseconds rtt, Time now);
  // A probe not answered in time.
  void missed(std::size_t i, Time now);
  // Re-evaluates usability with the passage of time alone (rehome_after_s elapsing).
  void tick(Time now) { update(now); }

  SipMode mode() const { return mode_; }
  Time mode_since() const { return mode_since_; }
  // The upstream REGISTERs and calls go to: the first usable one in configured order.
  const UpstreamStatus* active() const;
  const std::vector<UpstreamStatus>& upstreams() const { return upstreams_; }
  const config::Survivability& survivability() const { return survivability_; }
  // "hq-1, hq-2 unreachable since 2026-12-02T13:37:44Z" for the survivable-mode timeline.
  std::string unreachable_summary() const;
  // How long a probe may wait for its answer: the interval, at most 5 s.
  std::chrono::milliseconds probe_timeout() const;

  // Called on every mode change with the old and new mode and a sentence saying why.
  void on_mode_change(std::function<void(SipMode, SipMode, const std::string&)> fn) { on_change_ = std::move(fn); }

 private:
  void update(Time now);
  std::vector<UpstreamStatus> upstreams_;
  config::Survivability survivability_;
  SipMode mode_ = SipMode::Local;
  Time mode_since_;
  // Until an upstream first goes down, one that answers is usable at once: at start there are
  // no phones to hand back, so waiting rehome_after_s would only keep them away from the cluster.
  bool fresh_ = true;
  std::function<void(SipMode, SipMode, const std::string&)> on_change_;
};

// The flow token of a Path entry: transport, address and port of the phone's flow and a
// truncated HMAC-SHA256 over them with a key of the box. Only the box can make one; parse()
// refuses anything it did not make.
class FlowTokens {
 public:
  FlowTokens();  // a random key
  explicit FlowTokens(std::string key) : key_(std::move(key)) {}
  const std::string& key() const { return key_; }
  std::string make(const Destination& flow) const;
  std::optional<Destination> parse(std::string_view token) const;

 private:
  std::string mac(std::string_view data) const;
  std::string key_;
};

// The Path header value (RFC 3327, with RFC 5626's ;ob) for a phone's flow: the box's address as
// the cluster reaches it, the token as user part, ;lr.
std::string path_entry(std::string_view token, const std::string& box_address, Transport toward_upstream);
// The flow token of a Route entry that is one of our Path entries ("ob-TOKEN@..."), or empty.
std::string_view path_token(std::string_view route_entry);

}  // namespace ve::sip
