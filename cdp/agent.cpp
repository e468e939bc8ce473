// The per-port CDP/LLDP-MED agent: the link, the timers and the lifecycle of one port, and the set
// of agents for a site. The protocols themselves are its two speakers (cdp_speaker.cpp,
// lldp_speaker.cpp); what they share is the port's state (port_state.cpp). Everything runs on one
// io_context; handlers hold weak references so an agent can be destroyed while operations are
// pending.
#include <algorithm>
#include <array>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cdp/cdp.hpp"
#include "cdp/port_state.hpp"
#include "ve/log.hpp"

namespace ve::cdp {

namespace asio = boost::asio;
using detail::Speaker;

std::string_view to_string(Protocol p) {
  switch (p) {
    case Protocol::Cdp: return "cdp";
    case Protocol::Lldp: return "lldp";
  }
  return "?";
}

namespace {

constexpr auto kReopenDelay = std::chrono::seconds(3);
constexpr auto kExpiryPeriod = std::chrono::seconds(1);
// Immediate replies to queries/power requests: at most one per this interval per port; requests
// inside it share one deferred reply, so a flood of queries cannot turn into a flood of frames.
constexpr auto kMinReplySpacing = std::chrono::milliseconds(200);

bool is_cdp_destination(ByteView frame) {
  return frame.size() >= 6 && std::equal(kCdpMulticast.begin(), kCdpMulticast.end(), frame.begin());
}

}  // namespace

struct Agent::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_in, std::unique_ptr<FrameLink> link_in, PortSettings port_in, AgentSettings settings_in,
       Hooks hooks_in)
      : link(std::move(link_in)),
        state(*link, std::move(port_in), std::move(settings_in), std::move(hooks_in)),
        cdp(detail::make_cdp_speaker(state)),
        lldp(detail::make_lldp_speaker(state)),
        advert_timer(io_in),
        expiry_timer(io_in),
        reopen_timer(io_in),
        reply_timer(io_in) {}

  std::unique_ptr<FrameLink> link;
  detail::PortState state;
  std::unique_ptr<Speaker> cdp;
  std::unique_ptr<Speaker> lldp;
  asio::steady_timer advert_timer;
  asio::steady_timer expiry_timer;
  asio::steady_timer reopen_timer;
  asio::steady_timer reply_timer;  // coalesces immediate replies

  bool running = false;
  bool link_is_open = false;
  bool link_up = true;
  std::string last_error;
  int fast_start_remaining = 0;
  std::optional<std::chrono::steady_clock::time_point> last_reply;
  bool reply_pending = false;

  std::array<Speaker*, 2> speakers() const { return {cdp.get(), lldp.get()}; }
  const PortSettings& port() const { return state.port; }
  const AgentSettings& settings() const { return state.settings; }
  spdlog::logger& log() const { return *state.log; }

  // --- lifecycle -------------------------------------------------------------------------

  void start() {
    running = true;
    open_link();
    schedule_expiry();
  }

  void open_link() {
    if (!running) return;
    std::weak_ptr<Impl> weak = weak_from_this();
    std::string error;
    const bool ok = link->open(
        [weak](ByteView frame) {
          if (auto self = weak.lock()) self->on_frame(frame);
        },
        [weak](const std::string& why) {
          if (auto self = weak.lock()) self->on_link_failure(why);
        },
        error);
    if (!ok) {
      if (error != last_error) log().error("{}: cannot capture: {}", port().name, error);
      last_error = error;
      link_is_open = false;
      schedule_reopen();
      return;
    }
    if (!last_error.empty()) log().info("{}: capturing again", port().name);
    last_error.clear();
    link_is_open = true;
    begin_fast_start();
  }

  void on_link_failure(const std::string& why) {
    log().error("{}: capture failed: {}", port().name, why);
    last_error = why;
    link->close();
    link_is_open = false;
    state.drop_all_neighbors(true);
    advert_timer.cancel();
    schedule_reopen();
  }

  void schedule_reopen() {
    reopen_timer.expires_after(kReopenDelay);
    std::weak_ptr<Impl> weak = weak_from_this();
    reopen_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      self->open_link();
    });
  }

  void stop() {
    if (!running) return;
    running = false;
    if (link_is_open) {
      // TTL 0 tells neighbours to forget us now instead of at holdtime.
      for (auto* s : speakers()) {
        if (s->enabled()) send(*s, true);
      }
    }
    cancel_timers();
    link->close();
    link_is_open = false;
    state.table.clear();
  }

  void cancel_timers() {
    advert_timer.cancel();
    expiry_timer.cancel();
    reopen_timer.cancel();
    reply_timer.cancel();
  }

  // What the neighbours would hear, per protocol (empty when the protocol is off).
  std::array<Bytes, 2> advertisements() const {
    std::array<Bytes, 2> out;
    const auto all = speakers();
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i]->enabled()) out[i] = all[i]->advertisement(false);
    }
    return out;
  }

  // Whatever changes what the neighbours hear (VLANs, identity, MED policy, holdtime, a protocol
  // switched on) is told at once with a fast start; only the timers changing waits for the next
  // advertisement. Comparing the frames, not a list of fields, keeps this right as settings grow.
  void reconfigure(const PortSettings& new_port, const AgentSettings& new_settings) {
    if (new_port == port() && new_settings == settings()) return;
    const auto before = advertisements();
    state.port = new_port;
    state.settings = new_settings;
    if (!running || !link_is_open) return;
    if (advertisements() != before) {
      log().info("{}: configuration changed (voice vlan {}), fast start", port().name, port().voice_vlan);
      begin_fast_start();
    } else if (fast_start_remaining == 0) {
      schedule_advert(std::chrono::seconds(std::max(1, settings().interval_s)));
    }
  }

  void link_changed(bool up) {
    if (up == link_up) return;
    link_up = up;
    if (!up) {
      state.drop_all_neighbors(true);
      for (auto* s : speakers()) s->link_down();
      advert_timer.cancel();
      return;
    }
    if (running && link_is_open) begin_fast_start();
  }

  // --- advertising -----------------------------------------------------------------------

  void begin_fast_start() {
    fast_start_remaining = std::max(1, settings().fast_start_count);
    advert_tick();
  }

  void advert_tick() {
    if (!running || !link_is_open || !link_up) return;
    if (!send_advertisements()) {
      // Not on the wire (interface not up yet): a fast-start frame that was never sent does not
      // count, so try again soon instead of waiting a whole interval.
      schedule_advert(settings().fast_start_spacing);
      return;
    }
    if (fast_start_remaining > 0) --fast_start_remaining;
    if (fast_start_remaining > 0) {
      schedule_advert(settings().fast_start_spacing);
    } else {
      schedule_advert(std::chrono::seconds(std::max(1, settings().interval_s)));
    }
  }

  template <typename Duration>
  void schedule_advert(Duration after) {
    advert_timer.expires_after(after);
    std::weak_ptr<Impl> weak = weak_from_this();
    advert_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      self->advert_tick();
    });
  }

  // True when every enabled protocol's frame went out.
  bool send_advertisements() {
    bool ok = true;
    for (auto* s : speakers()) {
      if (s->enabled()) ok = send(*s, false) && ok;
    }
    return ok;
  }

  bool send(const Speaker& s, bool shutdown) {
    const bool cdp_frame = s.protocol() == Protocol::Cdp;
    if (link->send(s.advertisement(shutdown))) {
      ++(cdp_frame ? state.counters.cdp_sent : state.counters.lldp_sent);
      return true;
    }
    ++state.counters.send_errors;
    return false;
  }

  // --- receiving -------------------------------------------------------------------------

  void on_frame(ByteView frame) {
    if (frame.size() >= 12 && link->mac() != MacAddress{} &&
        std::equal(frame.begin() + 6, frame.begin() + 12, link->mac().bytes().begin())) {
      ++state.counters.ignored;  // our own frame, if the kernel did not honour the direction filter
      return;
    }
    // The capture filter passes the CDP and the LLDP multicast; whatever is not CDP is LLDP's to
    // decode or refuse.
    Speaker& s = is_cdp_destination(frame) ? *cdp : *lldp;
    const auto answer = s.receive(frame);
    if (answer == Speaker::Answer::None || !running || !link_is_open || !s.enabled()) return;
    if (answer == Speaker::Answer::FastStart) {
      fast_start_remaining = std::max(fast_start_remaining, settings().med_fast_start_count - 1);
      send(s, false);
      if (fast_start_remaining > 0) schedule_advert(settings().fast_start_spacing);
      return;
    }
    reply(s);
  }

  void reply(const Speaker& s) {
    if (reply_pending) return;  // the deferred reply will carry the latest state
    const auto now = state.hooks.steady_now();
    if (!last_reply || now - *last_reply >= kMinReplySpacing) {
      last_reply = now;
      send(s, false);
      return;
    }
    reply_pending = true;
    reply_timer.expires_after(kMinReplySpacing);
    std::weak_ptr<Impl> weak = weak_from_this();
    const Speaker* speaker = &s;
    reply_timer.async_wait([weak, speaker](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->reply_pending = false;
      if (ec || !self->running || !self->link_is_open || !speaker->enabled()) return;
      self->last_reply = self->state.hooks.steady_now();
      self->send(*speaker, false);
    });
  }

  // --- neighbour lifetime ----------------------------------------------------------------

  void schedule_expiry() {
    expiry_timer.expires_after(kExpiryPeriod);
    std::weak_ptr<Impl> weak = weak_from_this();
    expiry_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec || !self->running) return;
      self->state.expire();
      self->schedule_expiry();
    });
  }
};

