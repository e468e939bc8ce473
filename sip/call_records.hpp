#pragma once
// Call detail records: every ended call, kept in SQLite (state_dir/sip-calls.sqlite) so the
// history survives a restart. Writes are queued and flushed in one transaction by the server's
// one-second sweep, so a call never waits on the disk.
#include <filesystem>
#include <string>
#include <vector>

#include "sip/sip.hpp"

struct sqlite3;

namespace ve::sip {

class CallRecords {
 public:
  CallRecords() = default;
  ~CallRecords();
  CallRecords(const CallRecords&) = delete;
  CallRecords& operator=(const CallRecords&) = delete;

  // Opens (creating) the database. A file that is not a usable database is moved aside
  // (NAME.corrupt-<time>) and a new one started: records are history, not state to die for.
  Result<void, std::string> open(const std::filesystem::path& db_path);
  void close();
  void add(const CallInfo& c) { pending_.push_back(c); }
  void flush();
  // The newest `limit` records, newest first.
  std::vector<CallInfo> recent(std::size_t limit) const;
  // Keep at most this many rows (oldest deleted at flush).
  void set_retention(std::size_t rows) { retention_ = rows; }
  std::uint64_t write_errors() const { return write_errors_; }

 private:
  sqlite3* db_ = nullptr;
  std::vector<CallInfo> pending_;
  std::size_t retention_ = 100000;
  std::uint64_t write_errors_ = 0;
};

}  // namespace ve::sip
