// Daemon glue for poe/: the driver the site file names, the manager on the daemon's io_context
// (polled every second, at once on link changes and on PSE notifications), power negotiation for
// CDP/LLDP through Services, and the "show.power.inline" / "power.inline" control commands.
// Every driver call after start-up runs on the manager's PSE worker thread, its result posted back
// to the io_context: nothing here waits for the PSE on the loop.
#include <unistd.h>

#include <cmath>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "daemon/daemon_registry.hpp"
#include "poe/poe.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kPollInterval = 1s;

double watts(std::uint32_t mw) { return std::round(mw / 100.0) / 10.0; }

json port_json(const poe::PortView& v) {
  json j{{"interface", v.name},
         {"number", v.number},
         {"admin", config::to_string(v.mode)},
         {"admin_overridden", v.mode_overridden},
         {"oper", poe::to_string(v.oper)},
         {"priority", config::to_string(v.priority)},
         {"power_w", watts(v.measured_mw)},
         {"allocated_w", watts(v.allocated_mw)},
         {"max_w", watts(v.max_mw)},
         {"detail", v.detail}};
  j["class"] = v.power_class >= 0 ? json(v.power_class) : json();
  // Kernel 6.17+ PSE model: the power domain, the PSE's own priority, and who keeps the budget.
  j["power_domain"] = v.power_domain ? json(*v.power_domain) : json();
  j["pse_priority"] = v.pse_priority ? json(*v.pse_priority) : json();
  j["pse_priority_max"] = v.pse_priority_max ? json(*v.pse_priority_max) : json();
  j["budget_by"] = v.budget_by_pse ? "pse" : "manager";
  j["limit_w"] = v.limit_mw ? json(watts(*v.limit_mw)) : json();
  j["refused_requests"] = v.refused_requests;
  j["requested_w"] = v.requested_mw != 0 ? json(watts(v.requested_mw)) : json();
  if (v.device) {
    j["device"] = v.device->sep_name();
    j["mac"] = v.device->to_string();
  } else {
    j["device"] = json();
    j["mac"] = json();
  }
  return j;
}

class PoeComponent final : public Component {
 public:
  explicit PoeComponent(Context& ctx) : ctx_(ctx), poll_timer_(ctx.io), notifications_(ctx.io) {
    auto d = poe::make_driver(*ctx.config, poe::steady_clock_now());
    if (!d) {
      driver_error_ = d.error().message;
      ve::logger("poe")->error("PoE driver {} unavailable: {}", ctx.config->poe.driver, driver_error_);
      return;
    }
    driver_ = std::move(d.value());
    poe::ManagerOptions options;
    options.state_file = std::filesystem::path(ctx.config->state_dir) / "poe-state.json";
    options.post = [&io = ctx.io](std::function<void()> f) { boost::asio::post(io, std::move(f)); };
    manager_ = std::make_unique<poe::Manager>(*driver_, ctx.events, ctx.config, poe::steady_clock_now(), options);
    driver_name_ = ctx.config->poe.driver;
  }

  std::string_view name() const override { return "poe"; }

  void start() override {
    if (!manager_) return;
    std::error_code ec;
    std::filesystem::create_directories(ctx_.config->state_dir, ec);
    manager_->start();
    const auto t = manager_->totals();
    ve::logger("poe")->info("PoE driver {}: {} port(s), budget {:.1f} W, {:.1f} W allocated", driver_name_,
                            manager_->ports().size(), t.budget_mw / 1000.0, t.allocated_mw / 1000.0);
    watch_notifications();
    arm_poll();
  }

  void reconfigure(const config::SiteConfigPtr& config) override {
    if (!manager_) return;
    if (config->poe.driver != driver_name_) {
      ve::logger("poe")->warn("poe.driver changed to {}: takes effect at the next restart", config->poe.driver);
    }
    manager_->reconfigure(config);
  }

  // Power stays as it is: the next start adopts it.
  void stop() override {
    poll_timer_.cancel();
    if (notifications_.is_open()) {
      boost::system::error_code ec;
      notifications_.cancel(ec);
      notifications_.close(ec);
    }
  }

  poe::Manager* manager() { return manager_.get(); }
  const std::string& driver_error() const { return driver_error_; }

  json show(const std::string& only_port) const {
    json ports = json::array();
    for (const auto& v : manager_->ports()) {
      if (!only_port.empty() && v.name != only_port) continue;
      ports.push_back(port_json(v));
    }
    const auto t = manager_->totals();
    return json{{"driver", driver_name_},
                {"budget_w", watts(t.budget_mw)},
                {"allocated_w", watts(t.allocated_mw)},
                {"used_w", watts(t.used_mw)},
                {"remaining_w", watts(t.budget_mw > t.allocated_mw ? t.budget_mw - t.allocated_mw : 0)},
                {"ports", std::move(ports)}};
  }

