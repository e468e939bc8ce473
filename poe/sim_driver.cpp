// Simulated PSE: a state machine per port that walks detection -> classification -> delivery on
// an injected clock, the way a PSE controller behind the kernel's PSE framework reports it.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "poe/poe.hpp"
#include "ve/log.hpp"

namespace ve::poe {

namespace {

// Budget: enabled and detected, but held off by the PSE's own budget (kernel-side shedding).
enum class Phase { Disabled, Detecting, Classifying, Delivering, Fault, Budget };

std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::Disabled: return "disabled";
    case Phase::Detecting: return "detecting";
    case Phase::Classifying: return "classifying";
    case Phase::Delivering: return "delivering";
    case Phase::Fault: return "fault";
    case Phase::Budget: return "budget";
  }
  return "?";
}

Phase phase_from(std::string_view s) {
  if (s == "detecting") return Phase::Detecting;
  if (s == "classifying") return Phase::Classifying;
  if (s == "delivering") return Phase::Delivering;
  if (s == "fault") return Phase::Fault;
  if (s == "budget") return Phase::Budget;
  return Phase::Disabled;
}

// What a typical 802.3at controller allows as the upper end of its limit range.
constexpr std::uint32_t kSimLimitMaxMw = 30000;

// An eventfd, closed with its owner.
class EventFd {
 public:
  EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~EventFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;
  int fd() const { return fd_; }
  void signal() const {
    const std::uint64_t one = 1;
    if (fd_ >= 0) (void)!::write(fd_, &one, sizeof one);
  }
  void drain() const {
    std::uint64_t value = 0;
    if (fd_ >= 0) (void)!::read(fd_, &value, sizeof value);
  }

 private:
  int fd_;
};

}  // namespace

struct SimDriver::Impl {
  struct Port {
    bool admin = false;
    Phase phase = Phase::Disabled;
    std::chrono::steady_clock::time_point since{};
    std::optional<SimDevice> device;
    int power_class = -1;
    std::optional<std::uint32_t> limit_mw;
    std::string fault;
    bool no_pse = false;
    std::optional<DriverError> fail_next;
    int power_ons = 0;
    int power_cycles = 0;
    std::uint32_t prio = 0;          // the PSE's own priority (prio_max > 0)
    std::uint32_t domain = 0;        // power domain
    std::uint32_t allocated_mw = 0;  // what the PSE budgets for it while delivering
  };

  std::vector<std::string> order;
  std::map<std::string, Port> ports;
  Clock clock;
  SimOptions options;
  EventFd notify;
  std::vector<PortEvent> queued;

  void emit(const std::string& name, PseEvents e) {
    if (!e.any()) return;
    for (auto& q : queued) {
      if (q.port != name) continue;
      q.events.over_current |= e.over_current;
      q.events.over_temperature |= e.over_temperature;
      q.events.detection |= e.detection;
      q.events.classification |= e.classification;
      q.events.disconnection |= e.disconnection;
      q.events.over_budget |= e.over_budget;
      q.events.power_control_error |= e.power_control_error;
      return;
    }
    queued.push_back(PortEvent{name, e});
    notify.signal();
  }

  const std::string& name_of(const Port& p) const {
    for (const auto& [name, q] : ports) {
      if (&q == &p) return name;
    }
    static const std::string none;
    return none;
  }

  bool budgets() const { return options.prio_max > 0; }

  std::optional<std::uint32_t> domain_budget(std::uint32_t domain) const {
    auto it = options.domain_budget_mw.find(domain);
    if (it == options.domain_budget_mw.end()) return std::nullopt;
    return it->second;
  }

  // The PSE core's static budget: a delivering port holds its class power, or its limit if lower.
  static std::uint32_t allocation_for(const Port& p) {
    std::uint32_t mw = class_power_mw(p.power_class);
    if (p.limit_mw && *p.limit_mw < mw) mw = *p.limit_mw;
    return mw;
  }

  std::uint32_t domain_used(std::uint32_t domain, const Port* except) const {
    std::uint32_t used = 0;
    for (const auto& [name, q] : ports) {
      if (&q != except && q.domain == domain && q.phase == Phase::Delivering) used += q.allocated_mw;
    }
    return used;
  }

