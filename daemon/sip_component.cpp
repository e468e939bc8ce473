// Daemon glue for sip/: the registrar on the daemon's io_context, its bindings reported as phone
// events (steps 10 and 11) through the journey sink, and the "show.sip.registrations" command.
#include <ctime>

#include "daemon/daemon_registry.hpp"
#include "sip/sip.hpp"
#include "ve/log.hpp"
#include "ve/time_format.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;

json binding_json(const sip::BindingInfo& b) {
  return json{
      {"aor", b.aor},
      {"user", b.user},
      {"contact", b.contact},
      {"instance", b.instance},
      {"transport", sip::to_string(b.transport)},
      {"source", b.source},
      {"expires_in_s", b.expires_in_s},
      {"expires_at", iso_time(b.expires_at)},
      {"registered_at", iso_time(b.registered_at)},
      {"mac", b.mac ? json(b.mac->to_string()) : json()},
      {"device_name", b.device_name},
      {"model", b.model},
      {"user_agent", b.user_agent},
      {"active_load", b.active_load},
      {"inactive_load", b.inactive_load},
      {"reason_name", b.reason_name},
      {"call_id", b.call_id},
      {"cseq", b.cseq},
  };
}

json counters_json(const sip::ServerCounters& c) {
  return json{{"received", c.received},
              {"malformed_dropped", c.malformed_dropped},
              {"malformed_answered", c.malformed_answered},
              {"responses_ignored", c.responses_ignored},
              {"registers", c.registers},
              {"challenges", c.challenges},
              {"auth_failures", c.auth_failures},
              {"tcp_accepted", c.tcp_accepted},
              {"tcp_rejected", c.tcp_rejected},
              {"tcp_idle_closed", c.tcp_idle_closed}};
}

class SipComponent final : public Component {
 public:
  explicit SipComponent(Context& ctx) : server_(ctx.io, ctx.config, ctx.events, options_for(ctx)) {}

  // TCP connections are capped by the process's fd budget (ve/accept_guard.hpp).
  static sip::ServerOptions options_for(const Context& ctx) {
    sip::ServerOptions o;
    o.tcp_max_connections = ctx.fd_budget.cap(o.tcp_max_connections, fd_share::kSipTcp);
    return o;
  }

  std::string_view name() const override { return "sip"; }

  void start() override {
    auto r = server_.start();
    if (!r) {
      // Port in use or state dir unwritable: the rest of the daemon keeps serving phones.
      error_ = r.error();
      ve::logger("sip")->error("registrar not running: {}", error_);
      return;
    }
    ve::logger("sip")->info("registrar listening (udp port {}, tcp port {})", server_.udp_port(), server_.tcp_port());
  }

  Result<void, std::string> prepare_reconfigure(const config::SiteConfigPtr& config) override {
    return server_.prepare_reconfigure(config);
  }
  void abandon_reconfigure() override { server_.abandon_reconfigure(); }
  void reconfigure(const config::SiteConfigPtr& config) override { server_.reconfigure(config); }
  void stop() override { server_.stop(); }

  json registrations() const {
    json list = json::array();
    for (const auto& b : server_.registrations()) list.push_back(binding_json(b));
    return json{{"registrations", std::move(list)},
                {"counters", counters_json(server_.counters())},
                {"listening", json{{"udp_port", server_.udp_port()}, {"tcp_port", server_.tcp_port()}}},
                {"error", error_}};
  }

 private:
  sip::Server server_;
  std::string error_;
};

}  // namespace

void add_sip_component(Wiring& w) {
  auto component = std::make_unique<SipComponent>(w.ctx);
  SipComponent* raw = component.get();
  w.ctx.control.add("show.sip.registrations", [raw](const json&) -> ControlResult { return raw->registrations(); });
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
