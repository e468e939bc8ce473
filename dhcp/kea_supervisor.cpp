// kea-dhcp4 as a supervised, crash-surviving child. See kea_supervisor.hpp for the why.
#include "dhcp/kea_supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

extern char** environ;

namespace ve::dhcp {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kMaxBackoff = 30s;
constexpr auto kStableRun = 60s;  // a Kea that ran this long restarts with the shortest backoff
constexpr auto kStopGrace = 5s;

int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return fmt::format("exit status {}", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {}", WTERMSIG(st));
  return "ended";
}

spdlog::level::level_enum kea_line_level(std::string_view line) {
  if (line.starts_with("ERROR") || line.starts_with("FATAL")) return spdlog::level::err;
  if (line.starts_with("WARN")) return spdlog::level::warn;
  if (line.starts_with("DEBUG")) return spdlog::level::debug;
  return spdlog::level::info;
}

// Local ports of the UDP sockets in this network namespace with the given port.
int udp_sockets_on_port(std::uint16_t port) {
  int found = 0;
  for (const char* table : {"/proc/net/udp", "/proc/net/udp6"}) {
    std::istringstream in(read_text(table));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local;
      fields >> slot >> local;  // "0100007F:0043"
      const auto colon = local.rfind(':');
      if (colon == std::string::npos) continue;
      if (std::strtoul(local.c_str() + colon + 1, nullptr, 16) == port) ++found;
    }
  }
  return found;
}

std::string read_link(const fs::path& p) {
  std::error_code ec;
  auto target = fs::read_symlink(p, ec);
  return ec ? std::string{} : target.string();
}

}  // namespace

std::optional<KeaConflict> find_kea_conflict(const fs::path& own_config, std::uint16_t port) {
  const auto own_netns = read_link("/proc/self/ns/net");
  std::vector<std::string> others;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); }))
      continue;
    auto comm = read_text(entry.path() / "comm");
    if (comm != "kea-dhcp4\n") continue;
    auto cmdline = read_text(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(own_config.string()) != std::string::npos) continue;  // ours
    // A Kea in another network namespace (a test's, a container's) serves other wires. Its
    // namespace is unreadable when it runs as another user: then it is counted (it may be ours).
    const auto netns = read_link(entry.path() / "ns" / "net");
    if (!netns.empty() && !own_netns.empty() && netns != own_netns) continue;
    while (!cmdline.empty() && cmdline.back() == ' ') cmdline.pop_back();
    others.push_back(fmt::format("pid {}: {}", name, cmdline));
  }
  std::string who;
  for (const auto& o : others) who += (who.empty() ? "" : "; ") + o;
  const int sockets = udp_sockets_on_port(port);
  if (sockets > 0) {
    return KeaConflict{
        true, fmt::format("UDP port {} is already in use here ({} socket{}{}): another DHCP server would answer "
                          "the phones and kea-dhcp4 could not open its sockets. Stop it (Debian's Kea: "
                          "systemctl disable --now kea-dhcp4-server), or keep it and set dhcp.kea.manage: false "
                          "(voiceedged --print-kea-config prints the hook's part for its config)",
                          port, sockets, sockets == 1 ? "" : "s", who.empty() ? "" : "; kea-dhcp4 " + who)};
  }
  if (!others.empty()) {
    return KeaConflict{false, fmt::format("another kea-dhcp4 is running ({}), probably kea-dhcp4-server.service; "
                                          "it holds no UDP port {} now, but would answer phones once it serves an "
                                          "interface: systemctl disable --now kea-dhcp4-server",
                                          who, port)};
  }
  return std::nullopt;
}

KeaSupervisor::KeaSupervisor(boost::asio::io_context& io, std::shared_ptr<spdlog::logger> log)
    : io_(io), log_(std::move(log)), restart_timer_(io), log_timer_(io) {}

KeaSupervisor::~KeaSupervisor() {
  *alive_ = false;
  restart_timer_.cancel();
  log_timer_.cancel();
  // Deliberately no stop(): only a clean shutdown stops Kea (stop() is called for that).
}

