#pragma once
// State files the daemon owns (journey.sqlite, poe-state.json, ...) must never stop it: a file
// that cannot be read is set aside as NAME.corrupt-<UTC time> (kept for a post-mortem), the event
// is logged once, and the daemon starts empty. Rows/entries inside a readable file are validated
// one by one by their owner and bad ones skipped.
#include <chrono>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "ve/log.hpp"

namespace ve {

// "journey.sqlite" -> "journey.sqlite.corrupt-20261201T231500Z" (a -N suffix if that exists).
inline std::filesystem::path corrupt_name(
    const std::filesystem::path& file, std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::filesystem::path target = file.string() + ".corrupt-" + stamp;
  std::error_code ec;
  for (int n = 1; std::filesystem::exists(target, ec) && n < 1000; ++n)
    target = file.string() + ".corrupt-" + stamp + "-" + std::to_string(n);
  return target;
}

// Renames `file` (and the companions named by `suffixes`, e.g. "-wal", "-shm") aside. Logs one
// error naming the reason and the new name. Returns the new name, or "" if nothing was moved
// (the file did not exist) or the rename failed (then the file is removed so a fresh one can
// be created; that is logged too).
inline std::filesystem::path set_aside(const std::filesystem::path& file, std::string_view reason,
                                       const std::string& logger_name,
                                       std::initializer_list<std::string_view> suffixes = {}) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return {};
  const auto target = corrupt_name(file);
  auto log = ve::logger(logger_name);
  std::filesystem::rename(file, target, ec);
  if (ec) {
    log->error("{} is damaged ({}) and cannot be set aside ({}); removing it and starting empty", file.string(), reason,
               ec.message());
    std::filesystem::remove(file, ec);
    for (auto s : suffixes) std::filesystem::remove(file.string() + std::string(s), ec);
    return {};
  }
  for (auto s : suffixes) {
    const std::filesystem::path companion = file.string() + std::string(s);
    if (std::filesystem::exists(companion, ec))
      std::filesystem::rename(companion, target.string() + std::string(s), ec);
  }
  log->error("{} is damaged ({}): set aside as {}; starting empty", file.string(), reason, target.filename().string());
  return target;
}

}  // namespace ve