  // `p` finished classification: power it if its domain has room, switching off ports of lower
  // priority (higher value) in that domain, least important (then last in port order) first. If
  // even that is not enough, `p` itself is held off. Either way the PSE says "over budget".
  bool admit(Port& p) {
    p.allocated_mw = allocation_for(p);
    const auto budget = budgets() ? domain_budget(p.domain) : std::nullopt;
    if (!budget) return true;
    std::uint32_t used = domain_used(p.domain, &p);
    if (used + p.allocated_mw <= *budget) return true;
    std::vector<std::pair<std::string, Port*>> lower;
    for (const auto& name : order) {
      Port& q = ports.at(name);
      if (&q != &p && q.domain == p.domain && q.phase == Phase::Delivering && q.prio > p.prio) {
        lower.emplace_back(name, &q);
      }
    }
    std::stable_sort(lower.begin(), lower.end(),
                     [](const auto& a, const auto& b) { return a.second->prio > b.second->prio; });
    std::uint32_t freeable = 0;
    for (const auto& [name, q] : lower) freeable += q->allocated_mw;
    if (used - std::min(used, freeable) + p.allocated_mw > *budget) {
      hold_for_budget(p, name_of(p));
      return false;
    }
    // Last in port order goes first among equals.
    std::stable_sort(lower.begin(), lower.end(), [this](const auto& a, const auto& b) {
      if (a.second->prio != b.second->prio) return a.second->prio > b.second->prio;
      return index_of(a.first) > index_of(b.first);
    });
    for (const auto& [name, q] : lower) {
      if (used + p.allocated_mw <= *budget) break;
      used -= q->allocated_mw;
      ++q->power_cycles;
      hold_for_budget(*q, name);
    }
    return true;
  }

  std::size_t index_of(const std::string& name) const {
    return static_cast<std::size_t>(std::find(order.begin(), order.end(), name) - order.begin());
  }

  void hold_for_budget(Port& p, const std::string& name) {
    p.phase = Phase::Budget;
    p.allocated_mw = 0;
    p.since = clock();
    PseEvents e;
    e.over_budget = true;
    emit(name, e);
  }

  // Power freed in `domain`: held ports come back, most important first, while they fit.
  void retry_domain(std::uint32_t domain) {
    if (!budgets()) return;
    std::vector<std::pair<std::string, Port*>> held;
    for (const auto& name : order) {
      Port& q = ports.at(name);
      if (q.domain == domain && q.phase == Phase::Budget && q.admin && q.device) held.emplace_back(name, &q);
    }
    std::stable_sort(held.begin(), held.end(),
                     [](const auto& a, const auto& b) { return a.second->prio < b.second->prio; });
    const auto budget = domain_budget(domain);
    for (auto& [name, q] : held) {
      const std::uint32_t want = allocation_for(*q);
      if (budget && domain_used(domain, nullptr) + want > *budget) break;
      q->allocated_mw = want;
      q->phase = Phase::Delivering;
      q->since = clock();
      ++q->power_ons;
    }
  }

  // `p` stopped delivering (unplug, admin off, fault): its power goes back to the domain.
  void released(Port& p) {
    p.allocated_mw = 0;
    retry_domain(p.domain);
  }

  Port* find(const std::string& name) {
    auto it = ports.find(name);
    return it == ports.end() ? nullptr : &it->second;
  }

  // Moves `p` along its phases for the time that has passed. Returns true if anything changed.
  bool advance(Port& p) {
    const auto now = clock();
    bool changed = false;
    for (;;) {
      switch (p.phase) {
        case Phase::Disabled:
        case Phase::Fault: return changed;
        case Phase::Detecting:
          if (!p.device) {
            p.since = now;  // keeps searching
            return changed;
          }
          if (now - p.since < options.phase) return changed;
          p.since += options.phase;
          p.phase = Phase::Classifying;
          changed = true;
          continue;
        case Phase::Classifying:
          if (!p.device) {
            p.phase = Phase::Detecting;
            p.since = now;
            return true;
          }
          if (now - p.since < options.phase) return changed;
          p.since += options.phase;
          p.power_class = p.device->power_class;
          changed = true;
          {
            PseEvents e;
            e.detection = true;
            e.classification = true;
            emit(name_of(p), e);
          }
          if (!admit(p)) return changed;
          p.phase = Phase::Delivering;
          ++p.power_ons;
          check_overcurrent(p);
          return changed;
        case Phase::Delivering:
          if (!p.device) {
            p.phase = Phase::Detecting;
            p.power_class = -1;
            p.since = now;
            PseEvents e;
            e.disconnection = true;
            emit(name_of(p), e);
            released(p);
            return true;
          }
          return check_overcurrent(p) || changed;
        case Phase::Budget:
          if (!p.device) {
            p.phase = Phase::Detecting;
            p.power_class = -1;
            p.since = now;
            return true;
          }
          return changed;
      }
    }
  }

