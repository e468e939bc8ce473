#pragma once
// The journey tracker: one timeline per phone across all fourteen boot steps. Every component
// reports PhoneEvents here (through EventSink); the tracker keeps, per phone, the latest state of
// each step, the first and last time it was seen, a bounded history, and the facts Device Status
// shows. It is persisted in SQLite so a restart keeps every timeline.
#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"

namespace ve::daemon {

struct StepState {
  bool seen = false;
  Outcome outcome = Outcome::Info;
  std::string detail;
  std::chrono::system_clock::time_point first;
  std::chrono::system_clock::time_point last;
};

struct PhoneJourney {
  MacAddress mac;
  std::array<StepState, kStepCount> steps{};  // index = step number - 1
  std::deque<PhoneEvent> history;             // newest last, bounded
  std::map<std::string, std::string> facts;   // ip, port, model, active_load, registered_with, ...
  std::chrono::system_clock::time_point first_seen;
  std::chrono::system_clock::time_point last_seen;

  const StepState& step(Step s) const { return steps[static_cast<std::size_t>(s) - 1]; }
  bool registered() const;
};

// The first step a technician should look at: the first that failed, or, if none failed, the
// first required step not yet seen although a later one was (or the next one due).
struct Diagnosis {
  std::optional<Step> step;
  std::string reason;  // "step 7: SEP001122334455.cnf.xml not found — phone not in site file"
};

class JourneyTracker final : public EventSink {
 public:
  static constexpr std::size_t kHistoryPerPhone = 200;
  static constexpr std::size_t kMaxPhones = 20000;

  // `database` empty: memory only (tests).
  explicit JourneyTracker(std::filesystem::path database);
  ~JourneyTracker() override;
  JourneyTracker(const JourneyTracker&) = delete;
  JourneyTracker& operator=(const JourneyTracker&) = delete;

  void report(PhoneEvent event) override;

  // Writes buffered events to disk. Called on a timer and at stop; cheap when nothing is pending.
  void flush();

  void set_config(config::SiteConfigPtr config) { config_ = std::move(config); }

  // Finds a phone by MAC (any accepted spelling), SEP name, IPv4 address or port name.
  const PhoneJourney* find(const std::string& key) const;
  const std::map<MacAddress, PhoneJourney>& phones() const { return phones_; }

  Diagnosis diagnose(const PhoneJourney& phone) const;
  nlohmann::json device_status(const PhoneJourney& phone) const;
  nlohmann::json phones_json() const;
  nlohmann::json journey_json(const PhoneJourney& phone) const;

  std::size_t persisted_events() const { return persisted_; }

  // Called after every event a phone's timeline took in (the status page streams changes).
  void add_listener(std::function<void(const MacAddress&)> listener) { listeners_.push_back(std::move(listener)); }

 private:
  void apply(const PhoneEvent& event);
  void infer_phone_only_steps(const PhoneEvent& event);
  void open_database();
  void load_database();

  std::filesystem::path database_path_;
  struct Db;
  std::unique_ptr<Db> db_;
  std::vector<PhoneEvent> pending_;
  std::size_t persisted_ = 0;
  std::map<MacAddress, PhoneJourney> phones_;
  config::SiteConfigPtr config_;
  std::vector<std::function<void(const MacAddress&)>> listeners_;
};

}  // namespace ve::daemon
