// Daemon glue for provision/: TFTP (udp/69) and HTTP (tcp/6970) over the site's file tree, phone
// IPs resolved to MACs through the DHCP component, and the "show.provision" control command.
#include <ctime>

#include "daemon/daemon_registry.hpp"
#include "provision/provision.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"
#include "ve/time_format.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;

bool same_listeners(const provision::ProvisionerOptions& a, const provision::ProvisionerOptions& b) {
  return a.tftp.listen.to_string() == b.tftp.listen.to_string() &&
         a.http.listen.to_string() == b.http.listen.to_string() && a.tftp.max_transfers == b.tftp.max_transfers &&
         a.tftp.max_per_client == b.tftp.max_per_client && a.http.max_connections == b.http.max_connections &&
         a.http.max_per_client == b.http.max_per_client;
}

// The site's limits, lowered to what the process's file descriptors allow (each TFTP transfer
// and each HTTP connection holds one).
provision::ProvisionerOptions budgeted(provision::ProvisionerOptions o, const FdBudget& budget) {
  o.tftp.max_transfers =
      static_cast<int>(budget.cap(static_cast<std::size_t>(std::max(o.tftp.max_transfers, 1)), fd_share::kTftp));
  o.http.max_connections =
      static_cast<int>(budget.cap(static_cast<std::size_t>(std::max(o.http.max_connections, 1)), fd_share::kHttp));
  return o;
}

json counters_json(const provision::Counters& c) {
  return json{{"tftp",
               {{"requests", c.tftp_requests},
                {"ok", c.tftp_ok},
                {"not_found", c.tftp_not_found},
                {"refused", c.tftp_refused},
                {"config_refused", c.tftp_config_refused},
                {"options_ignored", c.tftp_options_ignored},
                {"lifetime_exceeded", c.tftp_lifetime_exceeded},
                {"busy_memory", c.tftp_busy_memory},
                {"netascii_conversions", c.netascii_conversions},
                {"failed", c.tftp_failed},
                {"busy", c.tftp_busy},
                {"malformed", c.tftp_malformed},
                {"retransmits", c.tftp_retransmits}}},
              {"http",
               {{"requests", c.http_requests},
                {"ok", c.http_ok},
                {"not_found", c.http_not_found},
                {"refused", c.http_refused},
                {"config_refused", c.http_config_refused},
                {"failed", c.http_failed},
                {"bad_method", c.http_bad_method},
                {"busy", c.http_busy},
                {"malformed", c.http_malformed}}},
              {"bytes_sent", c.bytes_sent}};
}

json record_json(const provision::TransferRecord& r) {
  return json{{"time", iso_time(r.time)},
              {"protocol", provision::to_string(r.protocol)},
              {"client_ip", r.client_ip},
              {"phone", r.mac ? r.mac->sep_name() : ""},
              {"file", r.file},
              {"step", r.step ? std::string(to_string(*r.step)) : ""},
              {"outcome", to_string(r.outcome)},
              {"result", r.result},
              {"bytes", r.bytes},
              {"duration_ms", r.duration.count()}};
}

class ProvisionComponent final : public Component {
 public:
  explicit ProvisionComponent(Context& ctx)
      : ctx_(ctx),
        provisioner_(ctx.io, ctx.config, budgeted(provision::options_from(*ctx.config), ctx.fd_budget), ctx.events,
                     // Looked up at call time: DHCP may be absent or wired after us.
                     [services = &ctx.services](const std::string& ip) -> std::optional<MacAddress> {
                       if (services->mac_for_ip) return services->mac_for_ip(ip);
                       return std::nullopt;
                     }) {}

  std::string_view name() const override { return "provision"; }

  void start() override {
    if (auto r = provisioner_.start(); !r) {
      ve::logger("provision")->error("provisioning servers not started: {}", r.error());
      last_error_ = r.error();
    } else {
      last_error_.clear();
    }
  }

  Result<void, std::string> prepare_reconfigure(const config::SiteConfigPtr& config) override {
    prepared_ = false;
    auto options = budgeted(provision::options_from(*config), ctx_.fd_budget);
    if (same_listeners(options, provisioner_.options())) return {};
    if (provisioner_.tftp_port() == 0 && provisioner_.http_port() == 0) return {};  // not running: start() below
    if (auto r = provisioner_.prepare_options(std::move(options)); !r) return r;
    prepared_ = true;
    return {};
  }

  void abandon_reconfigure() override {
    provisioner_.abandon_options();
    prepared_ = false;
  }

  void reconfigure(const config::SiteConfigPtr& config) override {
    provisioner_.reconfigure(config);
    auto options = budgeted(provision::options_from(*config), ctx_.fd_budget);
    if (prepared_) {
      // Only a changed listener or limit touches the servers (transfers on a moved one are cut).
      ve::logger("provision")->info("provisioning listeners changed; switching TFTP/HTTP");
      provisioner_.commit_options();
      prepared_ = false;
      last_error_.clear();
    } else if (!same_listeners(options, provisioner_.options())) {
      // Not running (its start failed): try the new listeners now.
      provisioner_.stop();
      provisioner_.set_options(std::move(options));
      start();
    }
  }

  void stop() override { provisioner_.stop(); }

  std::string metrics() const { return provisioner_.metrics(); }

  json show(std::size_t limit) const {
    json recent = json::array();
    const auto records = provisioner_.recent();
    const std::size_t first = records.size() > limit ? records.size() - limit : 0;
    for (std::size_t i = first; i < records.size(); ++i) recent.push_back(record_json(records[i]));
    json generated = json::array();
    for (const auto& name : provisioner_.tree()->generated_names()) generated.push_back(name);
    const auto& o = provisioner_.options();
    return json{{"tftp",
                 {{"listen", o.tftp.listen.host + ":" + std::to_string(provisioner_.tftp_port())},
                  {"active", provisioner_.active_tftp_transfers()},
                  {"max_transfers", o.tftp.max_transfers},
                  {"max_per_client", o.tftp.max_per_client}}},
                {"http",
                 {{"listen", o.http.listen.host + ":" + std::to_string(provisioner_.http_port())},
                  {"connections", provisioner_.open_http_connections()},
                  {"max_connections", o.http.max_connections}}},
                {"root", provisioner_.tree()->site().provisioning.root},
                {"secure", provisioner_.tree()->site().provisioning.secure},
                {"config_access", config::to_string(provisioner_.tree()->site().provisioning.config_access)},
                {"netascii_bytes", provisioner_.netascii_bytes()},
                {"error", last_error_},
                {"counters", counters_json(provisioner_.counters())},
                {"generated", std::move(generated)},
                {"recent", std::move(recent)}};
  }

 private:
  Context& ctx_;
  provision::Provisioner provisioner_;
  std::string last_error_;
  bool prepared_ = false;
};

}  // namespace

void add_provision_component(Wiring& w) {
  auto component = std::make_unique<ProvisionComponent>(w.ctx);
  ProvisionComponent* raw = component.get();
  w.ctx.control.add(command::kShowProvision, [raw](const json& args) -> ControlResult {
    std::size_t limit = 20;
    if (args.is_object() && args.contains("limit")) {
      if (!args["limit"].is_number_unsigned())
        return unexpected(ControlError{"bad-request", "limit must be a positive number"});
      limit = std::min<std::size_t>(args["limit"].get<std::size_t>(), 1000);
    }
    return raw->show(limit);
  });
  w.ctx.services.metrics.emplace_back([raw] { return raw->metrics(); });
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
