#pragma once
// Test support: run real binaries (peers such as tshark, sipp, kea-dhcp4) as child processes,
// optionally inside a network namespace (tests/support/netns.hpp), and clean up whatever happens.
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace ve::test {

struct RunResult {
  int exit_code = -1;  // -1: did not exit normally (signal, timeout)
  std::string out;
  std::string err;
};

// "exit <code>", stdout and stderr: what a failing assertion on a run shows.
std::string describe(const RunResult& r);

// Runs a command to completion (argv[0] searched in PATH), capturing stdout and stderr.
RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));
// The same through `sh -c`.
RunResult sh(const std::string& command, std::chrono::seconds timeout = std::chrono::seconds(60));

// How a Child starts besides its argv.
struct ChildOptions {
  std::map<std::string, std::string> env{};  // set on top of the test's own environment
  bool new_session = false;                  // setsid: signals to the test's group do not reach it
};

// A child process killed (SIGTERM, then SIGKILL) when this object dies.
class Child {
 public:
  Child() = default;
  // Output goes to `log` (appended) so a failing test can show it.
  Child(const std::vector<std::string>& argv, const std::filesystem::path& log, const ChildOptions& options = {});
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
void write_file(const std::filesystem::path& p, const std::string& content);  // replaces it
bool is_root();

}  // namespace ve::test
