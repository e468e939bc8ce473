#pragma once
// Times as the control API shows them: UTC, ISO 8601, whole seconds ("2026-11-25T14:11:30Z").
#include <chrono>
#include <ctime>
#include <string>

namespace ve {

inline std::string iso_time(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ve