  // A device drawing more than the port's limit trips the controller's over-current protection.
  bool check_overcurrent(Port& p) {
    if (p.phase != Phase::Delivering || !p.device || !p.limit_mw) return false;
    if (p.device->draw_mw <= *p.limit_mw) return false;
    trip(p, "over-current");
    return true;
  }

  void trip(Port& p, std::string reason) {
    const bool was_delivering = p.phase == Phase::Delivering;
    if (was_delivering) ++p.power_cycles;
    p.phase = Phase::Fault;
    PseEvents e;
    e.over_current = reason == "over-current";
    e.power_control_error = !e.over_current;  // any other injected fault: the PSE's own error
    p.fault = std::move(reason);
    p.since = clock();
    emit(name_of(p), e);
    if (was_delivering) released(p);
  }

  std::optional<DriverError> take_failure(Port& p) {
    auto f = std::move(p.fail_next);
    p.fail_next.reset();
    return f;
  }

  void save() const {
    if (!options.hardware_file) return;
    nlohmann::json j;
    for (const auto& [name, p] : ports) {
      j["ports"][name] = {{"admin", p.admin},
                          {"phase", phase_name(p.phase)},
                          {"class", p.power_class},
                          {"limit_mw", p.limit_mw ? nlohmann::json(*p.limit_mw) : nlohmann::json()},
                          {"fault", p.fault},
                          {"power_ons", p.power_ons},
                          {"power_cycles", p.power_cycles},
                          {"prio", p.prio}};
    }
    const auto tmp = options.hardware_file->string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << j.dump(1) << '\n';
      if (!out) {
        ve::logger("poe")->warn("sim: cannot write {}", tmp);
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, *options.hardware_file, ec);
    if (ec) ve::logger("poe")->warn("sim: cannot replace {}: {}", options.hardware_file->string(), ec.message());
  }

  // "Hardware" that outlived the previous process: a powered port stays powered.
  void load() {
    if (!options.hardware_file) return;
    std::ifstream in(*options.hardware_file);
    if (!in) return;
    const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("ports") || !j["ports"].is_object()) {
      ve::logger("poe")->warn("sim: ignoring unreadable {}", options.hardware_file->string());
      return;
    }
    const auto now = clock();
    for (const auto& [name, pj] : j["ports"].items()) {
      Port* p = find(name);
      if (p == nullptr || !pj.is_object()) continue;
      // A value of the wrong type (a damaged file) costs that port's saved state, not the daemon.
      try {
        (void)pj.value("admin", false);
        (void)pj.value("phase", std::string());
        (void)pj.value("class", -1);
        (void)pj.value("fault", std::string());
        (void)pj.value("power_ons", 0);
        (void)pj.value("power_cycles", 0);
      } catch (const nlohmann::json::exception& e) {
        ve::logger("poe")->warn("sim: {}: ignoring the saved state of {}: {}", options.hardware_file->string(), name,
                                e.what());
        continue;
      }
      p->admin = pj.value("admin", false);
      p->phase = phase_from(pj.value("phase", std::string("disabled")));
      p->power_class = pj.value("class", -1);
      if (pj.contains("limit_mw") && pj["limit_mw"].is_number_unsigned()) {
        p->limit_mw = pj["limit_mw"].get<std::uint32_t>();
      }
      p->fault = pj.value("fault", std::string());
      p->power_ons = pj.value("power_ons", 0);
      p->power_cycles = pj.value("power_cycles", 0);
      p->prio = std::min<std::uint32_t>(pj.value("prio", 0u), options.prio_max);
      p->since = now;
      // The device may have been unplugged while we were away.
      if (p->phase == Phase::Delivering && !p->device) {
        p->phase = Phase::Detecting;
        p->power_class = -1;
      } else if (p->phase == Phase::Delivering && p->device) {
        p->power_class = p->device->power_class;
        p->allocated_mw = allocation_for(*p);
      }
    }
  }
};

