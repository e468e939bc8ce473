#pragma once
// The journey tracker: one timeline per phone across all fourteen boot steps. Every component
// reports PhoneEvents here (through EventSink); the tracker keeps, per phone, the latest state of
// each step, the first and last time it was seen, a bounded history, and the facts Device Status
// shows. It is persisted in SQLite so a restart keeps every timeline.
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "ve/accept_guard.hpp"
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
  std::deque<PhoneEvent> history;             // newest last, bounded (kHistoryPerPhone)
  // Events pushed out of `history` to keep it bounded, since the phone was first seen.
  std::uint64_t history_dropped = 0;
  std::map<Fact, std::string> facts;  // the newest value of each fact reported
  std::chrono::system_clock::time_point first_seen;
  std::chrono::system_clock::time_point last_seen;
  bool verified = false;  // an event carried verified evidence (see PhoneEvent::verified)

  const StepState& step(Step s) const { return steps[static_cast<std::size_t>(s) - 1]; }
  // The fact's value, empty when nobody reported it.
  std::string fact(Fact f) const {
    auto it = facts.find(f);
    return it == facts.end() ? std::string() : it->second;
  }
  bool registered() const;
};

// The first step a technician should look at: the first that failed, or, if none failed, the
// first required step not yet seen although a later one was (or the next one due).
struct Diagnosis {
  std::optional<Step> step;
  std::string reason;  // "step 7: SEP001122334455.cnf.xml not found — phone not in site file"
};

// Drops events from `history` (time order, oldest first) until at most `cap` are left, and
// returns how many went. The oldest go first, except the milestones the boot timeline is drawn
// from: the last power-on (step 1 ok) and the first event of each step since it (without a
// power-on, since the oldest event). `cap` must exceed kStepCount.
std::uint64_t trim_history(std::deque<PhoneEvent>& history, std::size_t cap);

class JourneyTracker final : public EventSink {
 public:
  // The oldest events go first, except the milestones the boot timeline is drawn from (the last
  // power-on and the first event of each step since it), so at most kStepCount are ever kept
  // beyond their turn.
  static constexpr std::size_t kHistoryPerPhone = 64;
  static_assert(kHistoryPerPhone > static_cast<std::size_t>(kStepCount));
  // Trusted phones: in the site file (never pushed out, not counted here) or verified.
  static constexpr std::size_t kMaxPhones = 20000;
  // MACs nobody vouches for (any host can claim any MAC in a DHCP request, CDP frame or SIP
  // instance): a small table, the least recently seen pushed out first, forgotten after an hour
  // of silence, also across restarts.
  static constexpr std::size_t kMaxUnverified = 512;
  static constexpr std::chrono::hours kUnverifiedMaxAge{1};

  // `database` empty: memory only (tests). `config` decides, already while the database is
  // loaded, which phones are trusted (in the site file).
  explicit JourneyTracker(std::filesystem::path database, config::SiteConfigPtr config = nullptr);
  ~JourneyTracker() override;
  JourneyTracker(const JourneyTracker&) = delete;
  JourneyTracker& operator=(const JourneyTracker&) = delete;

  void report(PhoneEvent event) override;

  // Writes buffered events to disk. Called on a timer and at stop; cheap when nothing is pending.
  void flush();

  // A new site file: phones added to it become trusted, phones removed from it unverified.
  void set_config(config::SiteConfigPtr config);

  // Whether `phone` is protected from eviction (in the site file, or verified).
  bool trusted(const PhoneJourney& phone) const;
  std::size_t unverified() const { return unverified_.size(); }
  std::uint64_t unverified_evicted() const { return unverified_evicted_; }
  // Rows of the database that could not be read at start and were skipped.
  std::size_t skipped_rows() const { return skipped_rows_; }
  // Drops unverified phones silent for kUnverifiedMaxAge (called from flush, once a minute).
  void expire_unverified(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

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
  static PhoneJourney journey_from(const MacAddress& mac, const nlohmann::json& j);
  void flush_pass(bool may_recover);
  void open_database();
  bool prepare_schema();
  void load_database();
  // The database is damaged: set it aside, start a fresh one and rewrite what memory holds.
  void recover_database(const std::string& reason);
  // Why the file on disk is no longer the database we hold open ("" if it is).
  std::string file_problem() const;
  void forget(const MacAddress& mac);
  void classify(const MacAddress& mac);
  void trim_unverified(std::size_t keep);

  std::filesystem::path database_path_;
  struct Db;
  std::unique_ptr<Db> db_;
  std::vector<PhoneEvent> pending_;
  std::size_t persisted_ = 0;
  std::map<MacAddress, PhoneJourney> phones_;
  std::set<MacAddress> unverified_;  // keys of phones_ that are not trusted
  std::uint64_t unverified_evicted_ = 0;
  std::size_t skipped_rows_ = 0;
  std::chrono::steady_clock::time_point last_expiry_{};
  RateLimitedLog table_log_;  // a flood of new MACs must not flood the log too
  config::SiteConfigPtr config_;
  std::vector<std::function<void(const MacAddress&)>> listeners_;
};

}  // namespace ve::daemon
