#include "daemon/journey.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include <iterator>
#include <set>
#include <stdexcept>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "ve/log.hpp"
#include "ve/state_file.hpp"

namespace ve::daemon {
namespace {

using Clock = std::chrono::system_clock;

std::int64_t to_ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_ms(std::int64_t ms) { return Clock::time_point(std::chrono::milliseconds(ms)); }

std::string iso_time(Clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  const auto ms = to_ms(t) % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(Clock::to_time_t(t)), ms);
}

// Steps a phone must pass to be registered. Step 2 happens inside the phone; 8, 9 and 12-14 are
// downloads a phone may skip (same load, no dial rules, cached locale).
constexpr std::array<Step, 8> kRequired = {
    Step::Power,      Step::VoiceVlan,          Step::Dhcp,    Step::CtlFile, Step::ItlFile,
    Step::ConfigFile, Step::CallManagerConnect, Step::Register};

std::string_view missing_hint(Step s) {
  switch (s) {
    case Step::Power:
      return "no power reported on the phone's port — check the PoE mode and budget (show power inline)";
    case Step::Firmware: return "phone has not booted";
    case Step::VoiceVlan:
      return "no CDP/LLDP seen from the phone — check the cable and that CDP/LLDP is enabled on the port";
    case Step::Dhcp:
      return "no DHCP lease — check that the port's VLAN has a subnet and that kea-dhcp4 runs (show dhcp leases)";
    case Step::CtlFile:
      return "phone never asked for its CTL file — check option 150 reached it and TFTP/HTTP 6970 is reachable";
    case Step::ItlFile: return "phone never asked for its ITL file";
    case Step::ConfigFile: return "phone never asked for its SEP<MAC>.cnf.xml";
    case Step::FirmwareLoad: return "firmware load not downloaded";
    case Step::DialRules: return "dial rules not downloaded";
    case Step::CallManagerConnect:
      return "phone did not connect to any call manager of its group — check sip.listen and the group's addresses";
    case Step::Register: return "phone connected but never sent REGISTER";
    case Step::Locale: return "locale not downloaded";
    case Step::Softkeys: return "softkey file not downloaded";
    case Step::Ringtones: return "ring list not downloaded";
    case Step::InService: return "";  // not a boot step: never missing
  }
  return "";
}

nlohmann::json event_json(const PhoneEvent& e) {
  nlohmann::json attrs = nlohmann::json::object();
  for (const auto& [k, v] : e.attributes) attrs[std::string(to_string(k))] = v;
  return {{"step", static_cast<int>(e.step)},
          {"name", std::string(to_string(e.step))},
          {"outcome", std::string(to_string(e.outcome))},
          {"detail", e.detail},
          {"time", iso_time(e.time)},
          {"time_ms", to_ms(e.time)},
          {"port", e.port},
          {"ip", e.ip},
          {"attributes", attrs},
          {"history_only", e.history_only}};
}

Outcome outcome_from(std::string_view s) {
  if (s == "ok") return Outcome::Ok;
  if (s == "expected") return Outcome::Expected;
  if (s == "failed") return Outcome::Failed;
  return Outcome::Info;
}

// Times are written by us in ms since 1970; anything outside 1970-9999 is damage (and would
// make the formatting of the timeline throw later).
std::int64_t checked_ms(std::int64_t ms) {
  constexpr std::int64_t kYear9999 = 253402300799999;
  if (ms < 0 || ms > kYear9999) throw std::out_of_range("time " + std::to_string(ms));
  return ms;
}

// Throws nlohmann::json::exception on a value of the wrong type: the caller skips the row.
PhoneEvent event_from(const MacAddress& mac, const nlohmann::json& j) {
  PhoneEvent e;
  e.mac = mac;
  const int step = j.value("step", 1);
  // Boot steps 1..14, and the in-service events (calls) after them.
  if (step < 1 || step > static_cast<int>(Step::InService)) throw std::out_of_range("step " + std::to_string(step));
  e.step = static_cast<Step>(step);
  e.outcome = outcome_from(j.value("outcome", "info"));
  e.detail = j.value("detail", "");
  e.time = from_ms(checked_ms(j.value("time_ms", std::int64_t{0})));
  e.port = j.value("port", "");
  e.ip = j.value("ip", "");
  e.history_only = j.value("history_only", false);
  if (j.contains("attributes"))
    for (const auto& [k, v] : j["attributes"].items())
      if (auto fact = fact_from_string(k)) e.attributes.emplace_back(*fact, v.get<std::string>());
  return e;
}

}  // namespace

