#pragma once
// Helpers shared by the DHCP netns tests: a server/client namespace pair joined by a veth, child
// processes started inside a namespace with their output in a file, and the scapy DHCP client.
// Everything is named with the test's pid and removed in destructors, even when a test fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace ve::test {

namespace fs = std::filesystem;

// Runs a shell command, returns {exit status, stdout}.
inline std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return {-1, out};
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

// Polls `pred` every 50 ms until it holds or `timeout` passes.
inline bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

inline bool process_alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

inline std::string unique_suffix() {
  static int counter = 0;
  return std::to_string(::getpid()) + "x" + std::to_string(counter++);
}

// A temp directory removed at the end.
class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("ve-dhcp-" + unique_suffix())) { fs::create_directories(path_); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Two namespaces joined by a veth: the server side has 10.10.100.1/24 on `server_if`.
class NetnsPair {
 public:
  NetnsPair() {
    const auto id = std::to_string(::getpid() % 1000000);
    server_ns = "vedhs" + id;
    client_ns = "vedhc" + id;
    server_if = "veds" + id;
    client_if = "vedc" + id;
    cleanup();
    ok_ = run("ip netns add " + server_ns).first == 0 && run("ip netns add " + client_ns).first == 0 &&
          run("ip link add " + server_if + " type veth peer name " + client_if).first == 0 &&
          run("ip link set " + server_if + " netns " + server_ns).first == 0 &&
          run("ip link set " + client_if + " netns " + client_ns).first == 0 &&
          run("ip -n " + server_ns + " addr add 10.10.100.1/24 dev " + server_if).first == 0 &&
          run("ip -n " + server_ns + " link set lo up").first == 0 &&
          run("ip -n " + client_ns + " link set lo up").first == 0 &&
          run("ip -n " + server_ns + " link set " + server_if + " up").first == 0 &&
          run("ip -n " + client_ns + " link set " + client_if + " up").first == 0;
  }
  ~NetnsPair() { cleanup(); }
  bool ok() const { return ok_; }

  std::string server_ns, client_ns, server_if, client_if;

 private:
  void cleanup() {
    run("ip netns del " + server_ns);  // deleting a namespace removes its end of the veth, and the peer
    run("ip netns del " + client_ns);
  }
  bool ok_ = false;
};

// A child process (optionally inside a namespace) with stdout+stderr appended to `log`.
class Child {
 public:
  Child() = default;
  Child(const std::vector<std::string>& argv, const fs::path& log, const std::map<std::string, std::string>& env = {},
        bool own_session = false) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (own_session) ::setsid();
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  Child& operator=(Child&& o) noexcept {
    stop();
    pid_ = std::exchange(o.pid_, -1);
    return *this;
  }
  ~Child() { stop(); }

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    const auto r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exit_status_ = st;
      pid_ = -1;
      return false;
    }
    return true;
  }
  // SIGTERM, then SIGKILL after `grace`. Returns the wait status.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
    if (pid_ <= 0) return exit_status_;
    ::kill(pid_, SIGTERM);
    wait_for([&] { return !running(); }, grace);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      exit_status_ = st;
      pid_ = -1;
    }
    return exit_status_;
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    exit_status_ = st;
    pid_ = -1;
  }
  // Forget the process without stopping it (it is expected to have exited or to be stopped by others).
  void release() { pid_ = -1; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = 0;
};

// One DORA with the scapy client (tests/dhcp_client.py) from the client namespace.
struct DhcpClientRequest {
  std::string mac{};
  std::optional<std::string> vendor_class{};
  std::optional<std::string> vendor_class_hex{};
  std::optional<std::string> prl{};  // "1,3,6,15,66,150"
  std::optional<std::string> raw_options_hex{};
  std::optional<std::string> hostname{};
  double timeout_s = 2.0;
  int tries = 2;
};

inline nlohmann::json dhcp_exchange(const NetnsPair& net, const DhcpClientRequest& r) {
  std::string cmd = "ip netns exec " + net.client_ns + " /usr/bin/python3 " VE_TESTS_DIR "/dhcp_client.py --iface " +
                    net.client_if + " --mac " + r.mac + " --timeout " + std::to_string(r.timeout_s) + " --tries " +
                    std::to_string(r.tries);
  auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  if (r.vendor_class) cmd += " --vendor-class " + quote(*r.vendor_class);
  if (r.vendor_class_hex) cmd += " --vendor-class-hex " + quote(*r.vendor_class_hex);
  if (r.prl) cmd += " --prl " + quote(*r.prl);
  if (r.raw_options_hex) cmd += " --raw-options-hex " + quote(*r.raw_options_hex);
  if (r.hostname) cmd += " --hostname " + quote(*r.hostname);
  auto [status, out] = run(cmd);
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (status != 0 || j.is_discarded()) {
    ADD_FAILURE() << "dhcp_client.py failed (" << status << "): " << out;
    return nlohmann::json{{"offer", nullptr}, {"ack", nullptr}};
  }
  return j;
}

// "0a0a64010a0a6402" etc. for the expected option payloads.
inline std::string hex_of(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 0xf];
  }
  return out;
}

// A bound unix datagram socket standing in for the daemon's event socket.
class DatagramReceiver {
 public:
  explicit DatagramReceiver(const std::string& path) : path_(path) {
    ::unlink(path.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~DatagramReceiver() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    char buf[65536];
    for (;;) {
      auto n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0) break;
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Fills the socket's receive queue (a daemon that stopped reading). Returns datagrams queued.
  int fill_queue() {
    const int tx = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    int n = 0;
    const std::string junk(512, 'x');
    while (::sendto(tx, junk.data(), junk.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) > 0 &&
           n < 1000000)
      ++n;
    ::close(tx);
    return n;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

}  // namespace ve::test
