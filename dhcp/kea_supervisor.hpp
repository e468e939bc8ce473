#pragma once
// Private to dhcp/ (Manager and its tests). Runs kea-dhcp4 for the daemon (dhcp.kea.manage:
// true): writes its config, starts it in its own session so that a crash of voiceedged does not
// take DHCP down, adopts a running one (pid file + /proc cmdline) after such a crash, restarts it
// with backoff when it dies, reloads it over its control socket when the site file changes, and
// stops it on a clean shutdown. Kea logs to a file in the state directory (never to a pipe into
// the daemon, which would kill Kea with SIGPIPE once the daemon is gone); the supervisor relays
// new lines into the daemon's log with a prefix.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "config/config.hpp"
#include "dhcp/dhcp.hpp"

namespace ve::dhcp {

// Another DHCP server where our Kea would serve (Debian's kea-dhcp4-server.service, dnsmasq, a
// second box's config...). Looked for before each start of our Kea, so that it is reported in the
// daemon's log instead of failing on the port inside Kea's.
struct KeaConflict {
  bool blocking = false;  // the DHCP port is taken: our Kea could not open its sockets
  std::string message;
};
// Sockets on UDP `port` in this network namespace, and kea-dhcp4 processes in it that do not run
// `own_config`. nullopt: nothing in the way.
std::optional<KeaConflict> find_kea_conflict(const std::filesystem::path& own_config, std::uint16_t port = 67);

class KeaSupervisor {
 public:
  KeaSupervisor(boost::asio::io_context& io, std::shared_ptr<spdlog::logger> log);
  ~KeaSupervisor();
  KeaSupervisor(const KeaSupervisor&) = delete;
  KeaSupervisor& operator=(const KeaSupervisor&) = delete;

  // Writes Kea's config; adopts the Kea a previous daemon left running, else starts one.
  void start(const config::SiteConfig& site);
  // Writes the new config; if it changed, asks Kea to config-reload (restart if Kea cannot be
  // reached). A config Kea rejects leaves Kea on its previous one, and is logged.
  void reconfigure(const config::SiteConfig& site);
  // SIGTERM, up to 5 s for Kea to finish, then SIGKILL. Blocking: runs at shutdown only.
  void stop();

  std::optional<pid_t> pid() const { return pid_ > 0 ? std::optional(pid_) : std::nullopt; }
  bool adopted() const { return adopted_; }
  nlohmann::json status() const;

 private:
  void write_config(const config::SiteConfig& site, bool& changed);
  std::optional<pid_t> find_running_kea() const;
  void spawn();
  void watch(pid_t pid, bool own_child);
  void on_exit();
  void schedule_restart();
  void relay_log();
  void arm_log_timer();
  void send_config_reload();

  boost::asio::io_context& io_;
  std::shared_ptr<spdlog::logger> log_;
  std::string binary_;
  KeaPaths paths_;
  pid_t pid_ = -1;
  bool own_child_ = false;
  bool adopted_ = false;
  bool stopping_ = false;
  int restarts_ = 0;
  std::string state_ = "stopped";  // stopped | running | restarting | blocked | failed
  std::string conflict_;           // why the last start was refused or warned about (reported once)
  std::chrono::seconds backoff_{1};
  std::chrono::steady_clock::time_point started_at_{};
  std::unique_ptr<boost::asio::posix::stream_descriptor> exit_watch_;  // pidfd: readable when Kea exits
  boost::asio::steady_timer restart_timer_;
  boost::asio::steady_timer log_timer_;
  std::uintmax_t log_offset_ = 0;
  std::string log_partial_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards async callbacks after destruction
};

}  // namespace ve::dhcp
