#include "sip/location_store.hpp"

#include <sqlite3.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>

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

std::string fmt_note(const std::filesystem::path& p, const std::string& why, const std::string& what) {
  return p.string() + " is not a usable database (" + why + "): " + what;
}

}  // namespace

std::string binding_key(const BindingInfo& b) { return b.instance.empty() ? b.contact : b.instance; }

LocationStore::~LocationStore() { close(); }

bool LocationStore::file_intact() const {
  // SQLite in WAL mode does not notice its file being overwritten, replaced or removed (pages are
  // cached, writes go to the -wal): check the header and the inode ourselves. 16 bytes a second.
  struct stat now {};
  if (::stat(path_.c_str(), &now) != 0 || now.st_ino != inode_) return false;
  std::ifstream in(path_, std::ios::binary);
  char header[16] = {};
  in.read(header, sizeof header);
  return in.gcount() == 16 && std::memcmp(header, "SQLite format 3", 16) == 0;
}

void LocationStore::flush() {
  if (db_ && !recovering_ && !file_intact()) recover("file changed under the registrar");
  if (!db_ || pending_.empty()) {
    pending_.clear();
    return;
  }
  const auto before = write_errors_;
  int rc = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  for (const auto& [user_key, what] : pending_) {
    const auto& [user, key] = user_key;
    if (const BindingInfo* binding = find(user, key)) {
      // A refresh is an UPDATE of three columns; the whole row if it is not there (yet).
      if (what == Write::Row || !write_refresh(*binding)) write_upsert(*binding);
    } else {
      write_remove(user, key);
    }
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    ++write_errors_;
    last_code_ = sqlite3_extended_errcode(db_) & 0xff;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  pending_.clear();
  // Damaged while we ran (overwritten, truncated): the bindings are all in memory, so set the
  // file aside and write them into a new one.
  const int code = last_code_;
  last_code_ = SQLITE_OK;
  if (write_errors_ != before && (code == SQLITE_NOTADB || code == SQLITE_CORRUPT || code == SQLITE_IOERR)) {
    recover(sqlite3_errstr(code));
  }
}

void LocationStore::close() {
  flush();
  if (upsert_stmt_) sqlite3_finalize(upsert_stmt_);
  if (delete_stmt_) sqlite3_finalize(delete_stmt_);
  if (refresh_stmt_) sqlite3_finalize(refresh_stmt_);
  if (db_) sqlite3_close(db_);
  upsert_stmt_ = delete_stmt_ = refresh_stmt_ = nullptr;
  db_ = nullptr;
}

Result<void, std::string> LocationStore::open(const std::filesystem::path& db_path) {
  close();
  path_ = db_path;
  by_user_.clear();
  auto r = open_file();
  if (!r) {
    // Garbage, a truncated file, another program's database: keep it for inspection, start empty.
    // (recover() closes the handle; close() would flush and so recover a second time.)
    recover(r.error());
    if (!db_) return unexpected(notes_.empty() ? r.error() : notes_.back());
  }
  return {};
}

void LocationStore::recover(const std::string& why) {
  if (recovering_) return;
  recovering_ = true;
  if (upsert_stmt_) sqlite3_finalize(upsert_stmt_);
  if (delete_stmt_) sqlite3_finalize(delete_stmt_);
  if (refresh_stmt_) sqlite3_finalize(refresh_stmt_);
  if (db_) sqlite3_close(db_);
  upsert_stmt_ = delete_stmt_ = refresh_stmt_ = nullptr;
  db_ = nullptr;
  pending_.clear();
  const auto stamp = std::to_string(to_unix(Clock::now()));
  const std::filesystem::path aside = path_.string() + ".corrupt-" + stamp;
  std::error_code ec;
  std::filesystem::rename(path_, aside, ec);
  for (const char* suffix : {"-wal", "-shm"}) {
    std::error_code ignored;
    std::filesystem::rename(path_.string() + suffix, aside.string() + suffix, ignored);
  }
  if (ec && std::filesystem::exists(path_)) {
    notes_.push_back(fmt_note(path_, why, "cannot be moved aside: " + ec.message()));
    recovering_ = false;
    return;
  }
  notes_.push_back(fmt_note(path_, why, "moved to " + aside.string() + ", started empty"));
  const auto keep = std::move(by_user_);
  by_user_.clear();
  if (auto r = open_file(); !r) {
    notes_.push_back(path_.string() + ": " + r.error());
    close();
  }
  // Bindings held in memory (a file damaged while running) go into the new file.
  for (const auto& [user, list] : keep) {
    for (const auto& b : list) upsert(b);
  }
  flush();
  recovering_ = false;
}

Result<void, std::string> LocationStore::open_file() {
  const auto& db_path = path_;
  if (sqlite3_open(db_path.c_str(), &db_) != SQLITE_OK) {
    std::string err = db_ ? sqlite3_errmsg(db_) : "out of memory";
    return unexpected("cannot open " + db_path.string() + ": " + err);
  }
  // WAL with synchronous=NORMAL: a commit is not an fsync, and a crash loses at most the last
  // few registrations (phones refresh them anyway).
  char* err = nullptr;
  const std::string setup = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") + kSchema;
  if (sqlite3_exec(db_, setup.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    return unexpected("cannot set up " + db_path.string() + ": " + msg);
  }
  // A new database has no header until its first page is written: make sure it has one, so
  // file_intact() can tell ours from garbage.
  sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
  struct stat st_file {};
  inode_ = ::stat(db_path.c_str(), &st_file) == 0 ? st_file.st_ino : 0;
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO sip_bindings VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,"
                         "?15,?16,?17,?18)",
                         -1, &upsert_stmt_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, "DELETE FROM sip_bindings WHERE user=?1 AND binding_key=?2", -1, &delete_stmt_,
                         nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_,
                         "UPDATE sip_bindings SET call_id=?3, cseq=?4, expires_at=?5 WHERE user=?1 AND binding_key=?2",
                         -1, &refresh_stmt_, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    return unexpected("cannot prepare statements: " + msg);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT user, aor, contact, instance, transport, source, call_id, cseq, registered_at, "
                         "expires_at, mac, device_name, model, user_agent, active_load, inactive_load, reason_name, "
                         "binding_key FROM sip_bindings",
                         -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    return unexpected("cannot read bindings: " + msg);
  }
  std::size_t skipped = 0;
  std::vector<std::pair<std::string, std::string>> bad_keys;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    // A row is a binding only with a user, a parseable contact, a transport, integer times and
    // a MAC that parses (or none); anything else is skipped (and deleted), not trusted.
    const bool ints = sqlite3_column_type(st, 7) == SQLITE_INTEGER && sqlite3_column_type(st, 8) == SQLITE_INTEGER &&
                      sqlite3_column_type(st, 9) == SQLITE_INTEGER;
    BindingInfo b;
    b.user = column_text(st, 0);
    b.aor = column_text(st, 1);
    b.contact = column_text(st, 2);
    b.instance = column_text(st, 3);
    const auto transport = column_text(st, 4);
    b.transport = transport == "tcp" ? Transport::Tcp : Transport::Udp;
    b.source = column_text(st, 5);
    b.call_id = column_text(st, 6);
    const auto cseq = sqlite3_column_int64(st, 7);
    b.cseq = static_cast<std::uint32_t>(cseq);
    b.registered_at = from_unix(sqlite3_column_int64(st, 8));
    b.expires_at = from_unix(sqlite3_column_int64(st, 9));
    const auto mac_text = column_text(st, 10);
    auto mac = MacAddress::parse(mac_text);
    if (mac) b.mac = *mac;
    b.device_name = column_text(st, 11);
    b.model = column_text(st, 12);
    b.user_agent = column_text(st, 13);
    b.active_load = column_text(st, 14);
    b.inactive_load = column_text(st, 15);
    b.reason_name = column_text(st, 16);
    const auto stored_key = column_text(st, 17);
    const bool valid = ints && !b.user.empty() && parse_uri(b.contact).has_value() &&
                       (transport == "udp" || transport == "tcp") && cseq >= 0 && cseq <= 0xffffffffLL &&
                       (mac_text.empty() || mac) && stored_key == binding_key(b) && b.expires_at >= b.registered_at;
    if (!valid) {
      ++skipped;
      bad_keys.emplace_back(b.user, stored_key);
      continue;
    }
    by_user_[b.user].push_back(std::move(b));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    by_user_.clear();
    return unexpected("cannot read bindings: " + std::string(sqlite3_errmsg(db_)));
  }
  if (skipped) {
    notes_.push_back(path_.string() + ": skipped " + std::to_string(skipped) + " malformed binding row(s)");
    for (const auto& [user, key] : bad_keys) write_remove(user, key);
  }
  return {};
}

