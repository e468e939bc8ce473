// Server: opens the store, binds sip.listen, sweeps expired bindings on a timer.
#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>

#include "sip/transport.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;

namespace {
// The key of the Path flow tokens, kept so that the Paths the cluster stored stay valid across a
// restart: read, or made (random, 32 bytes, mode 0600) on first start. nullopt when it cannot be
// kept (the daemon then uses a key of this run only).
std::optional<std::string> flow_key(const std::filesystem::path& file) {
  constexpr std::size_t kBytes = 32;
  if (std::ifstream in{file, std::ios::binary}) {
    std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (key.size() == kBytes) return key;
  }
  std::random_device rd;
  std::string key;
  while (key.size() < kBytes) {
    const auto v = rd();
    key.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  key.resize(kBytes);
  const auto tmp = file.string() + ".new";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return std::nullopt;
  const bool ok = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), file.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return std::nullopt;
  }
  return key;
}
}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io_, config::SiteConfigPtr config_, EventSink& events, ServerOptions options_)
      : io(io_),
        config(config_),
        options(options_),
        core(std::make_shared<Core>(io_, config_, events, options_)),
        sweep_timer(io_) {
    core->proxy.on_call_ended([records = &core->records](const CallInfo& c) { records->add(c); });
    core->upstream.on_mode_change([this](SipMode from, SipMode to, const std::string& why) {
      auto log = ve::logger("sip");
      if (to == SipMode::Survivable)
        log->warn("SRST: survivable mode (was {}): {}; the box registers the phones itself", to_string(from), why);
      else
        log->info("SRST: {} mode (was {}): {}", to_string(to), to_string(from), why);
      changes.push_back(
          ModeChange{std::chrono::system_clock::now(), std::string(to_string(from)), std::string(to_string(to)), why});
      if (changes.size() > 50) changes.erase(changes.begin());
    });
  }

  // The sockets for one sip.listen list, keyed by endpoint text ("udp:0.0.0.0:5060").
  struct Listeners {
    std::map<std::string, std::shared_ptr<UdpTransport>> udp;
    std::map<std::string, std::shared_ptr<TcpListener>> tcp;
  };

  // Binds `listen`, taking over the open sockets of `reuse` whose endpoint is unchanged (their
  // connections stay). Nothing is started; on error whatever was bound here is closed.
  Result<Listeners, std::string> bind_listeners(const std::vector<config::Endpoint>& listen, const Listeners& reuse) {
    Listeners out;
    const auto fail = [&](std::string text) -> Result<Listeners, std::string> {
      for (auto& [key, u] : out.udp)
        if (!reuse.udp.contains(key)) u->close();
      for (auto& [key, t] : out.tcp)
        if (!reuse.tcp.contains(key)) t->close();
      return unexpected(std::move(text));
    };
    for (const auto& ep : listen) {
      const auto key = ep.to_string();
      boost::system::error_code ec;
      const auto address = asio::ip::make_address(ep.host, ec);
      if (ec) return fail(fmt::format("sip.listen {}: bad address", key));
      if (ep.transport == "tcp") {
        if (auto it = reuse.tcp.find(key); it != reuse.tcp.end()) {
          out.tcp[key] = it->second;
          continue;
        }
        auto t = std::make_shared<TcpListener>(io, core);
        if (auto r = t->open(asio::ip::tcp::endpoint(address, ep.port)); !r) return fail(r.error());
        out.tcp[key] = t;
      } else {
        if (auto it = reuse.udp.find(key); it != reuse.udp.end()) {
          out.udp[key] = it->second;
          continue;
        }
        auto u = std::make_shared<UdpTransport>(io, core);
        if (auto r = u->open(asio::ip::udp::endpoint(address, ep.port)); !r) return fail(r.error());
        out.udp[key] = u;
      }
    }
    return out;
  }

  // Makes `next` the live set: starts its new sockets, closes the old ones it did not take over.
  void swap_listeners(Listeners next) {
    for (auto& [key, u] : current.udp)
      if (!next.udp.contains(key)) u->close();
    for (auto& [key, t] : current.tcp)
      if (!next.tcp.contains(key)) t->close();
    for (auto& [key, u] : next.udp)
      if (!current.udp.contains(key)) u->start();
    for (auto& [key, t] : next.tcp)
      if (!current.tcp.contains(key)) t->start();
    current = std::move(next);
    udp.clear();
    tcp.clear();
    for (const auto& ep : config->sip.listen) {
      const auto key = ep.to_string();
      if (auto it = current.udp.find(key); it != current.udp.end()) udp.push_back(it->second);
      if (auto it = current.tcp.find(key); it != current.tcp.end()) tcp.push_back(it->second);
    }
    // The proxy sends over the live sockets.
    core->udp.assign(udp.begin(), udp.end());
    core->tcp.assign(tcp.begin(), tcp.end());
  }

  Result<void, std::string> open_listeners() {
    auto bound = bind_listeners(config->sip.listen, Listeners{});
    if (!bound) return unexpected(bound.error());
    swap_listeners(std::move(*bound));
    return {};
  }

  void close_listeners() {
    for (auto& [key, u] : current.udp) u->close();
    for (auto& [key, t] : current.tcp) t->close();
    current = {};
    udp.clear();
    tcp.clear();
    core->udp.clear();
    core->tcp.clear();
  }

  void arm_sweep() {
    sweep_timer.expires_after(options.expiry_sweep);
    sweep_timer.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || !self->running) return;
      self->core->registrar.sweep();
      self->core->store.flush();
      self->core->records.flush();
      for (const auto& note : self->core->store.take_notes()) ve::logger("sip")->warn("{}", note);
      self->arm_sweep();
    });
  }

  asio::io_context& io;
  config::SiteConfigPtr config;
  ServerOptions options;
  std::shared_ptr<Core> core;
  asio::steady_timer sweep_timer;
  Listeners current;
  std::optional<Listeners> prepared;               // bound by prepare_reconfigure, taken by reconfigure
  bool prepared_released_old = false;              // prepare had to close the old sockets (same port)
  std::vector<std::shared_ptr<UdpTransport>> udp;  // in sip.listen order (udp_port(): first)
  std::vector<std::shared_ptr<TcpListener>> tcp;
  bool running = false;
  std::vector<ModeChange> changes;  // SRST mode changes, most recent last
};