bool PhoneJourney::registered() const {
  const auto& r = step(Step::Register);
  return r.seen && r.outcome == Outcome::Ok;
}

namespace {
// SQLite's word for "this file is not (or no longer) a database we can use".
bool damaged(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT || primary == SQLITE_FORMAT;
}

}  // namespace

struct JourneyTracker::Db {
  sqlite3* handle = nullptr;
  std::set<MacAddress> dirty;
  std::set<MacAddress> deleted;  // pushed out or expired: their rows go at the next flush
  ino_t inode = 0;               // of the file we opened: a replaced file is noticed
  dev_t device = 0;
  ~Db() {
    if (handle) sqlite3_close(handle);
  }
};

JourneyTracker::JourneyTracker(std::filesystem::path database, config::SiteConfigPtr config)
    : database_path_(std::move(database)), config_(std::move(config)) {
  if (!database_path_.empty()) {
    open_database();
    load_database();
  }
}

JourneyTracker::~JourneyTracker() { flush(); }

void JourneyTracker::open_database() {
  auto log = ve::logger("journey");
  for (int attempt = 0; attempt < 2; ++attempt) {
    db_ = std::make_unique<Db>();
    const int rc = sqlite3_open(database_path_.c_str(), &db_->handle);
    if (rc == SQLITE_OK && prepare_schema()) {
      struct stat st {};
      if (::stat(database_path_.c_str(), &st) == 0) {
        db_->inode = st.st_ino;
        db_->device = st.st_dev;
      }
      return;
    }
    const std::string why = db_->handle ? sqlite3_errmsg(db_->handle) : "out of memory";
    const int code = db_->handle ? sqlite3_extended_errcode(db_->handle) : rc;
    db_.reset();
    if (attempt == 0 && damaged(code)) {
      ve::set_aside(database_path_, why, "journey", {"-wal", "-shm"});
      continue;
    }
    log->error("cannot open {}: {}; timelines will not survive a restart", database_path_.string(), why);
    return;
  }
}

bool JourneyTracker::prepare_schema() {
  sqlite3_busy_timeout(db_->handle, 1000);
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS phone_journey (mac TEXT PRIMARY KEY, data TEXT NOT NULL);";
  if (sqlite3_exec(db_->handle, schema, nullptr, nullptr, nullptr) != SQLITE_OK) return false;
  // A table of another shape (a foreign or half-written file) cannot be read either.
  sqlite3_stmt* st = nullptr;
  const bool readable =
      sqlite3_prepare_v2(db_->handle, "SELECT mac, data FROM phone_journey LIMIT 0", -1, &st, nullptr) == SQLITE_OK;
  sqlite3_finalize(st);
  return readable;
}

std::string JourneyTracker::file_problem() const {
  struct stat st {};
  if (::stat(database_path_.c_str(), &st) != 0) return "removed while in use";
  if (st.st_ino != db_->inode || st.st_dev != db_->device) return "replaced while in use";
  char header[16] = {};
  std::FILE* f = std::fopen(database_path_.c_str(), "rb");
  if (!f) return "";
  const auto n = std::fread(header, 1, sizeof header, f);
  std::fclose(f);
  if (n != sizeof header || std::memcmp(header, "SQLite format 3", 16) != 0) return "overwritten while in use";
  return "";
}