Agent::Agent(asio::io_context& io, std::unique_ptr<FrameLink> link, PortSettings port, AgentSettings settings,
             Hooks hooks)
    : impl_(std::make_shared<Impl>(io, std::move(link), std::move(port), std::move(settings), std::move(hooks))) {}

Agent::~Agent() {
  impl_->cancel_timers();
  impl_->link->close();
}

void Agent::start() { impl_->start(); }
void Agent::stop() { impl_->stop(); }
void Agent::reconfigure(const PortSettings& port, const AgentSettings& settings) { impl_->reconfigure(port, settings); }
void Agent::link_changed(bool up) { impl_->link_changed(up); }
std::size_t Agent::expire_neighbors() { return impl_->state.expire(); }
const std::string& Agent::port_name() const { return impl_->state.port.name; }
const PortSettings& Agent::port() const { return impl_->state.port; }
Counters Agent::counters() const { return impl_->state.counters; }
bool Agent::link_open() const { return impl_->link_is_open; }
std::string Agent::last_error() const { return impl_->last_error; }
Bytes Agent::build_cdp_advertisement() const { return impl_->cdp->advertisement(false); }
Bytes Agent::build_lldp_advertisement() const { return impl_->lldp->advertisement(false); }

std::vector<Neighbor> Agent::neighbors() const {
  std::vector<Neighbor> out;
  out.reserve(impl_->state.table.size());
  for (const auto& [key, n] : impl_->state.table) out.push_back(n);
  return out;
}

