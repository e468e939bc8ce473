#pragma once
// Test support: a private temporary directory, removed with everything in it when the test ends,
// pass or fail (the destructor runs when an ASSERT returns from the test body).
#include <filesystem>
#include <string>

namespace ve::test {

class TempDir {
 public:
  // mkdtemp under the system temp directory: /tmp/<prefix>-XXXXXX.
  explicit TempDir(const std::string& prefix = "ve-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Writes `content` to `relative` (creating its folders); returns the file's path.
  std::filesystem::path write(const std::string& relative, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

}  // namespace ve::test