void JourneyTracker::recover_database(const std::string& reason) {
  db_.reset();
  ve::set_aside(database_path_, reason, "journey", {"-wal", "-shm"});
  open_database();
  if (!db_) return;
  // Nothing is lost: memory has every timeline; write them all to the fresh file.
  for (const auto& [mac, p] : phones_) db_->dirty.insert(mac);
}

void JourneyTracker::load_database() {
  if (!db_) return;
  auto log = ve::logger("journey");
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_->handle, "SELECT mac, data FROM phone_journey", -1, &st, nullptr) != SQLITE_OK) {
    recover_database(sqlite3_errmsg(db_->handle));
    return;
  }
  std::size_t loaded = 0;
  std::size_t expired = 0;
  const auto now = Clock::now();
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* mac_text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    auto mac = MacAddress::parse(mac_text ? mac_text : "");
    if (!mac || !data) {
      ++skipped_rows_;
      continue;
    }
    auto j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ++skipped_rows_;
      db_->deleted.insert(*mac);
      continue;
    }
    PhoneJourney p;
    try {
      p = journey_from(*mac, j);
    } catch (const std::exception& e) {
      // One bad row (a value of the wrong type, a step out of range) costs that row only.
      if (skipped_rows_ == 0)
        log->warn("{}: skipping unreadable timeline of {}: {}", database_path_.string(), mac->to_string(), e.what());
      ++skipped_rows_;
      db_->deleted.insert(*mac);
      continue;
    }
    if (!trusted(p) && p.last_seen + kUnverifiedMaxAge < now) {
      ++expired;
      db_->deleted.insert(*mac);
      continue;
    }
    phones_[*mac] = std::move(p);
    classify(*mac);
    ++loaded;
  }
  sqlite3_finalize(st);
  if (damaged(rc)) {
    // Damage found mid-table: keep what was read, set the file aside, write a clean one.
    recover_database(sqlite3_errmsg(db_->handle));
  }
  trim_unverified(kMaxUnverified);
  if (skipped_rows_) log->warn("{}: {} unreadable timeline(s) skipped", database_path_.string(), skipped_rows_);
  if (expired)
    log->info("{}: {} unverified timeline(s) older than {} h dropped", database_path_.string(), expired,
              kUnverifiedMaxAge.count());
  if (loaded) log->info("restored {} phone timelines from {}", loaded, database_path_.string());
  flush();  // the deletions
}

// Throws nlohmann::json::exception (or std::out_of_range) on a malformed row.
PhoneJourney JourneyTracker::journey_from(const MacAddress& mac, const nlohmann::json& j) {
  const auto list = [&](const char* key) {
    auto v = j.value(key, nlohmann::json::array());
    if (!v.is_array()) throw std::invalid_argument(std::string(key) + " is not a list");
    return v;
  };
  PhoneJourney p;
  p.mac = mac;
  p.first_seen = from_ms(checked_ms(j.value("first_seen_ms", std::int64_t{0})));
  p.last_seen = from_ms(checked_ms(j.value("last_seen_ms", std::int64_t{0})));
  p.verified = j.value("verified", false);
  for (const auto& s : list("steps")) {
    const int n = s.value("step", 0);
    if (n < 1 || n > kStepCount) throw std::out_of_range("step " + std::to_string(n));
    auto& st_state = p.steps[static_cast<std::size_t>(n) - 1];
    st_state.seen = true;
    st_state.outcome = outcome_from(s.value("outcome", "info"));
    st_state.detail = s.value("detail", "");
    st_state.first = from_ms(checked_ms(s.value("first_ms", std::int64_t{0})));
    st_state.last = from_ms(checked_ms(s.value("last_ms", std::int64_t{0})));
  }
  // Named locals: iterating items() of a temporary would dangle.
  const auto facts = j.value("facts", nlohmann::json::object());
  if (!facts.is_object()) throw std::invalid_argument("facts is not a map");
  // A name this build does not know (written by a newer daemon) is left out, not an error.
  for (const auto& [k, v] : facts.items())
    if (auto fact = fact_from_string(k); fact && v.is_string()) p.facts[*fact] = v.get<std::string>();
  for (const auto& e : list("history")) p.history.push_back(event_from(mac, e));
  p.history_dropped = j.value("history_dropped", std::uint64_t{0});
  p.history_dropped += trim_history(p.history, kHistoryPerPhone);  // written with a larger bound
  return p;
}

