// Server: opens the store, binds sip.listen, sweeps expired bindings on a timer.
#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <filesystem>

#include "sip/transport.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io_, config::SiteConfigPtr config_, EventSink& events, ServerOptions options_)
      : io(io_),
        config(config_),
        options(options_),
        core(std::make_shared<Core>(io_, config_, events, options_)),
        sweep_timer(io_) {
    core->proxy.on_call_ended([records = &core->records](const CallInfo& c) { records->add(c); });
  }

  Result<void, std::string> open_listeners() {
    for (const auto& ep : config->sip.listen) {
      boost::system::error_code ec;
      const auto address = asio::ip::make_address(ep.host, ec);
      if (ec) return unexpected(fmt::format("sip.listen {}: bad address", ep.to_string()));
      if (ep.transport == "tcp") {
        auto t = std::make_shared<TcpListener>(io, core);
        if (auto r = t->open(asio::ip::tcp::endpoint(address, ep.port)); !r) return r;
        tcp.push_back(t);
      } else {
        auto u = std::make_shared<UdpTransport>(io, core);
        if (auto r = u->open(asio::ip::udp::endpoint(address, ep.port)); !r) return r;
        udp.push_back(u);
      }
    }
    core->udp.assign(udp.begin(), udp.end());
    core->tcp.assign(tcp.begin(), tcp.end());
    for (auto& u : udp) u->start();
    for (auto& t : tcp) t->start();
    return {};
  }

  void close_listeners() {
    for (auto& u : udp) u->close();
    for (auto& t : tcp) t->close();
    udp.clear();
    tcp.clear();
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
  std::vector<std::shared_ptr<UdpTransport>> udp;
  std::vector<std::shared_ptr<TcpListener>> tcp;
  bool running = false;
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
  return {};
}

void Server::stop() {
  if (!impl_) return;
  impl_->running = false;
  impl_->sweep_timer.cancel();
  impl_->close_listeners();
  impl_->core->store.close();
  impl_->core->records.close();
}

void Server::reconfigure(const config::SiteConfigPtr& config) {
  auto& im = *impl_;
  const bool listen_changed = [&] {
    const auto& a = im.config->sip.listen;
    const auto& b = config->sip.listen;
    if (a.size() != b.size()) return true;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].to_string() != b[i].to_string()) return true;
    }
    return false;
  }();
  im.config = config;
  im.core->registrar.set_config(config);
  im.core->proxy.set_config(config);
  if (listen_changed && im.running) {
    im.close_listeners();
    if (auto r = im.open_listeners(); !r) ve::logger("sip")->error("sip.listen changed but cannot bind: {}", r.error());
  }
}

std::vector<BindingInfo> Server::registrations() const { return impl_->core->registrar.registrations(); }
ServerCounters Server::counters() const { return impl_->core->registrar.counters(); }
std::vector<CallInfo> Server::calls() const { return impl_->core->proxy.calls(); }
CallCounters Server::call_counters() const { return impl_->core->proxy.counters(); }
std::uint16_t Server::udp_port() const { return impl_->udp.empty() ? 0 : impl_->udp.front()->port(); }
std::uint16_t Server::tcp_port() const { return impl_->tcp.empty() ? 0 : impl_->tcp.front()->port(); }

}  // namespace ve::sip
