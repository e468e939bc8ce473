#include "daemon/daemon.hpp"

#include <systemd/sd-daemon.h>

#include <csignal>

#include <fmt/format.h>

#include "daemon/daemon_registry.hpp"
#include "daemon/status_http.hpp"
#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;

Daemon::Daemon(std::filesystem::path config_path, config::SiteConfigPtr config)
    : config_path_(std::move(config_path)),
      config_(std::move(config)),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      watchdog_(io_),
      flush_timer_(io_),
      control_(io_),
      journey_([&] {
        std::error_code ec;
        std::filesystem::create_directories(config_->state_dir, ec);
        if (ec) {
          ve::logger("journey")->error("cannot create state_dir {}: {}", config_->state_dir, ec.message());
          return std::filesystem::path();
        }
        return std::filesystem::path(config_->state_dir) / "journey.sqlite";
      }()) {
  journey_.set_config(config_);
  // A phone or client vanishing mid-write must not kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
}

Daemon::~Daemon() = default;

void Daemon::register_core_commands() {
  control_.add("version", [](const nlohmann::json&) -> ControlResult {
    return nlohmann::json{{"name", "voiceedged"}, {"version", VE_VERSION}};
  });
  control_.add("show.config", [this](const nlohmann::json&) -> ControlResult { return config::to_json(*config_); });
  control_.add("reload", [this](const nlohmann::json&) { return reload(); });
  control_.add("show.phones", [this](const nlohmann::json&) -> ControlResult { return journey_.phones_json(); });
  control_.add("show.journey", [this](const nlohmann::json& args) -> ControlResult {
    if (!args.contains("phone") || !args["phone"].is_string())
      return unexpected(ControlError{"bad-request", "show journey needs a phone (MAC, SEP name, IP or port)"});
    const auto key = args["phone"].get<std::string>();
    const auto* p = journey_.find(key);
    if (!p) return unexpected(ControlError{"not-found", "no phone '" + key + "' has been seen"});
    return journey_.journey_json(*p);
  });
}

ControlResult Daemon::reload() {
  auto log = ve::logger("control");
  auto loaded = config::load_file(config_path_);
  if (!loaded) {
    std::string text;
    for (const auto& e : loaded.error()) {
      log->error("reload rejected: {}", e.to_string());
      text += e.to_string() + "\n";
    }
    if (!text.empty()) text.pop_back();
    log->error("reload rejected: {} error(s); the previous configuration keeps running", loaded.error().size());
    return unexpected(ControlError{"failed", text});
  }
  config_ = loaded.value();
  journey_.set_config(config_);
  for (auto& c : components_) c->reconfigure(config_);
  log->info("reloaded {}: {} ports, {} phones", config_path_.string(), config_->ports.size(), config_->phones.size());
  return nlohmann::json{{"reloaded", true}, {"ports", config_->ports.size()}, {"phones", config_->phones.size()}};
}

void Daemon::wait_signals() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      (void)reload();
      sd_notify(0, "READY=1");
      wait_signals();
      return;
    }
    ve::logger("control")->info("signal {}: stopping", sig);
    shutdown();
  });
}

void Daemon::arm_watchdog() {
  if (watchdog_interval_.count() == 0) return;
  watchdog_.expires_after(watchdog_interval_);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    sd_notify(0, "WATCHDOG=1");
    arm_watchdog();
  });
}

void Daemon::arm_flush() {
  flush_timer_.expires_after(std::chrono::milliseconds(500));
  flush_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    journey_.flush();
    arm_flush();
  });
}

void Daemon::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  // Components stop in reverse order of start; none of them cuts phone power.
  for (auto it = components_.rbegin(); it != components_.rend(); ++it) (*it)->stop();
  if (status_http_) status_http_->stop();
  control_.close();
  journey_.flush();
  signals_.cancel();
  watchdog_.cancel();
  flush_timer_.cancel();
  io_.stop();
}

int Daemon::run() {
  auto log = ve::logger("control");
  register_core_commands();
  if (auto r = control_.listen(config_->control.socket); !r) {
    log->error("{}", r.error());
    return 1;
  }
  context_ = std::make_unique<Context>(Context{io_, journey_, control_, services_, config_});
  Wiring wiring{*context_, {}};
  add_all_components(wiring);
  components_ = std::move(wiring.components);
  for (auto& c : components_) {
    log->info("starting {}", c->name());
    c->start();
  }
  if (config_->control.http) {
    status_http_ = std::make_unique<StatusHttpServer>(io_, journey_, *config_->control.http);
    for (const auto& writer : services_.metrics) status_http_->add_metrics(writer);
    if (auto r = status_http_->start(); !r) log->error("status page: {}", r.error());
  }
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::microseconds(usec / 2);
    arm_watchdog();
  }
  wait_signals();
  arm_flush();
  log->info("voiceedged {} ready: site {}, {} ports, {} phones, control socket {}", VE_VERSION, config_->site.name,
            config_->ports.size(), config_->phones.size(), config_->control.socket);
  sd_notify(0, "READY=1");
  while (!stopping_) {
    try {
      io_.run();
      break;
    } catch (const std::exception& e) {
      // A bug in one handler must not take every phone's services down: log it and go on.
      log->critical("unhandled exception in event loop: {}", e.what());
    }
  }
  log->info("stopped");
  return 0;
}

}  // namespace ve::daemon