void KeaSupervisor::write_config(const config::SiteConfig& site, bool& changed) {
  paths_ = kea_paths(site);
  binary_ = site.dhcp.kea.binary;
  std::error_code ec;
  fs::create_directories(paths_.dir, ec);
  const std::string text = make_kea_config(site, false).dump(2) + "\n";
  changed = read_text(paths_.config) != text;
  if (!changed) return;
  // Write-then-rename: Kea never reads a half-written file.
  const auto tmp = paths_.config.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) {
      log_->error("cannot write Kea config {}", tmp);
      return;
    }
  }
  fs::rename(tmp, paths_.config, ec);
  if (ec) log_->error("cannot write Kea config {}: {}", paths_.config.string(), ec.message());
}

std::optional<pid_t> KeaSupervisor::find_running_kea() const {
  const auto text = read_text(paths_.pid_file);
  pid_t pid = 0;
  if (text.empty() || std::sscanf(text.c_str(), "%d", &pid) != 1 || pid <= 0) return std::nullopt;
  if (::kill(pid, 0) != 0) return std::nullopt;
  // The pid must still be kea-dhcp4 running our config (pids are reused).
  auto cmdline = read_text(fs::path("/proc") / std::to_string(pid) / "cmdline");
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  if (cmdline.find("kea-dhcp4") == std::string::npos || cmdline.find(paths_.config.string()) == std::string::npos)
    return std::nullopt;
  // A zombie is not serving.
  const auto stat = read_text(fs::path("/proc") / std::to_string(pid) / "stat");
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size() || stat[close_paren + 2] == 'Z')
    return std::nullopt;
  return pid;
}

void KeaSupervisor::start(const config::SiteConfig& site) {
  bool changed = false;
  write_config(site, changed);
  stopping_ = false;
  // Relay only what Kea writes from now on.
  std::error_code ec;
  log_offset_ = fs::exists(paths_.log, ec) ? fs::file_size(paths_.log, ec) : 0;
  arm_log_timer();
  if (auto running = find_running_kea()) {
    adopted_ = true;
    log_->info("adopting running kea-dhcp4 (pid {}) left by a previous voiceedged", *running);
    watch(*running, false);
    if (changed) send_config_reload();  // the site file changed while we were away
    return;
  }
  spawn();
}

void KeaSupervisor::spawn() {
  if (auto conflict = find_kea_conflict(paths_.config)) {
    const bool new_reason = conflict->message != conflict_;
    conflict_ = conflict->message;
    if (conflict->blocking) {
      state_ = "blocked";
      if (new_reason) {
        log_->error("not starting kea-dhcp4: {}; retrying with backoff", conflict_);
      } else {
        log_->debug("kea-dhcp4 still blocked: {}", conflict_);
      }
      schedule_restart();
      return;
    }
    if (new_reason) log_->warn("{}", conflict_);
  } else if (!conflict_.empty()) {
    log_->info("the other DHCP server is gone: starting kea-dhcp4");
    conflict_.clear();
  }
  std::error_code ec;
  fs::remove(paths_.pid_file, ec);  // not our Kea (checked): a stale or reused pid must not block Kea
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("KEA_PIDFILE_DIR=") || kv.starts_with("KEA_LOCKFILE_DIR=")) continue;
    env_store.emplace_back(kv);
  }
  env_store.push_back("KEA_PIDFILE_DIR=" + paths_.dir.string());
  env_store.push_back("KEA_LOCKFILE_DIR=" + paths_.dir.string());
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg_binary = binary_, arg_c = "-c", arg_config = paths_.config.string();
  std::array<char*, 4> argv{arg_binary.data(), arg_c.data(), arg_config.data(), nullptr};

  const int log_fd = ::open(paths_.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // own session: a signal to the daemon's process group or terminal does not reach Kea
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) {
    log_->error("cannot start {}: fork failed: {}", binary_, std::strerror(errno));
    state_ = "restarting";
    schedule_restart();
    return;
  }
  adopted_ = false;
  started_at_ = std::chrono::steady_clock::now();
  log_->info("started {} -c {} (pid {})", binary_, paths_.config.string(), pid);
  watch(pid, true);
}