SimDriver::SimDriver(std::vector<std::string> ports, std::map<std::string, SimDevice> plugged, Clock clock,
                     SimOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->clock = std::move(clock);
  impl_->options = std::move(options);
  const auto now = impl_->clock();
  for (auto& name : ports) {
    Impl::Port p;
    auto it = plugged.find(name);
    if (it != plugged.end()) p.device = it->second;
    p.admin = impl_->options.admin_enabled_at_power_up;
    p.phase = p.admin ? Phase::Detecting : Phase::Disabled;
    p.since = now;
    if (auto d = impl_->options.domains.find(name); d != impl_->options.domains.end()) p.domain = d->second;
    impl_->ports.emplace(name, std::move(p));
    impl_->order.push_back(std::move(name));
  }
  impl_->load();
}

SimDriver::~SimDriver() = default;

std::vector<std::string> SimDriver::ports() const { return impl_->order; }

DriverResult<PortStatus> SimDriver::status(const std::string& port) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(DriverError{DriverErrorCode::NoSuchPort, "no such port: " + port, ENODEV});
  if (auto f = impl_->take_failure(*p)) return unexpected(*f);
  if (p->no_pse) {
    PortStatus s;
    s.port = port;
    s.detection = Detection::NoPse;
    return s;
  }
  if (impl_->advance(*p)) impl_->save();
  PortStatus s;
  s.port = port;
  s.admin = p->admin ? AdminState::Enabled : AdminState::Disabled;
  switch (p->phase) {
    case Phase::Disabled: s.detection = Detection::Disabled; break;
    case Phase::Detecting:
    case Phase::Classifying: s.detection = Detection::Searching; break;
    case Phase::Delivering: s.detection = Detection::Delivering; break;
    case Phase::Fault: s.detection = Detection::Fault; break;
    case Phase::Budget: s.detection = Detection::Disabled; break;
  }
  if (p->phase == Phase::Delivering) {
    s.power_class = p->power_class;
    s.actual_mw = p->device ? p->device->draw_mw : 0;
  }
  if (p->phase == Phase::Fault) s.fault = p->fault;
  if (p->phase == Phase::Budget) {
    s.ext_state = 8;  // ETHTOOL_C33_PSE_EXT_STATE_POWER_NOT_AVAILABLE (substate: budget exceeded)
    s.fault = "power not available";
    s.power_class = p->power_class;
  }
  s.limit_mw = p->limit_mw;
  s.limit_max_mw = kSimLimitMaxMw;
  s.limit_ranges = {LimitRange{0, kSimLimitMaxMw}};
  if (impl_->budgets()) {
    s.priority_max = impl_->options.prio_max;
    s.priority = p->prio;
  }
  if (impl_->budgets() || !impl_->options.domains.empty()) s.power_domain = p->domain;
  return s;
}

DriverResult<void> SimDriver::set_admin(const std::string& port, bool enabled) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(DriverError{DriverErrorCode::NoSuchPort, "no such port: " + port, ENODEV});
  if (auto f = impl_->take_failure(*p)) return unexpected(*f);
  if (p->no_pse) return unexpected(DriverError{DriverErrorCode::NoPse, "No PSE is attached", EOPNOTSUPP});
  impl_->advance(*p);
  if (enabled == p->admin) return {};  // like the kernel: setting the current state changes nothing
  p->admin = enabled;
  if (!enabled) {
    const bool was_delivering = p->phase == Phase::Delivering;
    if (was_delivering) ++p->power_cycles;
    p->phase = Phase::Disabled;
    p->power_class = -1;
    p->fault.clear();
    if (was_delivering) impl_->released(*p);
  } else {
    p->phase = Phase::Detecting;
    p->since = impl_->clock();
  }
  impl_->save();
  return {};
}

DriverResult<void> SimDriver::set_power_limit(const std::string& port, std::uint32_t mw) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(DriverError{DriverErrorCode::NoSuchPort, "no such port: " + port, ENODEV});
  if (auto f = impl_->take_failure(*p)) return unexpected(*f);
  if (p->no_pse) return unexpected(DriverError{DriverErrorCode::NoPse, "No PSE is attached", EOPNOTSUPP});
  if (mw > kSimLimitMaxMw) {
    return unexpected(DriverError{DriverErrorCode::Invalid, "power limit out of range", ERANGE});
  }
  impl_->advance(*p);
  p->limit_mw = mw;
  impl_->check_overcurrent(*p);
  impl_->save();
  return {};
}

