#include "daemon/journey.hpp"

#include <sqlite3.h>

#include <set>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "ve/log.hpp"

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
  }
  return "";
}

nlohmann::json event_json(const PhoneEvent& e) {
  nlohmann::json attrs = nlohmann::json::object();
  for (const auto& [k, v] : e.attributes) attrs[k] = v;
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

PhoneEvent event_from(const MacAddress& mac, const nlohmann::json& j) {
  PhoneEvent e;
  e.mac = mac;
  e.step = static_cast<Step>(j.value("step", 1));
  e.outcome = outcome_from(j.value("outcome", "info"));
  e.detail = j.value("detail", "");
  e.time = from_ms(j.value("time_ms", std::int64_t{0}));
  e.port = j.value("port", "");
  e.ip = j.value("ip", "");
  e.history_only = j.value("history_only", false);
  if (j.contains("attributes"))
    for (const auto& [k, v] : j["attributes"].items()) e.attributes.emplace_back(k, v.get<std::string>());
  return e;
}

}  // namespace

bool PhoneJourney::registered() const {
  const auto& r = step(Step::Register);
  return r.seen && r.outcome == Outcome::Ok;
}

struct JourneyTracker::Db {
  sqlite3* handle = nullptr;
  std::set<MacAddress> dirty;
  ~Db() {
    if (handle) sqlite3_close(handle);
  }
};

JourneyTracker::JourneyTracker(std::filesystem::path database) : database_path_(std::move(database)) {
  if (!database_path_.empty()) {
    open_database();
    load_database();
  }
}

JourneyTracker::~JourneyTracker() { flush(); }

void JourneyTracker::open_database() {
  auto log = ve::logger("journey");
  db_ = std::make_unique<Db>();
  if (sqlite3_open(database_path_.c_str(), &db_->handle) != SQLITE_OK) {
    log->error("cannot open {}: {}; timelines will not survive a restart", database_path_.string(),
               db_->handle ? sqlite3_errmsg(db_->handle) : "out of memory");
    db_.reset();
    return;
  }
  sqlite3_busy_timeout(db_->handle, 1000);
  char* err = nullptr;
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS phone_journey (mac TEXT PRIMARY KEY, data TEXT NOT NULL);";
  if (sqlite3_exec(db_->handle, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    log->error("cannot prepare {}: {}", database_path_.string(), err ? err : "?");
    sqlite3_free(err);
    db_.reset();
  }
}

void JourneyTracker::load_database() {
  if (!db_) return;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_->handle, "SELECT mac, data FROM phone_journey", -1, &st, nullptr) != SQLITE_OK) return;
  std::size_t loaded = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const auto* mac_text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    auto mac = MacAddress::parse(mac_text ? mac_text : "");
    if (!mac || !data) continue;
    auto j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded()) continue;
    PhoneJourney p;
    p.mac = *mac;
    p.first_seen = from_ms(j.value("first_seen_ms", std::int64_t{0}));
    p.last_seen = from_ms(j.value("last_seen_ms", std::int64_t{0}));
    const auto steps = j.value("steps", nlohmann::json::array());
    for (const auto& s : steps) {
      const int n = s.value("step", 0);
      if (n < 1 || n > kStepCount) continue;
      auto& st_state = p.steps[static_cast<std::size_t>(n) - 1];
      st_state.seen = true;
      st_state.outcome = outcome_from(s.value("outcome", "info"));
      st_state.detail = s.value("detail", "");
      st_state.first = from_ms(s.value("first_ms", std::int64_t{0}));
      st_state.last = from_ms(s.value("last_ms", std::int64_t{0}));
    }
    // Named locals: iterating items() of a temporary would dangle.
    const auto facts = j.value("facts", nlohmann::json::object());
    for (const auto& [k, v] : facts.items())
      if (v.is_string()) p.facts[k] = v.get<std::string>();
    const auto history = j.value("history", nlohmann::json::array());
    for (const auto& e : history) p.history.push_back(event_from(*mac, e));
    phones_[*mac] = std::move(p);
    ++loaded;
  }
  sqlite3_finalize(st);
  if (loaded) ve::logger("journey")->info("restored {} phone timelines from {}", loaded, database_path_.string());
}

