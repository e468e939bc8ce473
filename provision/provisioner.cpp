#include <fmt/format.h>

#include "provision/internal.hpp"
#include "ve/log.hpp"

namespace ve::provision {

ProvisionerOptions options_from(const config::SiteConfig& site) {
  ProvisionerOptions o;
  o.tftp.listen = site.provisioning.tftp.listen;
  o.tftp.max_transfers = site.provisioning.tftp.max_transfers;
  o.tftp.max_per_client = site.provisioning.tftp.max_per_client;
  o.http.listen = site.provisioning.http.listen;
  o.http.max_connections = site.provisioning.http.max_connections;
  return o;
}

struct Provisioner::Impl {
  Impl(boost::asio::io_context& io_context, ProvisionerOptions opts, EventSink& events, MacLookup mac_for_ip)
      : io(io_context),
        options(std::move(opts)),
        shared(std::make_shared<Shared>(events, std::move(mac_for_ip), options.recent_records,
                                        options.tftp.netascii_budget, options.lease_wait)),
        cache(std::make_shared<StaticFileCache>(options.cache_bytes)) {}
  boost::asio::io_context& io;
  ProvisionerOptions options;
  std::shared_ptr<Shared> shared;
  std::shared_ptr<StaticFileCache> cache;
  std::shared_ptr<TftpServer> tftp;
  std::shared_ptr<HttpServer> http;
  // Between prepare_options() and commit_options()/abandon_options().
  struct Pending {
    ProvisionerOptions options;
    std::shared_ptr<TftpServer> tftp;  // bound beside the live one (its endpoint changed)
    std::shared_ptr<HttpServer> http;
    bool restart_tftp = false;  // same endpoint, other limits: restarted in place at commit
    bool restart_http = false;
  };
  std::optional<Pending> pending;
};

Provisioner::Provisioner(boost::asio::io_context& io, config::SiteConfigPtr site, ProvisionerOptions options,
                         EventSink& events, MacLookup mac_for_ip)
    : impl_(std::make_unique<Impl>(io, std::move(options), events, std::move(mac_for_ip))) {
  impl_->shared->set_tree(std::make_shared<const FileTree>(std::move(site), impl_->cache));
}

Provisioner::~Provisioner() { stop(); }

Result<void, std::string> Provisioner::start() {
  stop();
  auto tftp = std::make_shared<TftpServer>(impl_->io, impl_->options.tftp, impl_->shared);
  if (auto r = tftp->start(); !r) return r;
  auto http = std::make_shared<HttpServer>(impl_->io, impl_->options.http, impl_->shared);
  if (auto r = http->start(); !r) {
    tftp->stop();
    return r;
  }
  impl_->tftp = std::move(tftp);
  impl_->http = std::move(http);
  return {};
}

void Provisioner::stop() {
  abandon_options();
  if (impl_->tftp) impl_->tftp->stop();
  if (impl_->http) impl_->http->stop();
  impl_->tftp.reset();
  impl_->http.reset();
}

void Provisioner::reconfigure(config::SiteConfigPtr site) {
  impl_->shared->set_tree(std::make_shared<const FileTree>(std::move(site), impl_->cache));
  ve::logger("provision")->info("provisioning tree rebuilt ({} phone configs)", impl_->shared->tree()->phone_configs());
}

void Provisioner::set_options(ProvisionerOptions options) { impl_->options = std::move(options); }

Result<void, std::string> Provisioner::prepare_options(ProvisionerOptions options) {
  abandon_options();
  Impl::Pending p;
  const auto& now = impl_->options;
  const bool tftp_moves = options.tftp.listen.to_string() != now.tftp.listen.to_string();
  const bool http_moves = options.http.listen.to_string() != now.http.listen.to_string();
  if (tftp_moves) {
    p.tftp = std::make_shared<TftpServer>(impl_->io, options.tftp, impl_->shared);
    if (auto r = p.tftp->start(); !r) return r;
  } else {
    p.restart_tftp =
        options.tftp.max_transfers != now.tftp.max_transfers || options.tftp.max_per_client != now.tftp.max_per_client;
  }
  if (http_moves) {
    p.http = std::make_shared<HttpServer>(impl_->io, options.http, impl_->shared);
    if (auto r = p.http->start(); !r) {
      if (p.tftp) p.tftp->stop();
      return r;
    }
  } else {
    p.restart_http = options.http.max_connections != now.http.max_connections ||
                     options.http.max_per_client != now.http.max_per_client;
  }
  p.options = std::move(options);
  impl_->pending = std::move(p);
  return {};
}

void Provisioner::commit_options() {
  if (!impl_->pending) return;
  auto p = std::move(*impl_->pending);
  impl_->pending.reset();
  impl_->options = p.options;
  auto log = ve::logger("provision");
  // A listener that only changes limits keeps its port: released and bound again at once.
  const auto restart = [&](auto& live, auto make) {
    if (live) live->stop();
    live = make();
    if (auto r = live->start(); !r) {
      log->error("cannot restart a provisioning listener: {}", r.error());
      live.reset();
    }
  };
  if (p.tftp) {
    if (impl_->tftp) impl_->tftp->stop();
    impl_->tftp = std::move(p.tftp);
  } else if (p.restart_tftp) {
    restart(impl_->tftp, [&] { return std::make_shared<TftpServer>(impl_->io, impl_->options.tftp, impl_->shared); });
  }
  if (p.http) {
    if (impl_->http) impl_->http->stop();
    impl_->http = std::move(p.http);
  } else if (p.restart_http) {
    restart(impl_->http, [&] { return std::make_shared<HttpServer>(impl_->io, impl_->options.http, impl_->shared); });
  }
}

void Provisioner::abandon_options() {
  if (!impl_->pending) return;
  if (impl_->pending->tftp) impl_->pending->tftp->stop();
  if (impl_->pending->http) impl_->pending->http->stop();
  impl_->pending.reset();
}
const ProvisionerOptions& Provisioner::options() const { return impl_->options; }

std::uint16_t Provisioner::tftp_port() const { return impl_->tftp ? impl_->tftp->port() : 0; }
std::uint16_t Provisioner::http_port() const { return impl_->http ? impl_->http->port() : 0; }
Counters Provisioner::counters() const { return impl_->shared->activity.counters(); }
std::vector<TransferRecord> Provisioner::recent() const { return impl_->shared->activity.recent(); }
std::size_t Provisioner::active_tftp_transfers() const { return impl_->tftp ? impl_->tftp->active() : 0; }
std::size_t Provisioner::open_http_connections() const { return impl_->http ? impl_->http->connections() : 0; }
std::shared_ptr<const FileTree> Provisioner::tree() const { return impl_->shared->tree(); }
std::size_t Provisioner::netascii_bytes() const { return impl_->shared->netascii.live_bytes(); }

std::string Provisioner::metrics() const {
  const auto c = counters();
  std::string out;
  auto counter = [&](std::string_view name, std::string_view help,
                     std::initializer_list<std::pair<std::string_view, std::uint64_t>> samples) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    for (const auto& [labels, value] : samples) out += fmt::format("{}{} {}\n", name, labels, value);
  };
  counter("voiceedge_provision_requests_total", "Provisioning requests by transport.",
          {{"{transport=\"tftp\"}", c.tftp_requests}, {"{transport=\"http\"}", c.http_requests}});
  counter("voiceedge_provision_config_refused_total",
          "Phone configs (SEP<MAC>.cnf.xml) refused to an address that is not that phone's.",
          {{"{transport=\"tftp\"}", c.tftp_config_refused}, {"{transport=\"http\"}", c.http_config_refused}});
  counter("voiceedge_provision_busy_total", "Requests refused because a limit was reached.",
          {{"{transport=\"tftp\"}", c.tftp_busy}, {"{transport=\"http\"}", c.http_busy}});
  counter("voiceedge_provision_not_found_total", "Requests for files that do not exist.",
          {{"{transport=\"tftp\"}", c.tftp_not_found}, {"{transport=\"http\"}", c.http_not_found}});
  counter("voiceedge_provision_malformed_total", "Malformed packets or requests.",
          {{"{transport=\"tftp\"}", c.tftp_malformed}, {"{transport=\"http\"}", c.http_malformed}});
  counter("voiceedge_tftp_options_ignored_total", "TFTP options left out of the OACK (RFC 2347).",
          {{"", c.tftp_options_ignored}});
  counter("voiceedge_tftp_lifetime_exceeded_total", "TFTP transfers ended at their maximum lifetime.",
          {{"", c.tftp_lifetime_exceeded}});
  counter("voiceedge_tftp_busy_memory_total", "TFTP netascii requests refused at the memory budget.",
          {{"", c.tftp_busy_memory}});
  out += fmt::format(
      "# HELP voiceedge_tftp_active_transfers TFTP transfers in progress.\n# TYPE voiceedge_tftp_active_transfers "
      "gauge\nvoiceedge_tftp_active_transfers {}\n",
      active_tftp_transfers());
  out += fmt::format(
      "# HELP voiceedge_tftp_netascii_bytes Netascii copies held by transfers.\n# TYPE voiceedge_tftp_netascii_bytes "
      "gauge\nvoiceedge_tftp_netascii_bytes {}\n",
      netascii_bytes());
  return out;
}

}  // namespace ve::provision