bool JourneyTracker::trusted(const PhoneJourney& p) const {
  return p.verified || (config_ && config_->find_phone(p.mac) != nullptr);
}

void JourneyTracker::classify(const MacAddress& mac) {
  auto it = phones_.find(mac);
  if (it == phones_.end() || trusted(it->second))
    unverified_.erase(mac);
  else
    unverified_.insert(mac);
}

void JourneyTracker::set_config(config::SiteConfigPtr config) {
  config_ = std::move(config);
  for (const auto& [mac, p] : phones_) classify(mac);
  trim_unverified(kMaxUnverified);
}

void JourneyTracker::forget(const MacAddress& mac) {
  phones_.erase(mac);
  unverified_.erase(mac);
  if (db_) {
    db_->dirty.erase(mac);
    db_->deleted.insert(mac);
  }
}

// Pushes out the least recently seen unverified phones until at most `keep` remain.
void JourneyTracker::trim_unverified(std::size_t keep) {
  while (unverified_.size() > keep) {
    const MacAddress* oldest = nullptr;
    Clock::time_point oldest_seen = Clock::time_point::max();
    for (const auto& mac : unverified_) {
      const auto& p = phones_.at(mac);
      if (!oldest || p.last_seen < oldest_seen) {
        oldest = &mac;
        oldest_seen = p.last_seen;
      }
    }
    const MacAddress victim = *oldest;
    forget(victim);
    ++unverified_evicted_;
    table_log_.warn("journey", "unverified phone table full ({}): {} pushed out ({} in all)", kMaxUnverified,
                    victim.to_string(), unverified_evicted_);
  }
}

void JourneyTracker::expire_unverified(Clock::time_point now) {
  std::vector<MacAddress> old;
  for (const auto& mac : unverified_)
    if (phones_.at(mac).last_seen + kUnverifiedMaxAge < now) old.push_back(mac);
  for (const auto& mac : old) forget(mac);
  if (!old.empty())
    ve::logger("journey")->info("{} unverified phone(s) silent for {} h forgotten", old.size(),
                                kUnverifiedMaxAge.count());
}

void JourneyTracker::report(PhoneEvent event) {
  if (event.mac.is_zero()) return;
  if (!phones_.contains(event.mac)) {
    const bool listed = config_ && config_->find_phone(event.mac) != nullptr;
    if (event.verified && !listed && phones_.size() - unverified_.size() >= kMaxPhones) {
      table_log_.warn("journey", "phone table full ({}); event for {} dropped", kMaxPhones, event.mac.to_string());
      return;
    }
    // A newcomer nobody vouches for takes the place of the least recently seen one.
    if (!listed && !event.verified && kMaxUnverified > 0) trim_unverified(kMaxUnverified - 1);
  }
  // A step that changes state is written at once, so a crash right after (kill -9, power loss
  // of the box) cannot lose where a phone stands; repeats (refreshes) ride the next timed flush.
  const auto known = phones_.find(event.mac);
  const bool boot_step = static_cast<int>(event.step) >= 1 && static_cast<int>(event.step) <= kStepCount;
  const StepState* before = known == phones_.end() || !boot_step ? nullptr : &known->second.step(event.step);
  // In-service events (calls) are frequent: they ride the timed flush. History-only notices
  // change no state.
  const bool changed =
      boot_step && !event.history_only && (!before || !before->seen || before->outcome != event.outcome);
  apply(event);
  if (boot_step && !event.history_only) infer_phone_only_steps(event);
  if (event.verified) phones_[event.mac].verified = true;
  classify(event.mac);
  if (db_) {
    db_->dirty.insert(event.mac);
    if (changed) flush();
  }
  for (const auto& listener : listeners_) listener(event.mac);
}

