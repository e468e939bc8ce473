#pragma once
// Test support: the real voiceedged as a child process with its own state dir and control socket,
// driven by the real voiceedgectl. Built into ve_test_support, which knows where CMake put them.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace ve::test {

// Where CMake put the binaries and the sources (compile definitions of ve_test_support).
std::filesystem::path voiceedged_path();
std::filesystem::path voiceedgectl_path();
std::filesystem::path source_dir();

// A running voiceedged with its own state dir and control socket.
// The site YAML may use the placeholders @STATE@ (state dir) and @SOCKET@ (control socket).
class Daemon {
 public:
  // `wrapper` goes before the daemon's argv, e.g. Namespace::exec() to run it in a namespace.
  explicit Daemon(const std::string& site_yaml, std::vector<std::string> wrapper = {});
  ~Daemon();
  // Starts the daemon and waits until its control socket answers `version`.
  bool start(std::chrono::seconds timeout = std::chrono::seconds(20));
  int stop(int sig = 15) { return child_.stop(sig); }
  Child& child() { return child_; }
  const TempDir& dir() const { return dir_; }
  std::filesystem::path site_file() const { return dir_ / "site.yaml"; }
  std::filesystem::path socket() const { return dir_ / "control.sock"; }
  std::string log() const { return read_file(dir_ / "voiceedged.log"); }
  // Rewrites the site file (same placeholders).
  void write_site(const std::string& site_yaml) const;

  // voiceedgectl --socket <ours> <words...>
  RunResult ctl(const std::vector<std::string>& words) const;
  // voiceedgectl --json ...; the parsed output (null if not JSON).
  nlohmann::json ctl_json(const std::vector<std::string>& words) const;

 private:
  TempDir dir_;
  std::vector<std::string> wrapper_;  // e.g. {"ip", "netns", "exec", "ns1"}
  Child child_;
};

}  // namespace ve::test
