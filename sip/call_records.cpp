// Call detail records in SQLite.
#include "sip/call_records.hpp"

#include <sqlite3.h>

#include <fmt/format.h>

#include "ve/log.hpp"

namespace ve::sip {
namespace {

using Clock = std::chrono::system_clock;

std::int64_t ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
Clock::time_point from_ms(std::int64_t v) { return Clock::time_point(std::chrono::milliseconds(v)); }

std::string text(sqlite3_stmt* st, int i) {
  const auto* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS call_records (id INTEGER PRIMARY KEY, call_id TEXT, caller TEXT, called TEXT, "
    "answered_by TEXT, started_ms INTEGER, answered_ms INTEGER, ended_ms INTEGER, final_code INTEGER, reason TEXT, "
    "ended_by TEXT, caller_transport TEXT, callee_transport TEXT);";

}  // namespace

CallRecords::~CallRecords() { close(); }

Result<void, std::string> CallRecords::open(const std::filesystem::path& db_path) {
  close();
  auto try_open = [&]() -> bool {
    if (sqlite3_open(db_path.c_str(), &db_) != SQLITE_OK) return false;
    sqlite3_busy_timeout(db_, 1000);
    return sqlite3_exec(db_, kSchema, nullptr, nullptr, nullptr) == SQLITE_OK;
  };
  if (!try_open()) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    std::error_code ec;
    if (!std::filesystem::exists(db_path, ec)) return unexpected(fmt::format("{}: {}", db_path.string(), why));
    const auto aside = db_path.string() + fmt::format(".corrupt-{}", ms(Clock::now()) / 1000);
    std::filesystem::rename(db_path, aside, ec);
    ve::logger("sip")->error("call records {} unusable ({}): moved to {}, starting empty", db_path.string(), why,
                             aside);
    if (!try_open()) return unexpected(fmt::format("{}: {}", db_path.string(), db_ ? sqlite3_errmsg(db_) : why));
  }
  return {};
}

void CallRecords::close() {
  flush();
  if (db_) sqlite3_close(db_);
  db_ = nullptr;
}

void CallRecords::flush() {
  if (!db_ || pending_.empty()) {
    if (!db_) pending_.clear();
    return;
  }
  sqlite3_stmt* st = nullptr;
  bool ok = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK &&
            sqlite3_prepare_v2(db_,
                               "INSERT INTO call_records (call_id, caller, called, answered_by, started_ms, "
                               "answered_ms, ended_ms, final_code, reason, ended_by, caller_transport, "
                               "callee_transport) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                               -1, &st, nullptr) == SQLITE_OK;
  for (std::size_t i = 0; ok && i < pending_.size(); ++i) {
    const auto& c = pending_[i];
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, c.call_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, c.from.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, c.to.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, c.answered_by.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, ms(c.started));
    if (c.answered)
      sqlite3_bind_int64(st, 6, ms(*c.answered));
    else
      sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, ms(c.ended.value_or(c.started)));
    sqlite3_bind_int(st, 8, c.final_code);
    sqlite3_bind_text(st, 9, c.reason.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, c.ended_by.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 11, std::string(to_string(c.caller_transport)).c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 12, std::string(to_string(c.callee_transport)).c_str(), -1, SQLITE_TRANSIENT);
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  if (st) sqlite3_finalize(st);
  if (ok) {
    const auto trim =
        fmt::format("DELETE FROM call_records WHERE id <= (SELECT MAX(id) FROM call_records) - {}", retention_);
    sqlite3_exec(db_, trim.c_str(), nullptr, nullptr, nullptr);
    ok = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  if (!ok) {
    ++write_errors_;
    ve::logger("sip")->warn("call records: write failed: {}; {} records kept for the next try", sqlite3_errmsg(db_),
                            pending_.size());
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    if (pending_.size() > 10000) pending_.erase(pending_.begin(), pending_.begin() + 5000);  // bounded
    return;
  }
  pending_.clear();
}

std::vector<CallInfo> CallRecords::recent(std::size_t limit) const {
  std::vector<CallInfo> out;
  if (!db_) return out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT call_id, caller, called, answered_by, started_ms, answered_ms, ended_ms, final_code, "
                         "reason, ended_by, caller_transport, callee_transport FROM call_records ORDER BY id DESC "
                         "LIMIT ?",
                         -1, &st, nullptr) != SQLITE_OK)
    return out;
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(limit));
  while (sqlite3_step(st) == SQLITE_ROW) {
    CallInfo c;
    c.call_id = text(st, 0);
    c.from = text(st, 1);
    c.to = text(st, 2);
    c.answered_by = text(st, 3);
    c.started = from_ms(sqlite3_column_int64(st, 4));
    if (sqlite3_column_type(st, 5) != SQLITE_NULL) c.answered = from_ms(sqlite3_column_int64(st, 5));
    c.ended = from_ms(sqlite3_column_int64(st, 6));
    c.final_code = sqlite3_column_int(st, 7);
    c.reason = text(st, 8);
    c.ended_by = text(st, 9);
    c.caller_transport = text(st, 10) == "tcp" ? Transport::Tcp : Transport::Udp;
    c.callee_transport = text(st, 11) == "tcp" ? Transport::Tcp : Transport::Udp;
    c.state = "ended";
    out.push_back(std::move(c));
  }
  sqlite3_finalize(st);
  return out;
}

}  // namespace ve::sip