DriverResult<void> SimDriver::set_priority(const std::string& port, std::uint32_t prio) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(DriverError{DriverErrorCode::NoSuchPort, "no such port: " + port, ENODEV});
  if (auto f = impl_->take_failure(*p)) return unexpected(*f);
  if (p->no_pse) return unexpected(DriverError{DriverErrorCode::NoPse, "No PSE is attached", EOPNOTSUPP});
  if (!impl_->budgets()) {
    return unexpected(DriverError{DriverErrorCode::NotSupported, "PSE has no port priorities", EOPNOTSUPP});
  }
  if (prio > impl_->options.prio_max) {
    return unexpected(DriverError{DriverErrorCode::Invalid, "priority out of range", ERANGE});
  }
  p->prio = prio;
  impl_->save();
  return {};
}

int SimDriver::notification_fd() const { return impl_->notify.fd(); }

std::vector<PortEvent> SimDriver::read_notifications() {
  impl_->notify.drain();
  return std::exchange(impl_->queued, {});
}

void SimDriver::plug(const std::string& port, SimDevice device) {
  if (Impl::Port* p = impl_->find(port)) {
    impl_->advance(*p);
    p->device = device;
    if (p->phase == Phase::Detecting) p->since = impl_->clock();
    impl_->save();
  }
}

void SimDriver::unplug(const std::string& port) {
  if (Impl::Port* p = impl_->find(port)) {
    impl_->advance(*p);
    p->device.reset();
    impl_->advance(*p);
    impl_->save();
  }
}

void SimDriver::set_draw(const std::string& port, std::uint32_t mw) {
  if (Impl::Port* p = impl_->find(port)) {
    impl_->advance(*p);
    if (p->device) p->device->draw_mw = mw;
    impl_->check_overcurrent(*p);
    impl_->save();
  }
}

void SimDriver::inject_fault(const std::string& port, std::string reason) {
  if (Impl::Port* p = impl_->find(port)) {
    impl_->advance(*p);
    if (p->admin) impl_->trip(*p, std::move(reason));
    impl_->save();
  }
}

void SimDriver::inject_overcurrent(const std::string& port) { inject_fault(port, "over-current"); }

void SimDriver::clear_fault(const std::string& port) {
  if (Impl::Port* p = impl_->find(port)) {
    if (p->phase != Phase::Fault) return;
    p->fault.clear();
    p->phase = p->admin ? Phase::Detecting : Phase::Disabled;
    p->since = impl_->clock();
    impl_->save();
  }
}

void SimDriver::set_no_pse(const std::string& port, bool no_pse) {
  if (Impl::Port* p = impl_->find(port)) p->no_pse = no_pse;
}

void SimDriver::fail_next(const std::string& port, DriverError error) {
  if (Impl::Port* p = impl_->find(port)) p->fail_next = std::move(error);
}

int SimDriver::power_cycles(const std::string& port) const {
  auto it = impl_->ports.find(port);
  return it == impl_->ports.end() ? 0 : it->second.power_cycles;
}

int SimDriver::power_ons(const std::string& port) const {
  auto it = impl_->ports.find(port);
  return it == impl_->ports.end() ? 0 : it->second.power_ons;
}

std::unique_ptr<SimDriver> SimDriver::from_config(const config::SiteConfig& cfg, Clock clock, SimOptions options) {
  std::vector<std::string> names;
  for (const auto& port : cfg.ports) names.push_back(port.name);
  std::map<std::string, SimDevice> plugged;
  if (cfg.poe.sim_pse.prio_max > 0) {
    options.prio_max = static_cast<std::uint32_t>(cfg.poe.sim_pse.prio_max);
    for (const auto& [name, sim] : cfg.poe.sim) options.domains[name] = static_cast<std::uint32_t>(sim.domain);
    if (cfg.poe.sim_pse.domain_budget_watts > 0) {
      const auto budget = static_cast<std::uint32_t>(std::lround(cfg.poe.sim_pse.domain_budget_watts * 1000.0));
      for (const auto& port : cfg.ports) {
        const auto it = options.domains.find(port.name);
        options.domain_budget_mw[it == options.domains.end() ? 0 : it->second] = budget;
      }
    }
  }
  for (const auto& [name, sim] : cfg.poe.sim) {
    if (!sim.connected) continue;
    plugged[name] = SimDevice{sim.power_class, static_cast<std::uint32_t>(std::lround(sim.draw_watts * 1000.0))};
  }
  return std::make_unique<SimDriver>(std::move(names), std::move(plugged), std::move(clock), std::move(options));
}

}  // namespace ve::poe
