// Simulated PSE: a state machine per port that walks detection -> classification -> delivery on
// an injected clock, the way a PSE controller behind the kernel's PSE framework reports it.
#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "poe/poe.hpp"
#include "ve/log.hpp"

namespace ve::poe {

namespace {

enum class Phase { Disabled, Detecting, Classifying, Delivering, Fault };

std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::Disabled: return "disabled";
    case Phase::Detecting: return "detecting";
    case Phase::Classifying: return "classifying";
    case Phase::Delivering: return "delivering";
    case Phase::Fault: return "fault";
  }
  return "?";
}

Phase phase_from(std::string_view s) {
  if (s == "detecting") return Phase::Detecting;
  if (s == "classifying") return Phase::Classifying;
  if (s == "delivering") return Phase::Delivering;
  if (s == "fault") return Phase::Fault;
  return Phase::Disabled;
}

// What a typical 802.3at controller allows as the upper end of its limit range.
constexpr std::uint32_t kSimLimitMaxMw = 30000;

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
  };

  std::vector<std::string> order;
  std::map<std::string, Port> ports;
  Clock clock;
  SimOptions options;

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
          p.phase = Phase::Delivering;
          ++p.power_ons;
          changed = true;
          check_overcurrent(p);
          return changed;
        case Phase::Delivering:
          if (!p.device) {
            p.phase = Phase::Detecting;
            p.power_class = -1;
            p.since = now;
            return true;
          }
          return check_overcurrent(p) || changed;
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
    if (p.phase == Phase::Delivering) ++p.power_cycles;
    p.phase = Phase::Fault;
    p.fault = std::move(reason);
    p.since = clock();
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
                          {"power_cycles", p.power_cycles}};
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
      p->since = now;
      // The device may have been unplugged while we were away.
      if (p->phase == Phase::Delivering && !p->device) {
        p->phase = Phase::Detecting;
        p->power_class = -1;
      } else if (p->phase == Phase::Delivering && p->device) {
        p->power_class = p->device->power_class;
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
  }
  if (p->phase == Phase::Delivering) {
    s.power_class = p->power_class;
    s.actual_mw = p->device ? p->device->draw_mw : 0;
  }
  if (p->phase == Phase::Fault) s.fault = p->fault;
  s.limit_mw = p->limit_mw;
  s.limit_max_mw = kSimLimitMaxMw;
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
    if (p->phase == Phase::Delivering) ++p->power_cycles;
    p->phase = Phase::Disabled;
    p->power_class = -1;
    p->fault.clear();
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
  for (const auto& [name, sim] : cfg.poe.sim) {
    if (!sim.connected) continue;
    plugged[name] = SimDevice{sim.power_class, static_cast<std::uint32_t>(std::lround(sim.draw_watts * 1000.0))};
  }
  return std::make_unique<SimDriver>(std::move(names), std::move(plugged), std::move(clock), std::move(options));
}

}  // namespace ve::poe