Server::Server(asio::io_context& io, config::SiteConfigPtr config, EventSink& events, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(config), events, options)) {}

Server::~Server() { stop(); }

Result<void, std::string> Server::start() {
  auto& im = *impl_;
  if (im.options.persist) {
    std::error_code ec;
    const std::filesystem::path dir(im.config->state_dir);
    std::filesystem::create_directories(dir, ec);
    if (ec) return unexpected(fmt::format("state_dir {}: {}", dir.string(), ec.message()));
    if (auto key = flow_key(dir / "sip-flow-key"))
      im.core->flow_tokens = FlowTokens(std::move(*key));
    else
      ve::logger("sip")->warn(
          "SRST flow-token key not kept in {}: after a restart the cluster's Paths are "
          "refused until the phones re-register",
          dir.string());
    auto opened = im.core->store.open(dir / "sip-registrations.sqlite");
    for (const auto& note : im.core->store.take_notes()) ve::logger("sip")->warn("{}", note);
    if (!opened) return opened;
    // Bindings that expired while we were down go now, quietly reported like any expiry.
    im.core->registrar.sweep();
    ve::logger("sip")->info("{} registrations loaded from {}", im.core->store.size(), dir.string());
    // Call records are history: without them calls still connect.
    if (auto r = im.core->records.open(dir / "sip-calls.sqlite"); !r)
      ve::logger("sip")->error("call records not kept: {}", r.error());
    im.core->proxy.set_history(im.core->records.recent(im.options.call_history));
  }
  if (auto r = im.open_listeners(); !r) {
    im.close_listeners();
    return r;
  }
  im.running = true;
  im.arm_sweep();
  im.core->prober->start();
  return {};
}

void Server::stop() {
  if (!impl_) return;
  impl_->running = false;
  impl_->sweep_timer.cancel();
  impl_->core->prober->stop();
  impl_->close_listeners();
  impl_->core->uac.clear();
  impl_->core->store.close();
  impl_->core->records.close();
}

namespace {
// sip.upstream and sip.survivability as one comparable text.
std::string to_json_upstream(const config::SipConfig& sip) {
  std::string out = fmt::format("{}/{}/{}", sip.survivability.probe_interval_s, sip.survivability.probe_failures,
                                sip.survivability.rehome_after_s);
  for (const auto& u : sip.upstream) out += fmt::format(";{}={}:{}:{}", u.name, u.transport, u.host, u.port);
  return out;
}
bool same_listen(const std::vector<config::Endpoint>& a, const std::vector<config::Endpoint>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].to_string() != b[i].to_string()) return false;
  return true;
}
// Some endpoint of `b` is not in `a` but has the transport and port of one that is.
bool shares_a_port(const std::vector<config::Endpoint>& a, const std::vector<config::Endpoint>& b) {
  for (const auto& nb : b)
    for (const auto& na : a)
      if (na.transport == nb.transport && na.port == nb.port && na.port != 0 && na.to_string() != nb.to_string())
        return true;
  return false;
}
}  // namespace

