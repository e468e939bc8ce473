// The manager: what the daemon runs. Probes the kernel once, reconciles on start, reload and link
// events (debounced), keeps a per-port status and tells listeners when a port goes up or down.
#include <set>

#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "net/net.hpp"
#include "ve/log.hpp"

namespace ve::net {

namespace {
constexpr int kMaxPasses = 3;  // joining a bridge adds the kernel's default PVID; the next pass removes it

std::string vlan_list(const std::vector<BridgeVlan>& vlans) {
  std::string out;
  for (const auto& v : vlans)
    out += fmt::format("{}{}{}{}", out.empty() ? "" : ", ", v.vid, v.pvid ? " pvid" : "",
                       v.untagged ? " untagged" : " tagged");
  return out;
}
}  // namespace

struct Manager::Impl : std::enable_shared_from_this<Manager::Impl> {
  Impl(boost::asio::io_context& io_, config::SiteConfigPtr cfg, LinkListener listener, Options opts)
      : io(io_),
        config(std::move(cfg)),
        on_link(std::move(listener)),
        options(opts),
        timer(io_),
        log(ve::logger("net")) {}

  boost::asio::io_context& io;
  config::SiteConfigPtr config;
  Wanted wanted;
  LinkListener on_link;
  Options options;
  boost::asio::steady_timer timer;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<Programmer> programmer;
  std::unique_ptr<LinkMonitor> monitor;
  KernelFeatures features;
  Present present;                              // as read after the last reconcile
  std::map<std::string, Issue> issues;          // by subject, from the last reconcile
  std::map<std::string, std::string> failures;  // by subject: actions the kernel refused
  std::map<std::string, std::string> logged;    // what was last logged per subject (log changes only)
  std::map<std::string, bool> port_up;          // last reported state per configured port
  std::uint64_t reconcile_count = 0;
  std::uint64_t applied_count = 0;
  bool reconcile_pending = false;
  bool stopped = false;

  bool is_port(const std::string& name) const { return config->find_port(name) != nullptr; }

  bool concerns_us(const std::string& name) const {
    if (name.empty()) return false;
    if (is_port(name) || name == wanted.bridge) return true;
    for (const auto& vi : wanted.vlan_interfaces)
      if (vi.name == name || vi.parent == name) return true;
    return false;
  }

