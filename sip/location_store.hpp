#pragma once
// Bindings by user, in memory, written through to SQLite so a restart loses none.
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sip/sip.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace ve::sip {

// A binding is identified within its user by +sip.instance when present, else by Contact URI.
std::string binding_key(const BindingInfo& b);
// The same key without a copy, for comparisons (points into the binding).
inline std::string_view binding_key_view(const BindingInfo& b) { return b.instance.empty() ? b.contact : b.instance; }

class LocationStore {
 public:
  LocationStore() = default;
  ~LocationStore();
  LocationStore(const LocationStore&) = delete;
  LocationStore& operator=(const LocationStore&) = delete;

  // Opens (creating) the database and loads every stored binding. Without open() the store is
  // memory-only. A file that is not a usable database is moved aside (NAME.corrupt-<unix time>,
  // with its -wal and -shm) and an empty one started; rows that do not make a binding are
  // skipped and deleted. What was done is in notes() for the caller to log once. Errors are left
  // only for what a fresh file cannot fix (an unwritable directory).
  Result<void, std::string> open(const std::filesystem::path& db_path);
  // What open() or a later recovery set aside or skipped; cleared by take_notes().
  std::vector<std::string> take_notes() { return std::exchange(notes_, {}); }
  void close();

  const std::vector<BindingInfo>* find(const std::string& user) const;
  const BindingInfo* find(const std::string& user, std::string_view key) const;
  // Returns true when the binding is new (no binding with that key before).
  bool upsert(const BindingInfo& b);
  bool upsert(BindingInfo&& b);
  // A refresh of an existing binding: only its Call-ID, CSeq and expiry change (in memory now, on
  // disk with a small UPDATE at the next flush). False when there is no such binding.
  bool refresh(const std::string& user, std::string_view key, std::string_view call_id, std::uint32_t cseq,
               std::chrono::system_clock::time_point expires_at);
  bool remove(const std::string& user, const std::string& key);
  std::vector<BindingInfo> remove_all(const std::string& user);
  // Removes and returns the bindings whose expiry is at or before `now`.
  std::vector<BindingInfo> expire(std::chrono::system_clock::time_point now);
  std::vector<BindingInfo> all() const;
  std::size_t size() const;
  // Writes the changes made since the last flush in one transaction. Changes are queued so that a
  // REGISTER costs no disk write; the server flushes every expiry sweep (1 s) and on close, so a
  // crash loses at most the last second of refreshes (phones re-register anyway).
  void flush();
  std::size_t pending_writes() const { return pending_.size(); }
  // SQLite failures since open (each is logged once by the caller's choice; counted here).
  std::uint64_t write_errors() const { return write_errors_; }

 private:
  Result<void, std::string> open_file();
  bool file_intact() const;
  // The file went bad under us (or was bad at open): set it aside, start a new one, write every
  // binding held in memory into it.
  void recover(const std::string& why);
  // What a pending (user, key) needs written: the whole row, or the refreshed columns only.
  enum class Write : std::uint8_t { Refresh, Row };
  void persist_upsert(const BindingInfo& b, Write what = Write::Row);
  void persist_remove(const std::string& user, const std::string& key);
  void write_upsert(const BindingInfo& b);
  // False when no row was updated (then the caller writes the whole row).
  bool write_refresh(const BindingInfo& b);
  void write_remove(const std::string& user, const std::string& key);
  // The (user, key) pairs changed since the last flush; the flush writes each one's state then
  // (the binding held in memory, or a delete when there is none), so a queued refresh copies no
  // binding.
  std::map<std::pair<std::string, std::string>, Write> pending_;
  std::unordered_map<std::string, std::vector<BindingInfo>> by_user_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_stmt_ = nullptr;
  sqlite3_stmt* delete_stmt_ = nullptr;
  sqlite3_stmt* refresh_stmt_ = nullptr;
  std::uint64_t write_errors_ = 0;
  std::filesystem::path path_;
  std::vector<std::string> notes_;
  bool recovering_ = false;
  unsigned long inode_ = 0;  // of the file opened, to notice a replaced one
  int last_code_ = 0;        // SQLite result of the last failed write
};

}  // namespace ve::sip
