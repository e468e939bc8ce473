#pragma once
// Test support: run the real binaries (voiceedged, voiceedgectl, peers such as tshark or sipp)
// as child processes, optionally inside a network namespace, and clean up whatever happens.
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ve::test {

// Where CMake put the binaries (compile definitions of the test target).
std::filesystem::path voiceedged_path();
std::filesystem::path voiceedgectl_path();
std::filesystem::path source_dir();

struct RunResult {
  int exit_code = -1;  // -1: did not exit normally (signal, timeout)
  std::string out;
  std::string err;
};

// Runs a command to completion (argv[0] searched in PATH), capturing stdout and stderr.
RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));
// The same through `sh -c`.
RunResult sh(const std::string& command, std::chrono::seconds timeout = std::chrono::seconds(60));

// A child process killed (SIGTERM, then SIGKILL) when this object dies.
class Child {
 public:
  Child() = default;
  // Output goes to `log` (appended) so a failing test can show it.
  Child(const std::vector<std::string>& argv, const std::filesystem::path& log);
  Child(Child&&) noexcept;
  Child& operator=(Child&&) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  int pid() const { return pid_; }
  bool running();
  // Sends `sig` and waits up to `timeout` for the exit; returns the exit code (-1 if none).
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits for exit without signalling.
  std::optional<int> wait(std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  std::optional<int> status_;
};

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ve-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  void write(const std::string& name, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

// Polls `pred` every 20 ms until it is true or `timeout` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

std::string read_file(const std::filesystem::path& p);
bool is_root();

// A running voiceedged with its own state dir and control socket.
// The site YAML may use the placeholders @STATE@ (state dir) and @SOCKET@ (control socket).
class Daemon {
 public:
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