 private:
  void arm_poll() {
    poll_timer_.expires_after(kPollInterval);
    poll_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;  // cancelled: stopping
      manager_->poll();
      arm_poll();
    });
  }

  // PSE notifications (kernel 6.17+ PSE_NTF, the sim's eventfd) make a port's change and its
  // reason (over-budget, over-current, disconnection) visible at once, not at the next poll.
  void watch_notifications() {
    const int fd = driver_->notification_fd();
    if (fd < 0) return;
    const int own = ::dup(fd);  // the descriptor object closes its own copy
    if (own < 0) return;
    notifications_.assign(own);
    wait_notification();
  }

  void wait_notification() {
    notifications_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                              [this](const boost::system::error_code& ec) {
                                if (ec) return;
                                // Waits again once the worker has drained the descriptor.
                                manager_->read_notifications([this] {
                                  if (notifications_.is_open()) wait_notification();
                                });
                              });
  }

  Context& ctx_;
  std::unique_ptr<poe::PoeDriver> driver_;
  std::unique_ptr<poe::Manager> manager_;
  std::string driver_name_;
  std::string driver_error_;
  boost::asio::steady_timer poll_timer_;
  boost::asio::posix::stream_descriptor notifications_;
};

std::optional<config::PoeMode> mode_word(const std::string& w) {
  if (w == "auto") return config::PoeMode::Auto;
  if (w == "off" || w == "never") return config::PoeMode::Off;
  if (w == "on" || w == "static") return config::PoeMode::Static;
  return std::nullopt;
}

}  // namespace

void add_poe_component(Wiring& w) {
  auto component = std::make_unique<PoeComponent>(w.ctx);
  PoeComponent* raw = component.get();

  if (poe::Manager* mgr = raw->manager()) {
    w.ctx.services.negotiate_power = [mgr](const std::string& port, std::uint32_t requested_mw) {
      return mgr->negotiate(port, requested_mw);
    };
    w.ctx.services.available_power = [mgr](const std::string& port) { return mgr->available(port); };
    w.ctx.services.link_listeners.push_back([mgr](const std::string& port, bool up) {
      if (!up) mgr->clear_port_device(port);
      mgr->poll_port(port);
    });
    w.ctx.services.device_listeners.push_back(
        [mgr](const std::string& port, const MacAddress& mac) { mgr->set_port_device(port, mac); });
    // Phone control's power-cycle: off now, on after `off_for` (a timer on the loop, never a sleep)
    // counted from when the PSE has switched it off; `done` once the PSE has enabled it again.
    w.ctx.services.power_cycle = [mgr, &io = w.ctx.io](
                                     const std::string& port, std::chrono::milliseconds off_for,
                                     std::function<void(Result<void, std::string>)> done) -> Result<void, std::string> {
      return mgr->begin_power_cycle(port, [mgr, port, off_for, &io, done = std::move(done)] {
        auto timer = std::make_shared<boost::asio::steady_timer>(io, off_for);
        timer->async_wait([mgr, port, timer, done](const boost::system::error_code& ec) {
          if (ec) {
            mgr->end_power_cycle(port);
            if (done) done(unexpected(std::string("stopping")));
            return;
          }
          mgr->end_power_cycle(port, [done] {
            if (done) done(Result<void, std::string>{});
          });
        });
      });
    };
    w.ctx.services.poe_port_of = [mgr](const MacAddress& mac) -> std::optional<std::string> {
      for (const auto& v : mgr->ports())
        if (v.device && *v.device == mac) return v.name;
      return std::nullopt;
    };
  }

  w.ctx.control.add(command::kShowPowerInline, [raw](const json& args) -> ControlResult {
    if (raw->manager() == nullptr) {
      return unexpected(ControlError{"unavailable", "PoE driver unavailable: " + raw->driver_error()});
    }
    std::string port;
    if (args.is_object() && args.contains("port")) {
      if (!args["port"].is_string()) return unexpected(ControlError{"bad-request", "port must be a string"});
      port = args["port"].get<std::string>();
      if (!raw->manager()->port(port)) return unexpected(ControlError{"not-found", "no such port: " + port});
    }
    return raw->show(port);
  });

  // Answers once the PSE has done it, so the answer (and a `show` right after) shows the new state.
  w.ctx.control.add_async(command::kPowerInline, ControlRole::Admin, [raw](const json& args, ControlDone done) {
    if (raw->manager() == nullptr) {
      return done(unexpected(ControlError{"unavailable", "PoE driver unavailable: " + raw->driver_error()}));
    }
    if (!args.is_object() || !args.contains("port") || !args["port"].is_string() || !args.contains("mode") ||
        !args["mode"].is_string()) {
      return done(unexpected(ControlError{"bad-request", "power inline needs a port and a mode (on, off or auto)"}));
    }
    const auto port = args["port"].get<std::string>();
    const auto mode = mode_word(args["mode"].get<std::string>());
    if (!mode) return done(unexpected(ControlError{"bad-request", "mode must be on, off or auto"}));
    auto r = raw->manager()->set_mode(port, *mode, [raw, port, done] { done(raw->show(port)); });
    if (!r) return done(unexpected(ControlError{"not-found", r.error()}));
  });

  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
