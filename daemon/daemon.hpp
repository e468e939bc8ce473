#pragma once
// voiceedged's core: the event loop, signals, config snapshots and reload, the control socket,
// the journey tracker and the components.
#include <filesystem>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.hpp"
#include "daemon/component.hpp"
#include "daemon/control_server.hpp"
#include "daemon/journey.hpp"

namespace ve::daemon {

class StatusHttpServer;

class Daemon {
 public:
  Daemon(std::filesystem::path config_path, config::SiteConfigPtr config);
  ~Daemon();

  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int run();

  // Re-reads the site file. On error the running config stays and the errors are returned.
  ControlResult reload();

 private:
  void register_core_commands();
  void apply_control_access();
  void arm_watchdog();
  void arm_flush();
  void trim_heap();
  void wait_signals();
  void shutdown();

  // Events reach the journey tracker first, then Services::event_listeners.
  class EventFanout final : public EventSink {
   public:
    EventFanout(JourneyTracker& journey, const Services& services) : journey_(journey), services_(services) {}
    void report(PhoneEvent event) override {
      if (services_.event_listeners.empty()) return journey_.report(std::move(event));
      journey_.report(event);
      for (const auto& l : services_.event_listeners) l(event);
    }

   private:
    JourneyTracker& journey_;
    const Services& services_;
  };

  std::filesystem::path config_path_;
  config::SiteConfigPtr config_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer watchdog_;
  boost::asio::steady_timer flush_timer_;
  std::size_t heap_free_low_ = 0;  // glibc's free heap bytes after the last trim, or since
  std::chrono::microseconds watchdog_interval_{0};
  FdBudget fd_budget_{};
  ControlServer control_;
  JourneyTracker journey_;
  Services services_;
  EventFanout events_{journey_, services_};
  std::unique_ptr<Context> context_;
  std::vector<std::unique_ptr<Component>> components_;
  std::unique_ptr<StatusHttpServer> status_http_;
  bool stopping_ = false;
};

}  // namespace ve::daemon
