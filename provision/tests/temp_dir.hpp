#pragma once
// The provision tests' temporary directory is the shared one (tests/support/temp_dir.hpp), and the
// bytes a server sent, as text.
#include <cstddef>
#include <string>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace ve::provision::testing {

using TempDir = ve::test::TempDir;

inline std::string to_string(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace ve::provision::testing