  void schedule_reconcile() {
    if (reconcile_pending || stopped) return;
    reconcile_pending = true;
    timer.expires_after(options.reconcile_delay);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->reconcile_pending = false;
      if (!ec && !self->stopped) self->reconcile();
    });
  }

  void report_port(const std::string& port, bool up, const char* why) {
    auto it = port_up.find(port);
    if (it != port_up.end() && it->second == up) return;
    port_up[port] = up;
    log->info("port {} link {}{}", port, up ? "up" : "down", why);
    if (on_link) on_link(port, up);
  }

  void on_event(const LinkEvent& ev) {
    if (!ev.old_name.empty() && is_port(ev.old_name)) {
      log->warn("port {} renamed to {}", ev.old_name, ev.name);
      report_port(ev.old_name, false, " (renamed away)");
    }
    if (is_port(ev.name)) {
      switch (ev.type) {
        case LinkEvent::Type::Added: log->info("port {} appeared", ev.name); break;
        case LinkEvent::Type::Removed: log->warn("port {} removed", ev.name); break;
        case LinkEvent::Type::Changed:
          if (!ev.old_name.empty()) log->info("port {} appeared (renamed from {})", ev.name, ev.old_name);
          break;
      }
      report_port(ev.name, ev.type != LinkEvent::Type::Removed && ev.up(),
                  ev.type == LinkEvent::Type::Removed ? " (removed)" : "");
    }
    // Appearance, removal and renames can change the plan; plain up/down of a port cannot.
    bool structural = ev.type != LinkEvent::Type::Changed || !ev.old_name.empty();
    if ((structural && (concerns_us(ev.name) || concerns_us(ev.old_name))) ||
        (ev.type == LinkEvent::Type::Changed && !ev.admin_up && concerns_us(ev.name) && !is_port(ev.name)))
      schedule_reconcile();
  }

  void note(const std::string& subject, const std::string& text, bool is_error) {
    auto& last = logged[subject];
    if (last == text) return;
    last = text;
    if (text.empty()) return;
    if (is_error)
      log->error("{}: {}", subject, text);
    else
      log->warn("{}: {}", subject, text);
  }

  std::vector<Action> reconcile() {
    std::vector<Action> applied;
    if (!programmer) return applied;
    ++reconcile_count;
    failures.clear();
    Plan p;
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      auto now = programmer->read_present();
      if (!now) {
        log->error("reading the kernel's links failed: {}", now.error().to_string());
        failures["kernel"] = now.error().to_string();
        return applied;
      }
      present = std::move(*now);
      p = plan(wanted, present, features);
      if (p.empty()) break;
      bool failed = false;
      for (const auto& a : p.actions) {
        auto r = programmer->apply(a);
        if (!r) {
          failures[a.name] = r.error().to_string();
          failed = true;
          break;  // later actions depend on earlier ones; the next reconcile retries
        }
        log->info("{}", describe(a));
        ++applied_count;
        applied.push_back(a);
      }
      if (failed) {
        if (auto again = programmer->read_present()) present = std::move(*again);
        break;
      }
    }
    issues.clear();
    for (const auto& i : p.issues) issues[i.subject] = i;
    std::set<std::string> subjects;
    for (const auto& port : config->ports) subjects.insert(port.name);
    for (const auto& vi : wanted.vlan_interfaces) subjects.insert(vi.name);
    for (const auto& [s, f] : failures) subjects.insert(s);
    for (const auto& [s, i] : issues) subjects.insert(s);
    for (const auto& s : subjects) {
      if (auto f = failures.find(s); f != failures.end())
        note(s, f->second, true);
      else if (auto i = issues.find(s); i != issues.end())
        note(s, std::string(to_string(i->second.kind)) + ": " + i->second.message, false);
      else
        note(s, "", false);
    }
    return applied;
  }

  std::string programmed(const PresentLink* link) const {
    if (link == nullptr || wanted.mode == Mode::None) return {};
    std::vector<std::string> parts;
    if (const PresentLink* br = present.find(link->master)) {
      auto v = present.bridge_vlans.find(link->ifindex);
      parts.push_back(
          fmt::format("{}: {}", br->name, v == present.bridge_vlans.end() ? "no vlans" : vlan_list(v->second)));
    }
    for (const auto& l : present.links)
      if (l.parent == link->ifindex && l.kind == "vlan" && l.ifindex != link->ifindex)
        parts.push_back(fmt::format("{} (vlan {})", l.name, l.vlan_id));
    std::string out;
    for (const auto& s : parts) out += (out.empty() ? "" : "; ") + s;
    return out;
  }

  PortStatus port_status(const config::Port& port) const {
    PortStatus st;
    st.name = port.name;
    st.pvid = port.data_vlan;
    st.voice_vlan = port.voice_vlan;
    std::optional<LinkEvent> live = monitor ? monitor->find(port.name) : std::nullopt;
    const PresentLink* link = present.find(port.name);
    st.present = live.has_value() || (monitor == nullptr && link != nullptr);
    if (live) {
      st.admin_up = live->admin_up;
      st.carrier = live->carrier;
    } else if (link != nullptr) {
      st.admin_up = link->admin_up;
      st.carrier = link->carrier;
    }
    if (st.present && programmer) st.speed_mbps = programmer->speed_mbps(port.name);
    st.programmed = programmed(link);
    if (auto f = failures.find(port.name); f != failures.end()) {
      st.state = "error";
      st.error = f->second;
    } else if (auto i = issues.find(port.name); i != issues.end()) {
      st.state = std::string(to_string(i->second.kind));
      st.error = i->second.message;
      // It appeared since the last reconcile, which is due in a moment.
      if (i->second.kind == IssueKind::Absent && st.present) {
        st.state = "pending";
        st.error = "appeared; being programmed";
      }
    } else if (!st.present) {
      st.state = "absent";
    } else {
      st.state = wanted.mode == Mode::None ? "unmanaged" : "ok";
    }
    return st;
  }
};

Manager::Manager(boost::asio::io_context& io, config::SiteConfigPtr config, LinkListener on_link, Options options)
    : impl_(std::make_shared<Impl>(io, std::move(config), std::move(on_link), options)) {
  impl_->wanted = wanted_from_config(*impl_->config);
}

Manager::~Manager() { stop(); }

Result<void, NetError> Manager::start() {
  Impl& m = *impl_;
  auto prog = Programmer::open();
  if (!prog) return unexpected(prog.error());
  m.programmer = std::move(*prog);
  if (m.wanted.mode != Mode::None) {
    m.features = m.programmer->probe_features();
    m.log->info("kernel: bridge {}, bridge VLAN filtering {}, 802.1Q VLAN interfaces {}; mode {}",
                m.features.bridge ? "yes" : "no", m.features.bridge_vlan_filtering ? "yes" : "no",
                m.features.vlan_8021q ? "yes" : "no", to_string(m.wanted.mode));
  }
  std::weak_ptr<Impl> weak = impl_;
  auto mon = LinkMonitor::start(m.io, [weak](const LinkEvent& ev) {
    if (auto self = weak.lock()) self->on_event(ev);
  });
  if (!mon) return unexpected(mon.error());
  m.monitor = std::move(*mon);
  // Initial state of each configured port; listeners hear about ports that are up now.
  for (const auto& port : m.config->ports) {
    auto live = m.monitor->find(port.name);
    if (!live) m.log->warn("port {} not present yet; waiting for it", port.name);
    m.report_port(port.name, live && live->up(), " (at start)");
  }
  m.reconcile();
  return {};
}