void JourneyTracker::report(PhoneEvent event) {
  if (event.mac.is_zero()) return;
  if (!phones_.contains(event.mac) && phones_.size() >= kMaxPhones) {
    ve::logger("journey")->warn("phone table full ({}); event for {} dropped", kMaxPhones, event.mac.to_string());
    return;
  }
  // A step that changes state is written at once, so a crash right after (kill -9, power loss
  // of the box) cannot lose where a phone stands; repeats (refreshes) ride the next timed flush.
  const auto known = phones_.find(event.mac);
  const StepState* before = known == phones_.end() ? nullptr : &known->second.step(event.step);
  const bool changed = !event.history_only && (!before || !before->seen || before->outcome != event.outcome);
  apply(event);
  if (!event.history_only) infer_phone_only_steps(event);
  if (db_) {
    db_->dirty.insert(event.mac);
    if (changed) flush();
  }
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
    auto active = p.facts.find("active_load");
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

void JourneyTracker::apply(const PhoneEvent& e) {
  auto& p = phones_[e.mac];
  p.mac = e.mac;
  if (e.history_only) {
    p.history.push_back(e);
    while (p.history.size() > kHistoryPerPhone) p.history.pop_front();
    return;
  }
  if (p.first_seen.time_since_epoch().count() == 0 || e.time < p.first_seen) p.first_seen = e.time;
  if (e.time > p.last_seen) p.last_seen = e.time;
  auto& s = p.steps[static_cast<std::size_t>(e.step) - 1];
  if (!s.seen) s.first = e.time;
  s.seen = true;
  s.outcome = e.outcome;
  s.detail = e.detail;
  s.last = e.time;
  if (!e.ip.empty()) p.facts["ip"] = e.ip;
  if (!e.port.empty()) p.facts["port"] = e.port;
  for (const auto& [k, v] : e.attributes) p.facts[k] = v;
  p.history.push_back(e);
  while (p.history.size() > kHistoryPerPhone) p.history.pop_front();
}

void JourneyTracker::flush() {
  if (!db_ || db_->dirty.empty()) return;
  auto log = ve::logger("journey");
  if (sqlite3_exec(db_->handle, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    log->warn("cannot write timelines: {}", sqlite3_errmsg(db_->handle));
    return;  // dirty phones stay dirty: the next flush tries again
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_->handle, "INSERT OR REPLACE INTO phone_journey (mac, data) VALUES (?, ?)", -1, &st,
                         nullptr) != SQLITE_OK) {
    log->warn("cannot write timelines: {}", sqlite3_errmsg(db_->handle));
    sqlite3_exec(db_->handle, "ROLLBACK", nullptr, nullptr, nullptr);
    return;
  }
  for (const auto& mac : db_->dirty) {
    auto it = phones_.find(mac);
    if (it == phones_.end()) continue;
    const auto& p = it->second;
    nlohmann::json j;
    j["first_seen_ms"] = to_ms(p.first_seen);
    j["last_seen_ms"] = to_ms(p.last_seen);
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
    j["facts"] = p.facts;
    j["history"] = nlohmann::json::array();
    for (const auto& e : p.history) j["history"].push_back(event_json(e));
    const auto mac_text = mac.to_string();
    const auto data = j.dump();
    sqlite3_bind_text(st, 1, mac_text.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, data.c_str(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
      ++persisted_;
    else
      log->warn("cannot write the timeline of {}: {}", mac_text, sqlite3_errmsg(db_->handle));
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (sqlite3_exec(db_->handle, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    log->warn("cannot commit timelines: {}", sqlite3_errmsg(db_->handle));
    sqlite3_exec(db_->handle, "ROLLBACK", nullptr, nullptr, nullptr);
    return;
  }
  log->debug("{} timeline(s) written", db_->dirty.size());
  db_->dirty.clear();
}

const PhoneJourney* JourneyTracker::find(const std::string& key) const {
  if (auto mac = MacAddress::parse(key)) {
    auto it = phones_.find(*mac);
    return it == phones_.end() ? nullptr : &it->second;
  }
  for (const auto& [mac, p] : phones_) {
    auto ip = p.facts.find("ip");
    if (ip != p.facts.end() && ip->second == key) return &p;
  }
  for (const auto& [mac, p] : phones_) {
    auto port = p.facts.find("port");
    if (port != p.facts.end() && port->second == key) return &p;
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
  const bool port_known = p.facts.contains("port");
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
  auto fact = [&](const char* k) {
    auto it = p.facts.find(k);
    return it == p.facts.end() ? std::string() : it->second;
  };
  const auto diag = diagnose(p);
  std::string registration;
  if (p.registered()) {
    const auto with = fact("registered_with");
    registration = with.empty() ? "Registered" : "Registered with " + with;
  } else {
    registration = "Not registered (" + diag.reason + ")";
  }
  const config::Phone* listed = config_ ? config_->find_phone(p.mac) : nullptr;
  std::string model = fact("model");
  if (model.empty() && listed) model = listed->model;
  std::string download = fact("download_status");
  if (download.empty()) download = "None";
  return {{"name", p.mac.sep_name()},
          {"mac", p.mac.to_string()},
          {"registration", registration},
          {"registered", p.registered()},
          {"ipv4_address", fact("ip")},
          {"active_load_id", fact("active_load")},
          {"inactive_load_id", fact("inactive_load")},
          {"download_status", download},
          {"port", fact("port")},
          {"power_w", fact("power_w")},
          {"vlan", fact("vlan")},
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
  return j;
}

}  // namespace ve::daemon
