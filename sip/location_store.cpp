#include "sip/location_store.hpp"

#include <sqlite3.h>

#include <algorithm>

namespace ve::sip {
namespace {

using Clock = std::chrono::system_clock;

std::int64_t to_unix(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
Clock::time_point from_unix(std::int64_t s) { return Clock::time_point(std::chrono::seconds(s)); }

std::string column_text(sqlite3_stmt* st, int i) {
  const auto* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sip_bindings (
  user TEXT NOT NULL, binding_key TEXT NOT NULL, aor TEXT, contact TEXT, instance TEXT,
  transport TEXT, source TEXT, call_id TEXT, cseq INTEGER, registered_at INTEGER, expires_at INTEGER,
  mac TEXT, device_name TEXT, model TEXT, user_agent TEXT, active_load TEXT, inactive_load TEXT,
  reason_name TEXT, PRIMARY KEY (user, binding_key));
)sql";

}  // namespace

std::string binding_key(const BindingInfo& b) { return b.instance.empty() ? b.contact : b.instance; }

LocationStore::~LocationStore() { close(); }

void LocationStore::flush() {
  if (!db_ || pending_.empty()) {
    pending_.clear();
    return;
  }
  sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  for (const auto& [id, binding] : pending_) {
    if (binding)
      write_upsert(*binding);
    else
      write_remove(id.first, id.second);
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) ++write_errors_;
  pending_.clear();
}

void LocationStore::close() {
  flush();
  if (upsert_stmt_) sqlite3_finalize(upsert_stmt_);
  if (delete_stmt_) sqlite3_finalize(delete_stmt_);
  if (db_) sqlite3_close(db_);
  upsert_stmt_ = delete_stmt_ = nullptr;
  db_ = nullptr;
}

Result<void, std::string> LocationStore::open(const std::filesystem::path& db_path) {
  close();
  if (sqlite3_open(db_path.c_str(), &db_) != SQLITE_OK) {
    std::string err = db_ ? sqlite3_errmsg(db_) : "out of memory";
    close();
    return unexpected("cannot open " + db_path.string() + ": " + err);
  }
  // WAL with synchronous=NORMAL: a commit is not an fsync, and a crash loses at most the last
  // few registrations (phones refresh them anyway).
  char* err = nullptr;
  const std::string setup = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") + kSchema;
  if (sqlite3_exec(db_, setup.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    close();
    return unexpected("cannot set up " + db_path.string() + ": " + msg);
  }
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO sip_bindings VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,"
                         "?15,?16,?17,?18)",
                         -1, &upsert_stmt_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, "DELETE FROM sip_bindings WHERE user=?1 AND binding_key=?2", -1, &delete_stmt_,
                         nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    close();
    return unexpected("cannot prepare statements: " + msg);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT user, aor, contact, instance, transport, source, call_id, cseq, registered_at, "
                         "expires_at, mac, device_name, model, user_agent, active_load, inactive_load, reason_name "
                         "FROM sip_bindings",
                         -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    close();
    return unexpected("cannot read bindings: " + msg);
  }
  by_user_.clear();
  while (sqlite3_step(st) == SQLITE_ROW) {
    BindingInfo b;
    b.user = column_text(st, 0);
    b.aor = column_text(st, 1);
    b.contact = column_text(st, 2);
    b.instance = column_text(st, 3);
    b.transport = column_text(st, 4) == "tcp" ? Transport::Tcp : Transport::Udp;
    b.source = column_text(st, 5);
    b.call_id = column_text(st, 6);
    b.cseq = static_cast<std::uint32_t>(sqlite3_column_int64(st, 7));
    b.registered_at = from_unix(sqlite3_column_int64(st, 8));
    b.expires_at = from_unix(sqlite3_column_int64(st, 9));
    if (auto mac = MacAddress::parse(column_text(st, 10))) b.mac = *mac;
    b.device_name = column_text(st, 11);
    b.model = column_text(st, 12);
    b.user_agent = column_text(st, 13);
    b.active_load = column_text(st, 14);
    b.inactive_load = column_text(st, 15);
    b.reason_name = column_text(st, 16);
    by_user_[b.user].push_back(std::move(b));
  }
  sqlite3_finalize(st);
  return {};
}

const std::vector<BindingInfo>* LocationStore::find(const std::string& user) const {
  auto it = by_user_.find(user);
  return it == by_user_.end() || it->second.empty() ? nullptr : &it->second;
}

const BindingInfo* LocationStore::find(const std::string& user, const std::string& key) const {
  const auto* list = find(user);
  if (!list) return nullptr;
  for (const auto& b : *list)
    if (binding_key(b) == key) return &b;
  return nullptr;
}

bool LocationStore::upsert(const BindingInfo& b) {
  auto& list = by_user_[b.user];
  const auto key = binding_key(b);
  bool created = true;
  auto it = std::find_if(list.begin(), list.end(), [&](const BindingInfo& x) { return binding_key(x) == key; });
  if (it != list.end()) {
    *it = b;
    created = false;
  } else {
    list.push_back(b);
  }
  persist_upsert(b);
  return created;
}

bool LocationStore::remove(const std::string& user, const std::string& key) {
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return false;
  auto& list = u->second;
  auto it = std::find_if(list.begin(), list.end(), [&](const BindingInfo& x) { return binding_key(x) == key; });
  if (it == list.end()) return false;
  list.erase(it);
  if (list.empty()) by_user_.erase(u);
  persist_remove(user, key);
  return true;
}

std::vector<BindingInfo> LocationStore::remove_all(const std::string& user) {
  std::vector<BindingInfo> removed;
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return removed;
  removed = std::move(u->second);
  by_user_.erase(u);
  for (const auto& b : removed) persist_remove(user, binding_key(b));
  return removed;
}

std::vector<BindingInfo> LocationStore::expire(Clock::time_point now) {
  std::vector<BindingInfo> removed;
  for (auto u = by_user_.begin(); u != by_user_.end();) {
    auto& list = u->second;
    for (auto it = list.begin(); it != list.end();) {
      if (it->expires_at <= now) {
        persist_remove(it->user, binding_key(*it));
        removed.push_back(std::move(*it));
        it = list.erase(it);
      } else {
        ++it;
      }
    }
    u = list.empty() ? by_user_.erase(u) : std::next(u);
  }
  return removed;
}

std::vector<BindingInfo> LocationStore::all() const {
  std::vector<BindingInfo> out;
  for (const auto& [user, list] : by_user_) out.insert(out.end(), list.begin(), list.end());
  std::sort(out.begin(), out.end(), [](const BindingInfo& a, const BindingInfo& b) {
    return std::tie(a.user, a.contact) < std::tie(b.user, b.contact);
  });
  return out;
}

std::size_t LocationStore::size() const {
  std::size_t n = 0;
  for (const auto& [user, list] : by_user_) n += list.size();
  return n;
}

void LocationStore::persist_upsert(const BindingInfo& b) {
  if (db_) pending_[{b.user, binding_key(b)}] = b;
}

void LocationStore::persist_remove(const std::string& user, const std::string& key) {
  if (db_) pending_[{user, key}] = std::nullopt;
}

void LocationStore::write_upsert(const BindingInfo& b) {
  if (!upsert_stmt_) return;
  auto* st = upsert_stmt_;
  const std::string key = binding_key(b);
  const std::string mac = b.mac ? b.mac->to_string() : std::string();
  auto text = [&](int i, const std::string& s) {
    sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  };
  text(1, b.user);
  text(2, key);
  text(3, b.aor);
  text(4, b.contact);
  text(5, b.instance);
  text(6, std::string(to_string(b.transport)));
  text(7, b.source);
  text(8, b.call_id);
  sqlite3_bind_int64(st, 9, b.cseq);
  sqlite3_bind_int64(st, 10, to_unix(b.registered_at));
  sqlite3_bind_int64(st, 11, to_unix(b.expires_at));
  text(12, mac);
  text(13, b.device_name);
  text(14, b.model);
  text(15, b.user_agent);
  text(16, b.active_load);
  text(17, b.inactive_load);
  text(18, b.reason_name);
  if (sqlite3_step(st) != SQLITE_DONE) ++write_errors_;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

void LocationStore::write_remove(const std::string& user, const std::string& key) {
  if (!delete_stmt_) return;
  sqlite3_bind_text(delete_stmt_, 1, user.data(), static_cast<int>(user.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(delete_stmt_, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(delete_stmt_) != SQLITE_DONE) ++write_errors_;
  sqlite3_reset(delete_stmt_);
  sqlite3_clear_bindings(delete_stmt_);
}

}  // namespace ve::sip
