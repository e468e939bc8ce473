// Daemon glue for dhcp/: the Manager (Kea, lease reports, lease table) on the daemon's io_context,
// its phone events through the journey sink, Services::mac_for_ip and "show.dhcp.leases".
#include "daemon/daemon_registry.hpp"
#include "dhcp/dhcp.hpp"
#include "ve/control_commands.hpp"

namespace ve::daemon {
namespace {

class DhcpComponent final : public Component {
 public:
  explicit DhcpComponent(Context& ctx)
      : manager_(ctx.io, ctx.config, ctx.events,
                 // Looked up whenever Kea is (re)configured: the order of wiring does not matter.
                 [&services = ctx.services](const config::Subnet& subnet) {
                   return services.service_interface ? services.service_interface(subnet) : std::string{};
                 }) {}

  std::string_view name() const override { return "dhcp"; }
  void start() override { manager_.start(); }
  void reconfigure(const config::SiteConfigPtr& config) override { manager_.reconfigure(config); }
  void stop() override { manager_.stop(); }

  dhcp::Manager& manager() { return manager_; }

 private:
  dhcp::Manager manager_;
};

}  // namespace

void add_dhcp_component(Wiring& w) {
  auto component = std::make_unique<DhcpComponent>(w.ctx);
  auto& dhcp = component->manager();
  w.ctx.control.add(command::kShowDhcpLeases, [&dhcp](const nlohmann::json&) -> ControlResult {
    return nlohmann::json{{"leases", dhcp.leases()}, {"status", dhcp.status()}};
  });
  w.ctx.services.mac_for_ip = [&dhcp](const std::string& ip) { return dhcp.mac_for_ip(ip); };
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
