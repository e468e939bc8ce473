#pragma once
// Runs kea-dhcp4 for the daemon (dhcp.kea.manage: true): writes its config, starts it in its own
// session so that a crash of voiceedged does not take DHCP down, adopts a running one (pid file
// + /proc cmdline) after such a crash, restarts it with backoff when it dies, reloads it over its
// control socket when the site file changes, and stops it on a clean shutdown. Kea logs to a file
// in the state directory (never to a pipe into the daemon, which would kill Kea with SIGPIPE once
// the daemon is gone); the supervisor relays new lines into the daemon's log with a prefix.
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "config/config.hpp"
#include "daemon/kea_config.hpp"

namespace ve::daemon {

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
  std::string state_ = "stopped";  // stopped | running | restarting | failed
  std::chrono::seconds backoff_{1};
  std::chrono::steady_clock::time_point started_at_{};
  std::unique_ptr<boost::asio::posix::stream_descriptor> exit_watch_;  // pidfd: readable when Kea exits
  boost::asio::steady_timer restart_timer_;
  boost::asio::steady_timer log_timer_;
  std::uintmax_t log_offset_ = 0;
  std::string log_partial_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards async callbacks after destruction
};

}  // namespace ve::daemon
