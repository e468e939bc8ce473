// Daemon glue for net/: the voice VLAN data plane (bridge or 802.1Q sub-interfaces, reconciled
// on start, reload and link events) and the link monitor, which tells the other components
// through Services::link_changed when a port goes up or down (CDP fast start / TTL 0 and
// neighbour expiry with its phone events, PoE detection). Control: "show.interfaces".
#include "daemon/daemon_registry.hpp"
#include "net/net.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;

class NetComponent final : public Component {
 public:
  explicit NetComponent(Context& ctx)
      : ctx_(ctx), manager_(ctx.io, ctx.config, [this](const std::string& port, bool up) { on_link(port, up); }) {}

  std::string_view name() const override { return "net"; }

  void start() override {
    auto r = manager_.start();
    if (!r) {
      error_ = r.error().to_string();
      ve::logger("net")->error("link monitor and VLAN programming unavailable: {}", error_);
      return;
    }
    started_ = true;
  }

  void reconfigure(const config::SiteConfigPtr& config) override {
    if (started_) manager_.reconfigure(config);
  }

  // VLANs, bridge and addresses stay: phones keep working while the daemon restarts.
  void stop() override { manager_.stop(); }

  ControlResult show(const json& args) const {
    if (!started_) return unexpected(ControlError{"unavailable", "net unavailable: " + error_});
    json data = manager_.status_json();
    if (args.is_object() && args.contains("port")) {
      if (!args["port"].is_string()) return unexpected(ControlError{"bad-request", "port must be a string"});
      const auto want = args["port"].get<std::string>();
      json only = json::array();
      for (const auto& p : data["ports"])
        if (p["name"] == want) only.push_back(p);
      if (only.empty()) return unexpected(ControlError{"not-found", "no such port in the site file: " + want});
      data["ports"] = std::move(only);
    }
    return data;
  }

  std::string service_interface(const config::Subnet& subnet) const {
    return started_ ? manager_.service_interface(subnet) : subnet.interface;
  }

 private:
  // Components start after net, so the first state of each port is not announced (they look
  // at their ports when they start); changes after that are.
  void on_link(const std::string& port, bool up) {
    if (!started_) return;
    ctx_.services.link_changed(port, up);
  }

  Context& ctx_;
  net::Manager manager_;
  bool started_ = false;
  std::string error_;
};

}  // namespace

void add_net_component(Wiring& w) {
  auto component = std::make_unique<NetComponent>(w.ctx);
  NetComponent* raw = component.get();
  // Valid once net has started (it starts first); before that the site file's own interface.
  w.ctx.services.service_interface = [raw](const config::Subnet& subnet) { return raw->service_interface(subnet); };
  w.ctx.control.add(command::kShowInterfaces, [raw](const json& args) { return raw->show(args); });
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