void KeaSupervisor::watch(pid_t pid, bool own_child) {
  pid_ = pid;
  own_child_ = own_child;
  state_ = "running";
  if (!own_child) started_at_ = std::chrono::steady_clock::now();
  const int fd = open_pidfd(pid);
  if (fd < 0) {
    // Without pidfd (kernels < 5.3) the log timer notices the exit instead.
    log_->warn("pidfd_open({}) failed: {}; watching kea-dhcp4 by polling", pid, std::strerror(errno));
    exit_watch_.reset();
    return;
  }
  exit_watch_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  exit_watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [this, alive = alive_, watched = pid](const boost::system::error_code& ec) {
                            if (ec || !*alive || pid_ != watched) return;
                            on_exit();
                          });
}

void KeaSupervisor::on_exit() {
  std::string how = "ended";
  if (own_child_) {
    int st = 0;
    if (::waitpid(pid_, &st, 0) == pid_) how = describe_status(st);
  }
  const pid_t old = pid_;
  pid_ = -1;
  exit_watch_.reset();
  relay_log();  // Kea's last words first
  if (stopping_) return;
  state_ = "restarting";
  if (std::chrono::steady_clock::now() - started_at_ > kStableRun) backoff_ = 1s;
  log_->error("kea-dhcp4 (pid {}) {}; restarting in {} s", old, how, backoff_.count());
  schedule_restart();
}

void KeaSupervisor::schedule_restart() {
  restart_timer_.expires_after(backoff_);
  backoff_ = std::min<std::chrono::seconds>(backoff_ * 2, kMaxBackoff);
  restart_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive || stopping_) return;
    ++restarts_;
    spawn();
  });
}

void KeaSupervisor::arm_log_timer() {
  log_timer_.expires_after(250ms);
  log_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive) return;
    relay_log();
    // Fallback exit detection when there is no pidfd.
    if (pid_ > 0 && !exit_watch_) {
      int st = 0;
      const bool gone = own_child_ ? ::waitpid(pid_, &st, WNOHANG) == pid_ : ::kill(pid_, 0) != 0;
      if (gone) {
        own_child_ = false;  // already reaped
        on_exit();
      }
    }
    if (!stopping_) arm_log_timer();
  });
}