// Two steps happen inside the phone and never reach the box directly; they are inferred from
// what the box does see, and say so in their detail.
void JourneyTracker::infer_phone_only_steps(const PhoneEvent& e) {
  auto& p = phones_[e.mac];
  if (static_cast<int>(e.step) > static_cast<int>(Step::Firmware) && !p.step(Step::Firmware).seen) {
    PhoneEvent booted;
    booted.mac = e.mac;
    booted.step = Step::Firmware;
    booted.outcome = Outcome::Ok;
    booted.time = e.time;
    booted.detail = fmt::format("inferred: firmware running (the phone reached step {})", static_cast<int>(e.step));
    apply(booted);
  }
  // Step 8 is only needed when the config names another load than the one running. The running
  // load arrives with the REGISTER (Cisco's Reason: ActiveLoad=...).
  if (e.step == Step::Register && e.outcome == Outcome::Ok && !p.step(Step::FirmwareLoad).seen) {
    auto active = p.facts.find(Fact::ActiveLoad);
    std::string wanted;
    if (const auto* listed = config_ ? config_->find_phone(e.mac) : nullptr) wanted = listed->load;
    if (wanted.empty() && config_) wanted = config_->provisioning.default_load;
    if (active != p.facts.end() && !wanted.empty() && active->second == wanted) {
      PhoneEvent same;
      same.mac = e.mac;
      same.step = Step::FirmwareLoad;
      same.outcome = Outcome::Ok;
      same.time = e.time;
      same.detail = "not needed: already running " + wanted;
      apply(same);
    }
  }
}

namespace {
// Components report from more than one thread (a TFTP worker posts a transfer's end to the loop,
// Kea's report comes over a socket), so a phone's events can arrive a few milliseconds out of
// order: the history is kept in time order and the later event owns a step's state. Beyond this
// window arrival order wins, so a wall clock stepped back (NTP) cannot freeze a step.
constexpr auto kReorderWindow = std::chrono::seconds(2);

bool happened_before(std::chrono::system_clock::time_point a, std::chrono::system_clock::time_point b) {
  return a < b && b - a <= kReorderWindow;
}

void insert_in_time_order(std::deque<PhoneEvent>& history, const PhoneEvent& e) {
  auto at = history.end();
  while (at != history.begin() && happened_before(e.time, std::prev(at)->time)) --at;
  history.insert(at, e);
}
}  // namespace

// The boot timeline (status page, report) is drawn from the history: this boot starts at the last
// power-on (step 1 ok; without one, at the oldest event kept) and each step sits where this boot
// first reached it (status_render.cpp, render_timeline_svg). Trimming drops the oldest event that
// is none of those milestones: events of earlier boots first, then repeats (refreshes, calls).
std::uint64_t trim_history(std::deque<PhoneEvent>& history, std::size_t cap) {
  std::uint64_t dropped = 0;
  while (history.size() > cap) {
    auto boot = history.front().time;
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
      if (it->step == Step::Power && it->outcome == Outcome::Ok) {
        boot = it->time;
        break;
      }
    }
    std::array<bool, kStepCount + 1> reached{};
    auto victim = history.begin();
    for (auto it = history.begin(); it != history.end(); ++it) {
      const int n = static_cast<int>(it->step);
      const bool boot_step = n >= 1 && n <= kStepCount && it->time >= boot;
      if (!boot_step || reached[static_cast<std::size_t>(n)]) {
        victim = it;
        break;
      }
      reached[static_cast<std::size_t>(n)] = true;  // a milestone: kept
    }
    history.erase(victim);
    ++dropped;
  }
  return dropped;
}