const std::vector<BindingInfo>* LocationStore::find(const std::string& user) const {
  auto it = by_user_.find(user);
  return it == by_user_.end() || it->second.empty() ? nullptr : &it->second;
}

const BindingInfo* LocationStore::find(const std::string& user, std::string_view key) const {
  const auto* list = find(user);
  if (!list) return nullptr;
  for (const auto& b : *list)
    if (binding_key_view(b) == key) return &b;
  return nullptr;
}

bool LocationStore::upsert(const BindingInfo& b) { return upsert(BindingInfo(b)); }

bool LocationStore::upsert(BindingInfo&& b) {
  auto& list = by_user_[b.user];
  const auto key = binding_key_view(b);
  auto it = std::find_if(list.begin(), list.end(), [&](const BindingInfo& x) { return binding_key_view(x) == key; });
  const bool created = it == list.end();
  if (created) {
    list.push_back(std::move(b));
    it = std::prev(list.end());
  } else {
    *it = std::move(b);
  }
  persist_upsert(*it);
  return created;
}

bool LocationStore::refresh(const std::string& user, std::string_view key, std::string_view call_id, std::uint32_t cseq,
                            Clock::time_point expires_at) {
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return false;
  auto& list = u->second;
  auto it = std::find_if(list.begin(), list.end(), [&](const BindingInfo& x) { return binding_key_view(x) == key; });
  if (it == list.end()) return false;
  it->call_id.assign(call_id);
  it->cseq = cseq;
  it->expires_at = expires_at;
  persist_upsert(*it, Write::Refresh);
  return true;
}