Result<void, std::string> Server::prepare_reconfigure(const config::SiteConfigPtr& config) {
  auto& im = *impl_;
  im.prepared.reset();
  if (!im.running || same_listen(im.config->sip.listen, config->sip.listen)) return {};
  auto bound = im.bind_listeners(config->sip.listen, im.current);
  if (!bound && shares_a_port(im.config->sip.listen, config->sip.listen)) {
    // Moving a listener to another address on the same port collides with our own socket:
    // release ours first, and put it back if the new one cannot be had.
    im.close_listeners();
    bound = im.bind_listeners(config->sip.listen, im.current);
    if (!bound) {
      if (auto back = im.open_listeners(); !back)
        ve::logger("sip")->error("cannot re-bind the previous sip.listen either: {}", back.error());
      return unexpected(bound.error());
    }
    im.prepared_released_old = true;
  }
  if (!bound) return unexpected(bound.error());
  im.prepared = std::move(*bound);
  return {};
}

void Server::abandon_reconfigure() {
  auto& im = *impl_;
  if (!im.prepared) return;
  for (auto& [key, u] : im.prepared->udp)
    if (!im.current.udp.contains(key)) u->close();
  for (auto& [key, t] : im.prepared->tcp)
    if (!im.current.tcp.contains(key)) t->close();
  im.prepared.reset();
  if (im.prepared_released_old) {
    im.prepared_released_old = false;
    if (auto back = im.open_listeners(); !back)
      ve::logger("sip")->error("cannot re-bind the previous sip.listen: {}", back.error());
  }
}

void Server::reconfigure(const config::SiteConfigPtr& config) {
  auto& im = *impl_;
  const bool listen_changed = !same_listen(im.config->sip.listen, config->sip.listen);
  const bool upstream_changed = to_json_upstream(im.config->sip) != to_json_upstream(config->sip);
  im.config = config;
  im.core->registrar.set_config(config);
  im.core->proxy.set_config(config);
  if (upstream_changed) {
    im.core->upstream.set_config(config->sip, std::chrono::system_clock::now());
    if (im.running) im.core->prober->start();
  }
  if (!listen_changed || !im.running) return;
  if (!im.prepared) {
    // Called without prepare_reconfigure (tests, older callers): bind now, keep the old on error.
    auto bound = im.bind_listeners(config->sip.listen, im.current);
    if (!bound) {
      ve::logger("sip")->error("sip.listen changed but cannot bind: {}; the old listeners stay", bound.error());
      return;
    }
    im.prepared = std::move(*bound);
  }
  auto next = std::move(*im.prepared);
  im.prepared.reset();
  im.prepared_released_old = false;
  im.swap_listeners(std::move(next));
}

std::vector<BindingInfo> Server::registrations() const { return impl_->core->registrar.registrations(); }
ServerCounters Server::counters() const { return impl_->core->registrar.counters(); }
std::vector<CallInfo> Server::calls() const { return impl_->core->proxy.calls(); }
CallCounters Server::call_counters() const { return impl_->core->proxy.counters(); }
UpstreamOverview Server::upstream() const {
  const auto& m = impl_->core->upstream;
  UpstreamOverview o;
  o.mode = std::string(to_string(m.mode()));
  o.since = m.mode_since();
  if (const auto* a = m.active()) o.active = a->config.name;
  for (const auto& u : m.upstreams()) {
    UpstreamInfo i;
    i.name = u.config.name;
    i.address = u.address();
    i.state = std::string(to_string(u.state));
    i.since = u.since;
    i.last_probe = u.last_probe;
    i.last_answer = u.last_answer;
    i.rtt = u.rtt;
    i.last_status = u.last_status;
    i.misses = u.misses;
    i.usable = u.usable;
    i.answering_since = u.answering_since;
    o.upstreams.push_back(std::move(i));
  }
  o.changes = impl_->changes;
  o.probe_interval_s = m.survivability().probe_interval_s;
  o.probe_failures = m.survivability().probe_failures;
  o.rehome_after_s = m.survivability().rehome_after_s;
  return o;
}
std::uint16_t Server::udp_port() const { return impl_->udp.empty() ? 0 : impl_->udp.front()->port(); }
std::uint16_t Server::tcp_port() const { return impl_->tcp.empty() ? 0 : impl_->tcp.front()->port(); }
Result<ServiceControlSent, std::string> Server::service_control(const ServiceControlRequest& req,
                                                                std::function<void(const ServiceControlResult&)> done) {
  if (!impl_->running) return unexpected(std::string("the registrar is not running"));
  return impl_->core->service_control(req, std::move(done));
}

}  // namespace ve::sip