void JourneyTracker::apply(const PhoneEvent& e) {
  auto& p = phones_[e.mac];
  p.mac = e.mac;
  insert_in_time_order(p.history, e);
  p.history_dropped += trim_history(p.history, kHistoryPerPhone);
  if (e.history_only) return;
  if (p.first_seen.time_since_epoch().count() == 0 || e.time < p.first_seen) p.first_seen = e.time;
  if (e.time > p.last_seen) p.last_seen = e.time;
  const int n = static_cast<int>(e.step);
  if (n >= 1 && n <= kStepCount) {
    auto& s = p.steps[static_cast<std::size_t>(n) - 1];
    if (s.seen && happened_before(e.time, s.last)) {
      // A late report of something older: history only (the step already shows what came after).
      if (e.time < s.first) s.first = e.time;
      return;
    }
    if (!s.seen) s.first = e.time;
    s.seen = true;
    s.outcome = e.outcome;
    s.detail = e.detail;
    s.last = e.time;
  }
  if (!e.ip.empty()) p.facts[Fact::Ip] = e.ip;
  if (!e.port.empty()) p.facts[Fact::Port] = e.port;
  for (const auto& [k, v] : e.attributes) {
    p.facts[k] = v;
    if (k == Fact::LastCall) p.facts[Fact::LastCallTime] = iso_time(e.time);
  }
}

void JourneyTracker::flush() { flush_pass(true); }

