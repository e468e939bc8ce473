// The ring of recent log lines, and how a line is said to mention a phone.
#include <cctype>

#include "diag/diag.hpp"

namespace ve::diag {

void LogRing::add(std::string line) {
  std::lock_guard lock(mutex_);
  lines_.push_back(std::move(line));
  while (lines_.size() > max_) lines_.pop_front();
}

std::size_t LogRing::size() const {
  std::lock_guard lock(mutex_);
  return lines_.size();
}

bool mentions(std::string_view line, std::string_view needle) {
  if (needle.empty()) return false;
  const bool digit_end = std::isdigit(static_cast<unsigned char>(needle.back())) != 0;
  const bool digit_begin = std::isdigit(static_cast<unsigned char>(needle.front())) != 0;
  std::size_t pos = 0;
  while ((pos = line.find(needle, pos)) != std::string_view::npos) {
    const std::size_t end = pos + needle.size();
    const bool ok_after = !digit_end || end >= line.size() || std::isdigit(static_cast<unsigned char>(line[end])) == 0;
    const bool ok_before = !digit_begin || pos == 0 ||
                           (std::isdigit(static_cast<unsigned char>(line[pos - 1])) == 0 && line[pos - 1] != '.');
    if (ok_after && ok_before) return true;
    ++pos;
  }
  return false;
}

std::vector<std::string> LogRing::matching(const std::vector<std::string>& needles, std::size_t limit) const {
  std::vector<std::string> out;
  std::lock_guard lock(mutex_);
  for (const auto& line : lines_) {
    for (const auto& n : needles) {
      if (mentions(line, n)) {
        out.push_back(line);
        break;
      }
    }
  }
  if (out.size() > limit) out.erase(out.begin(), out.end() - static_cast<long>(limit));
  return out;
}

std::vector<std::string> mac_spellings(const MacAddress& mac) {
  const std::string hex = mac.to_hex_upper();
  std::string lower_hex;
  for (char c : hex) lower_hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  const std::string cisco = lower_hex.substr(0, 4) + "." + lower_hex.substr(4, 4) + "." + lower_hex.substr(8, 4);
  std::string upper_colon = mac.to_string();
  for (auto& c : upper_colon) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return {mac.to_string(), upper_colon, cisco, hex, lower_hex, mac.sep_name()};
}

}  // namespace ve::diag