void KeaSupervisor::relay_log() {
  std::error_code ec;
  const auto size = fs::file_size(paths_.log, ec);
  if (ec) return;
  if (size < log_offset_) log_offset_ = 0;  // Kea rotated its file
  if (size == log_offset_) return;
  std::ifstream in(paths_.log, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(log_offset_));
  std::string chunk(static_cast<std::size_t>(std::min<std::uintmax_t>(size - log_offset_, 1 << 16)), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  log_offset_ += chunk.size();
  log_partial_ += chunk;
  std::size_t start = 0;
  for (auto nl = log_partial_.find('\n'); nl != std::string::npos; nl = log_partial_.find('\n', start)) {
    std::string_view line(log_partial_.data() + start, nl - start);
    if (!line.empty()) log_->log(kea_line_level(line), "kea-dhcp4: {}", line);
    start = nl + 1;
  }
  log_partial_.erase(0, start);
  if (log_partial_.size() > 8192) log_partial_.clear();  // a line without end: drop it
}

void KeaSupervisor::reconfigure(const config::SiteConfig& site) {
  const auto old_config = paths_.config;
  bool changed = false;
  write_config(site, changed);
  if (paths_.config != old_config && pid_ > 0) {
    // state_dir moved: the running Kea reads the old file; restart it on the new one.
    log_->info("Kea state directory changed; restarting kea-dhcp4");
    backoff_ = 1s;
    ::kill(pid_, SIGTERM);
    return;
  }
  if (!changed) return;
  if (pid_ > 0) {
    send_config_reload();
  } else if (state_ != "restarting") {
    spawn();
  }
}

void KeaSupervisor::send_config_reload() {
  using boost::asio::local::stream_protocol;
  struct Exchange {
    explicit Exchange(boost::asio::io_context& io) : socket(io), deadline(io) {}
    stream_protocol::socket socket;
    boost::asio::steady_timer deadline;
    std::string request = R"({"command":"config-reload"})";
    std::string response;
  };
  auto x = std::make_shared<Exchange>(io_);
  x->deadline.expires_after(15s);
  x->deadline.async_wait([x](const boost::system::error_code& ec) {
    if (!ec) x->socket.close();  // Kea did not answer in time
  });
  auto fail = [this, alive = alive_](const std::string& why) {
    if (!*alive || stopping_) return;
    log_->error("config-reload over {} failed ({}); restarting kea-dhcp4", paths_.control_socket.string(), why);
    backoff_ = 1s;
    if (pid_ > 0) ::kill(pid_, SIGTERM);  // the exit watch restarts it on the new config
  };
  x->socket.async_connect(
      stream_protocol::endpoint(paths_.control_socket.string()),
      [this, x, fail, alive = alive_](const boost::system::error_code& ec) {
        if (!*alive) return;
        if (ec) return fail(ec.message());
        boost::asio::async_write(
            x->socket, boost::asio::buffer(x->request),
            [this, x, fail, alive](const boost::system::error_code& wec, std::size_t) {
              if (!*alive) return;
              if (wec) return fail(wec.message());
              // Kea answers with one JSON document and closes the connection.
              boost::asio::async_read(
                  x->socket, boost::asio::dynamic_buffer(x->response, 1 << 20),
                  [this, x, fail, alive](const boost::system::error_code& rec, std::size_t) {
                    x->deadline.cancel();
                    if (!*alive) return;
                    if (rec && rec != boost::asio::error::eof) return fail(rec.message());
                    auto j = nlohmann::json::parse(x->response, nullptr, false);
                    if (j.is_array() && !j.empty()) j = j.front();
                    if (!j.is_object() || !j.contains("result")) return fail("no answer");
                    const auto text = j.value("text", std::string{});
                    if (j["result"] == 0) {
                      log_->info("kea-dhcp4 reloaded its configuration: {}", text);
                    } else {
                      log_->error("kea-dhcp4 rejected the new configuration, keeps the previous one: {}", text);
                    }
                  });
            });
      });
}

void KeaSupervisor::stop() {
  stopping_ = true;
  restart_timer_.cancel();
  log_timer_.cancel();
  if (pid_ > 0) {
    const pid_t pid = pid_;
    log_->info("stopping kea-dhcp4 (pid {})", pid);
    ::kill(pid, SIGTERM);
    auto exited = [&](std::chrono::milliseconds wait) {
      if (exit_watch_) {
        pollfd p{exit_watch_->native_handle(), POLLIN, 0};
        return ::poll(&p, 1, static_cast<int>(wait.count())) > 0;
      }
      std::this_thread::sleep_for(wait);
      return ::kill(pid, 0) != 0;
    };
    bool gone = false;
    for (auto waited = 0ms; !gone && waited < kStopGrace; waited += 100ms) gone = exited(100ms);
    if (!gone) {
      log_->warn("kea-dhcp4 (pid {}) did not stop in {} s; killing it", pid, kStopGrace.count());
      ::kill(pid, SIGKILL);
      (void)exited(1000ms);
    }
    if (own_child_) {
      int st = 0;
      ::waitpid(pid, &st, 0);
    }
    pid_ = -1;
  }
  exit_watch_.reset();
  relay_log();
  state_ = "stopped";
}

nlohmann::json KeaSupervisor::status() const {
  nlohmann::json j = {{"managed", true},
                      {"state", state_},
                      {"adopted", adopted_},
                      {"restarts", restarts_},
                      {"config", paths_.config.string()},
                      {"log", paths_.log.string()}};
  j["pid"] = pid_ > 0 ? nlohmann::json(pid_) : nlohmann::json(nullptr);
  if (!conflict_.empty()) j["conflict"] = conflict_;
  return j;
}

}  // namespace ve::dhcp