void Manager::reconfigure(config::SiteConfigPtr config) {
  Impl& m = *impl_;
  m.config = std::move(config);
  Wanted next = wanted_from_config(*m.config);
  if (m.programmer && next.mode != Mode::None && m.wanted.mode == Mode::None)
    m.features = m.programmer->probe_features();
  m.wanted = std::move(next);
  for (const auto& port : m.config->ports) {
    auto live = m.monitor ? m.monitor->find(port.name) : std::nullopt;
    m.report_port(port.name, live && live->up(), " (config reload)");
  }
  std::erase_if(m.port_up, [&](const auto& kv) { return !m.is_port(kv.first); });
  m.reconcile();
}

void Manager::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->timer.cancel();
  if (impl_->monitor) impl_->monitor->stop();
  // Nothing is torn down: phones keep their VLANs while the daemon restarts.
}

std::vector<Action> Manager::reconcile() { return impl_->reconcile(); }
const KernelFeatures& Manager::features() const { return impl_->features; }

std::string Manager::service_interface(const config::Subnet& subnet) const {
  const Impl& m = *impl_;
  const KernelFeatures& f = m.features;
  bool programmable = f.vlan_8021q && (m.wanted.mode != Mode::Bridge || f.bridge_vlan_filtering);
  if (m.wanted.mode == Mode::None || !programmable) return subnet.interface;
  return net::service_interface(*m.config, subnet);
}
std::uint64_t Manager::reconciles() const { return impl_->reconcile_count; }
std::uint64_t Manager::actions_applied() const { return impl_->applied_count; }

std::vector<PortStatus> Manager::ports() const {
  std::vector<PortStatus> out;
  for (const auto& port : impl_->config->ports) out.push_back(impl_->port_status(port));
  return out;
}

nlohmann::json Manager::status_json() const {
  const Impl& m = *impl_;
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& st : this->ports()) {
    nlohmann::json j{
        {"name", st.name},         {"present", st.present},
        {"admin_up", st.admin_up}, {"link", !st.present ? "absent" : (st.admin_up && st.carrier ? "up" : "down")},
        {"pvid", st.pvid},         {"voice_vlan", st.voice_vlan},
        {"state", st.state},       {"programmed", st.programmed},
        {"error", st.error}};
    j["speed_mbps"] = st.speed_mbps ? nlohmann::json(*st.speed_mbps) : nlohmann::json(nullptr);
    ports.push_back(std::move(j));
  }
  nlohmann::json vlans = nlohmann::json::array();
  for (const auto& vi : m.wanted.vlan_interfaces) {
    const PresentLink* link = m.present.find(vi.name);
    std::string state = link != nullptr ? "ok" : "absent";
    std::string error;
    if (auto f = m.failures.find(vi.name); f != m.failures.end()) {
      state = "error";
      error = f->second;
    } else if (auto i = m.issues.find(vi.name); i != m.issues.end()) {
      state = std::string(to_string(i->second.kind));
      error = i->second.message;
    } else if (!m.features.vlan_8021q || (m.wanted.mode == Mode::Bridge && !m.features.bridge_vlan_filtering)) {
      state = "unsupported";
    }
    vlans.push_back({{"name", vi.name},
                     {"parent", vi.parent},
                     {"vid", vi.vid},
                     {"address", vi.address ? vi.address->to_string() : ""},
                     {"present", link != nullptr},
                     {"up", link != nullptr && link->admin_up},
                     {"state", state},
                     {"error", error}});
  }
  return {{"mode", std::string(to_string(m.wanted.mode))},
          {"bridge", m.wanted.mode == Mode::Bridge ? m.wanted.bridge : ""},
          {"features",
           {{"bridge", m.features.bridge},
            {"bridge_vlan_filtering", m.features.bridge_vlan_filtering},
            {"vlan_8021q", m.features.vlan_8021q}}},
          {"ports", std::move(ports)},
          {"vlan_interfaces", std::move(vlans)},
          {"reconciles", m.reconcile_count},
          {"actions_applied", m.applied_count}};
}

}  // namespace ve::net