// ---------------------------------------------------------------------------------------------
// AgentSet

AgentSet::AgentSet(asio::io_context& io, LinkFactory links, Hooks hooks)
    : io_(io), links_(std::move(links)), hooks_(std::move(hooks)) {}

AgentSet::~AgentSet() = default;

void AgentSet::apply(const std::vector<PortSettings>& ports, const AgentSettings& settings) {
  settings_ = settings;
  const bool enabled = settings.cdp_enabled || settings.lldp_enabled;
  // Ports that left the config (or everything, when both protocols are off) stop advertising.
  for (auto it = agents_.begin(); it != agents_.end();) {
    const bool kept =
        enabled && std::any_of(ports.begin(), ports.end(), [&](const PortSettings& p) { return p.name == it->first; });
    if (kept) {
      ++it;
      continue;
    }
    logger("cdp")->info("{}: no longer advertising", it->first);
    it->second->stop();
    it = agents_.erase(it);
  }
  if (!enabled) return;
  for (const auto& p : ports) {
    auto it = agents_.find(p.name);
    if (it != agents_.end()) {
      it->second->reconfigure(p, settings);
      continue;
    }
    auto agent = std::make_unique<Agent>(io_, links_(p.name), p, settings, hooks_);
    agent->start();
    agents_.emplace(p.name, std::move(agent));
  }
}

void AgentSet::stop_all() {
  for (auto& [name, agent] : agents_) agent->stop();
  agents_.clear();
}

void AgentSet::link_changed(const std::string& port, bool up) {
  if (auto* a = find(port)) a->link_changed(up);
}

Agent* AgentSet::find(const std::string& port) {
  auto it = agents_.find(port);
  return it == agents_.end() ? nullptr : it->second.get();
}

std::vector<const Agent*> AgentSet::agents() const {
  std::vector<const Agent*> out;
  for (const auto& [name, agent] : agents_) out.push_back(agent.get());
  return out;
}

}  // namespace ve::cdp
