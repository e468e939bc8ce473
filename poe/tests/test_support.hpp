#pragma once
// Helpers shared by the poe unit tests: a clock the test moves, a sink that records events,
// a temporary directory, and site configs built in code.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "poe/poe.hpp"
#include "tests/support/temp_dir.hpp"
#include "ve/phone_event.hpp"

namespace ve::poe::testing {

struct FakeClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  Clock fn() {
    return [this] { return now; };
  }
  void advance(std::chrono::milliseconds d) { now += d; }
};

struct RecordingSink final : EventSink {
  std::vector<PhoneEvent> events;
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
  std::vector<PhoneEvent> for_port(const std::string& port) const {
    std::vector<PhoneEvent> out;
    for (const auto& e : events) {
      if (e.port == port) out.push_back(e);
    }
    return out;
  }
  void clear() { events.clear(); }
};

using TempDir = ve::test::TempDir;  // tests/support/temp_dir.hpp

struct PortSpec {
  std::string name;
  config::PoePriority priority = config::PoePriority::Low;
  double max_watts = 15.4;
  config::PoeMode mode = config::PoeMode::Auto;
};

inline std::shared_ptr<config::SiteConfig> make_config(const std::vector<PortSpec>& ports, double budget_watts) {
  auto cfg = std::make_shared<config::SiteConfig>();
  cfg->poe.budget_watts = budget_watts;
  for (const auto& spec : ports) {
    config::Port p;
    p.name = spec.name;
    p.poe.mode = spec.mode;
    p.poe.priority = spec.priority;
    p.poe.max_watts = spec.max_watts;
    cfg->ports.push_back(p);
  }
  return cfg;
}

inline std::vector<std::string> names_of(const std::shared_ptr<config::SiteConfig>& cfg) {
  std::vector<std::string> out;
  for (const auto& p : cfg->ports) out.push_back(p.name);
  return out;
}

}  // namespace ve::poe::testing
