#include "daemon/daemon.hpp"

#include <malloc.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <csignal>

#include <fmt/format.h>

#include "daemon/daemon_registry.hpp"
#include "daemon/status_http.hpp"
#include "ve/control_commands.hpp"
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
      journey_(
          [&] {
            std::error_code ec;
            std::filesystem::create_directories(config_->state_dir, ec);
            if (ec) {
              ve::logger("journey")->error("cannot create state_dir {}: {}", config_->state_dir, ec.message());
              return std::filesystem::path();
            }
            return std::filesystem::path(config_->state_dir) / "journey.sqlite";
          }(),
          config_) {
  journey_.set_config(config_);
  // A phone or client vanishing mid-write must not kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
}

Daemon::~Daemon() = default;

void Daemon::apply_control_access() {
  auto log = ve::logger("control");
  ControlAccess access;
  access.read_group = config_->control.read_group;
  access.admin_group = config_->control.admin_group;
  access.read_gid = resolve_group(access.read_group);
  access.admin_gid = resolve_group(access.admin_group);
  // Said once per start or reload: a missing group means fewer people get in, never more.
  if (!access.read_group.empty() && !access.read_gid)
    log->warn(
        "control.read_group '{}' does not exist: only root, the daemon's user and control.admin_group may use "
        "the control socket",
        access.read_group);
  if (!access.admin_group.empty() && !access.admin_gid)
    log->warn("control.admin_group '{}' does not exist: only root and the daemon's user may change things",
              access.admin_group);
  control_.set_access(std::move(access));
}

void Daemon::register_core_commands() {
  control_.add(command::kVersion, ControlRole::Read, [](const nlohmann::json&) -> ControlResult {
    return nlohmann::json{{"name", "voiceedged"}, {"version", VE_VERSION}};
  });
  control_.add(command::kShowConfig, ControlRole::Read,
               [this](const nlohmann::json&) -> ControlResult { return config::to_json(*config_); });
  control_.add(command::kReload, ControlRole::Admin, [this](const nlohmann::json&) { return reload(); });
  control_.add(command::kShowPhones, ControlRole::Read,
               [this](const nlohmann::json&) -> ControlResult { return journey_.phones_json(); });
  control_.add(command::kShowJourney, ControlRole::Read, [this](const nlohmann::json& args) -> ControlResult {
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
  const auto next = loaded.value();
  // Everything that can fail (a port taken by someone else) is acquired first; one failure and
  // nothing changes: the old sockets keep listening and the old config keeps running.
  std::vector<Component*> prepared;
  for (auto& c : components_) {
    auto r = c->prepare_reconfigure(next);
    if (!r) {
      for (auto* p : prepared) p->abandon_reconfigure();
      const auto text = fmt::format("{}: {}", c->name(), r.error());
      log->error("reload rejected: {}; the previous configuration keeps running", text);
      return unexpected(ControlError{"failed", text});
    }
    prepared.push_back(c.get());
  }
  config_ = next;
  journey_.set_config(config_);
  apply_control_access();
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

// A boot storm leaves megabytes free inside glibc's heap (frames copied from the capture ring,
// HTTP answers, lease file reads, interleaved with what stays), and glibc gives back only the top
// of the heap: 20 of 62 MB were free but resident after a 1000-phone storm. malloc_trim returns
// the free pages in the middle too. It runs when another kTrimStep has been freed since the last
// trim (free bytes that were reused lower the mark), not on every tick.
void Daemon::trim_heap() {
  constexpr std::size_t kTrimStep = 1024 * 1024;
  const std::size_t free_now = mallinfo2().fordblks;
  heap_free_low_ = std::min(heap_free_low_, free_now);
  if (free_now < heap_free_low_ + kTrimStep) return;
  malloc_trim(0);
  heap_free_low_ = free_now;
}

void Daemon::arm_flush() {
  flush_timer_.expires_after(std::chrono::milliseconds(500));
  flush_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    journey_.flush();
    trim_heap();
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
  // Every connection cap below is a share of this (see ve/accept_guard.hpp).
  std::string fd_note;
  fd_budget_ = FdBudget::from_process(&fd_note);
  log->info("file descriptors: limit {}{}, {} reserved for the control socket, state files and Kea", fd_budget_.limit,
            fd_note.empty() ? "" : " (" + fd_note + ")", fd_budget_.reserve);
  register_core_commands();
  apply_control_access();
  if (auto r = control_.listen(config_->control.socket); !r) {
    log->error("{}", r.error());
    return 1;
  }
  context_ = std::make_unique<Context>(Context{io_, events_, control_, services_, config_, fd_budget_});
  Wiring wiring{*context_, {}};
  add_all_components(wiring);
  components_ = std::move(wiring.components);
  for (auto& c : components_) {
    log->info("starting {}", c->name());
    c->start();
  }
  if (config_->control.http) {
    StatusHttpServer::Limits limits;
    limits.max_connections = fd_budget_.cap(limits.max_connections, fd_share::kStatusPage);
    limits.max_streams = std::min(limits.max_streams, limits.max_connections);
    status_http_ = std::make_unique<StatusHttpServer>(io_, journey_, *config_->control.http, limits);
    status_http_->set_config_source([this] { return config_; });
    // Read-only: the page can run what `voiceedgectl show` can, never a command that changes things.
    status_http_->set_control(
        [this](const std::string& request) { return control_.handle_line(request, ControlRole::Read); });
    for (const auto& writer : services_.metrics) status_http_->add_metrics(writer);
    for (const auto& d : services_.phone_downloads) {
      status_http_->add_download({d.file, d.label, d.available, [serve = d.serve](const MacAddress& mac) {
                                    auto file = serve ? serve(mac) : std::nullopt;
                                    if (!file)
                                      return StatusHttpServer::Page{404, "text/plain; charset=utf-8",
                                                                    "nothing to download for this phone\n", ""};
                                    return StatusHttpServer::Page{200, file->content_type, std::move(file->body), ""};
                                  }});
    }
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