bool LocationStore::remove(const std::string& user, const std::string& key) {
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return false;
  auto& list = u->second;
  auto it = std::find_if(list.begin(), list.end(), [&](const BindingInfo& x) { return binding_key_view(x) == key; });
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

void LocationStore::persist_upsert(const BindingInfo& b, Write what) {
  if (!db_) return;
  auto [it, added] = pending_.try_emplace({b.user, std::string(binding_key_view(b))}, what);
  if (!added && what == Write::Row) it->second = Write::Row;  // a refresh never downgrades a row write
}

void LocationStore::persist_remove(const std::string& user, const std::string& key) {
  // The flush finds no binding and deletes; a binding made again before then is written whole.
  if (db_) pending_.insert_or_assign({user, key}, Write::Row);
}

bool LocationStore::write_refresh(const BindingInfo& b) {
  if (!refresh_stmt_) return false;
  auto* st = refresh_stmt_;
  const auto key = binding_key_view(b);
  sqlite3_bind_text(st, 1, b.user.data(), static_cast<int>(b.user.size()), SQLITE_STATIC);
  sqlite3_bind_text(st, 2, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  sqlite3_bind_text(st, 3, b.call_id.data(), static_cast<int>(b.call_id.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, b.cseq);
  sqlite3_bind_int64(st, 5, to_unix(b.expires_at));
  const int rc = sqlite3_step(st);
  const bool updated = rc == SQLITE_DONE && sqlite3_changes(db_) == 1;
  if (rc != SQLITE_DONE) {
    ++write_errors_;
    last_code_ = sqlite3_extended_errcode(db_) & 0xff;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return updated || rc != SQLITE_DONE;  // after an error the row write would fail the same way
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
  if (sqlite3_step(st) != SQLITE_DONE) {
    ++write_errors_;
    last_code_ = sqlite3_extended_errcode(db_) & 0xff;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

void LocationStore::write_remove(const std::string& user, const std::string& key) {
  if (!delete_stmt_) return;
  sqlite3_bind_text(delete_stmt_, 1, user.data(), static_cast<int>(user.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(delete_stmt_, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(delete_stmt_) != SQLITE_DONE) {
    ++write_errors_;
    last_code_ = sqlite3_extended_errcode(db_) & 0xff;
  }
  sqlite3_reset(delete_stmt_);
  sqlite3_clear_bindings(delete_stmt_);
}

}  // namespace ve::sip