void JourneyTracker::flush_pass(bool may_recover) {
  if (!database_path_.empty()) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_expiry_ >= std::chrono::minutes(1)) {
      last_expiry_ = now;
      expire_unverified();
    }
  }
  if (!db_ || (db_->dirty.empty() && db_->deleted.empty())) return;
  auto log = ve::logger("journey");
  // SQLite trusts its page cache: a file overwritten or replaced under a running daemon would go
  // unnoticed until the next start, then be lost. Check the header and the inode first.
  if (may_recover) {
    if (auto problem = file_problem(); !problem.empty()) {
      recover_database(problem);
      if (!db_) return;
    }
  }
  // The file was damaged under us (overwritten, truncated): set it aside, rewrite from memory.
  const auto recover_if_damaged = [&] {
    if (!may_recover || !damaged(sqlite3_extended_errcode(db_->handle))) return false;
    recover_database(sqlite3_errmsg(db_->handle));
    return true;
  };
  if (sqlite3_exec(db_->handle, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    log->warn("cannot write timelines: {}", sqlite3_errmsg(db_->handle));
    if (recover_if_damaged() && db_) flush_pass(false);
    return;  // dirty phones stay dirty: the next flush tries again
  }
  if (!db_->deleted.empty()) {
    sqlite3_stmt* del = nullptr;
    if (sqlite3_prepare_v2(db_->handle, "DELETE FROM phone_journey WHERE mac = ?", -1, &del, nullptr) == SQLITE_OK) {
      for (const auto& mac : db_->deleted) {
        const auto mac_text = mac.to_string();
        sqlite3_bind_text(del, 1, mac_text.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_step(del);
        sqlite3_reset(del);
      }
    }
    sqlite3_finalize(del);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_->handle, "INSERT OR REPLACE INTO phone_journey (mac, data) VALUES (?, ?)", -1, &st,
                         nullptr) != SQLITE_OK) {
    log->warn("cannot write timelines: {}", sqlite3_errmsg(db_->handle));
    sqlite3_exec(db_->handle, "ROLLBACK", nullptr, nullptr, nullptr);
    if (recover_if_damaged() && db_) flush_pass(false);
    return;
  }
  bool broken = false;
  for (const auto& mac : db_->dirty) {
    auto it = phones_.find(mac);
    if (it == phones_.end()) continue;
    const auto& p = it->second;
    nlohmann::json j;
    j["first_seen_ms"] = to_ms(p.first_seen);
    j["last_seen_ms"] = to_ms(p.last_seen);
    if (p.verified) j["verified"] = true;
    j["steps"] = nlohmann::json::array();
    for (int n = 1; n <= kStepCount; ++n) {
      const auto& s = p.steps[static_cast<std::size_t>(n) - 1];
      if (!s.seen) continue;
      j["steps"].push_back({{"step", n},
                            {"outcome", std::string(to_string(s.outcome))},
                            {"detail", s.detail},
                            {"first_ms", to_ms(s.first)},
                            {"last_ms", to_ms(s.last)}});
    }
    auto facts = nlohmann::json::object();
    for (const auto& [k, v] : p.facts) facts[std::string(to_string(k))] = v;
    j["facts"] = std::move(facts);
    j["history"] = nlohmann::json::array();
    for (const auto& e : p.history) j["history"].push_back(event_json(e));
    if (p.history_dropped) j["history_dropped"] = p.history_dropped;
    const auto mac_text = mac.to_string();
    const auto data = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // wire text may not be UTF-8
    sqlite3_bind_text(st, 1, mac_text.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, data.c_str(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
      ++persisted_;
    } else if (damaged(rc)) {
      broken = true;
      break;
    } else {
      log->warn("cannot write the timeline of {}: {}", mac_text, sqlite3_errmsg(db_->handle));
    }
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (broken) {
    sqlite3_exec(db_->handle, "ROLLBACK", nullptr, nullptr, nullptr);
    if (may_recover) {
      recover_database("write failed: the file is damaged");
      if (db_) flush_pass(false);
    }
    return;
  }
  if (sqlite3_exec(db_->handle, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    log->warn("cannot commit timelines: {}", sqlite3_errmsg(db_->handle));
    sqlite3_exec(db_->handle, "ROLLBACK", nullptr, nullptr, nullptr);
    if (recover_if_damaged() && db_) flush_pass(false);
    return;
  }
  log->debug("{} timeline(s) written", db_->dirty.size());
  db_->dirty.clear();
  db_->deleted.clear();
}

const PhoneJourney* JourneyTracker::find(const std::string& key) const {
  if (auto mac = MacAddress::parse(key)) {
    auto it = phones_.find(*mac);
    return it == phones_.end() ? nullptr : &it->second;
  }
  for (const auto& [mac, p] : phones_) {
    if (p.fact(Fact::Ip) == key) return &p;
  }
  for (const auto& [mac, p] : phones_) {
    if (p.fact(Fact::Port) == key) return &p;
  }
  return nullptr;
}

Diagnosis JourneyTracker::diagnose(const PhoneJourney& p) const {
  // A phone missing from the site file gets XMLDefault.cnf.xml, which has no line: it cannot
  // register, whatever it does next. Say so rather than only "404" or "never sent REGISTER".
  const bool unlisted_dead_end =
      config_ && !config_->find_phone(p.mac) && !config_->provisioning.auto_register && p.step(Step::ConfigFile).seen;
  const auto unlisted_reason = [&](const std::string& seen) {
    return fmt::format(
        "step 11: {} is not in the site file (phones:) and auto_register is off — it got "
        "XMLDefault.cnf.xml with no line to register{}; add it to phones: to provision it",
        p.mac.sep_name(), seen.empty() ? "" : " (registrar: " + seen + ")");
  };
  for (int n = 1; n <= kStepCount; ++n) {
    const auto& s = p.steps[static_cast<std::size_t>(n) - 1];
    if (s.seen && s.outcome == Outcome::Failed) {
      if (unlisted_dead_end && n >= static_cast<int>(Step::CallManagerConnect))
        return {Step::Register, unlisted_reason(s.detail)};
      return {static_cast<Step>(n), fmt::format("step {}: {}", n, s.detail)};
    }
  }
  if (p.registered()) return {};
  if (unlisted_dead_end) return {Step::Register, unlisted_reason("")};
  // The power step is only expected where the phone's port is known to voiceedge.
  const bool port_known = p.facts.contains(Fact::Port);
  int highest = 0;
  for (int n = 1; n <= kStepCount; ++n)
    if (p.steps[static_cast<std::size_t>(n) - 1].seen) highest = n;
  for (Step s : kRequired) {
    if (s == Step::Power && !port_known) continue;
    if (p.step(s).seen) continue;
    const int n = static_cast<int>(s);
    if (n < highest) return {s, fmt::format("step {}: skipped — {}", n, missing_hint(s))};
    return {s, fmt::format("step {}: not reached — {}", n, missing_hint(s))};
  }
  return {Step::Register, "step 11: not registered"};
}

nlohmann::json JourneyTracker::device_status(const PhoneJourney& p) const {
  auto fact = [&](Fact f) { return p.fact(f); };
  const auto diag = diagnose(p);
  std::string registration;
  if (p.registered()) {
    const auto with = fact(Fact::RegisteredWith);
    registration = with.empty() ? "Registered" : "Registered with " + with;
  } else {
    registration = "Not registered (" + diag.reason + ")";
  }
  const config::Phone* listed = config_ ? config_->find_phone(p.mac) : nullptr;
  std::string model = fact(Fact::Model);
  if (model.empty() && listed) model = listed->model;
  std::string download = fact(Fact::DownloadStatus);
  if (download.empty()) download = "None";
  return {{"name", p.mac.sep_name()},
          {"mac", p.mac.to_string()},
          {"registration", registration},
          {"registered", p.registered()},
          {"ipv4_address", fact(Fact::Ip)},
          {"active_load_id", fact(Fact::ActiveLoad)},
          {"inactive_load_id", fact(Fact::InactiveLoad)},
          {"download_status", download},
          {"port", fact(Fact::Port)},
          {"power_w", fact(Fact::PowerW)},
          {"vlan", fact(Fact::Vlan)},
          {"model", model},
          {"listed", listed != nullptr},
          {"description", listed ? listed->description : ""}};
}

nlohmann::json JourneyTracker::phones_json() const {
  auto out = nlohmann::json::array();
  for (const auto& [mac, p] : phones_) {
    auto j = device_status(p);
    const auto diag = diagnose(p);
    j["failed_step"] = diag.step ? nlohmann::json(static_cast<int>(*diag.step)) : nlohmann::json(nullptr);
    j["reason"] = diag.reason;
    j["first_seen"] = iso_time(p.first_seen);
    j["last_seen"] = iso_time(p.last_seen);
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json JourneyTracker::journey_json(const PhoneJourney& p) const {
  nlohmann::json j;
  j["phone"] = device_status(p);
  const auto diag = diagnose(p);
  j["failed_step"] = diag.step ? nlohmann::json(static_cast<int>(*diag.step)) : nlohmann::json(nullptr);
  j["reason"] = diag.reason;
  j["steps"] = nlohmann::json::array();
  for (int n = 1; n <= kStepCount; ++n) {
    const auto& s = p.steps[static_cast<std::size_t>(n) - 1];
    j["steps"].push_back({{"step", n},
                          {"name", std::string(to_string(static_cast<Step>(n)))},
                          {"seen", s.seen},
                          {"outcome", s.seen ? std::string(to_string(s.outcome)) : std::string()},
                          {"detail", s.detail},
                          {"first", iso_time(s.first)},
                          {"last", iso_time(s.last)}});
  }
  j["history"] = nlohmann::json::array();
  for (const auto& e : p.history) j["history"].push_back(event_json(e));
  j["history_dropped"] = p.history_dropped;
  return j;
}

}  // namespace ve::daemon
