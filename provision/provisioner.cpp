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
        shared(std::make_shared<Shared>(events, std::move(mac_for_ip), options.recent_records)),
        cache(std::make_shared<StaticFileCache>(options.cache_bytes)) {}
  boost::asio::io_context& io;
  ProvisionerOptions options;
  std::shared_ptr<Shared> shared;
  std::shared_ptr<StaticFileCache> cache;
  std::shared_ptr<TftpServer> tftp;
  std::shared_ptr<HttpServer> http;
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
  if (impl_->tftp) impl_->tftp->stop();
  if (impl_->http) impl_->http->stop();
  impl_->tftp.reset();
  impl_->http.reset();
}

void Provisioner::reconfigure(config::SiteConfigPtr site) {
  impl_->shared->set_tree(std::make_shared<const FileTree>(std::move(site), impl_->cache));
  ve::logger("provision")
      ->info("provisioning tree rebuilt ({} phone configs)", impl_->shared->tree()->generated().size() - 1);
}

void Provisioner::set_options(ProvisionerOptions options) { impl_->options = std::move(options); }
const ProvisionerOptions& Provisioner::options() const { return impl_->options; }

std::uint16_t Provisioner::tftp_port() const { return impl_->tftp ? impl_->tftp->port() : 0; }
std::uint16_t Provisioner::http_port() const { return impl_->http ? impl_->http->port() : 0; }
Counters Provisioner::counters() const { return impl_->shared->activity.counters(); }
std::vector<TransferRecord> Provisioner::recent() const { return impl_->shared->activity.recent(); }
std::size_t Provisioner::active_tftp_transfers() const { return impl_->tftp ? impl_->tftp->active() : 0; }
std::size_t Provisioner::open_http_connections() const { return impl_->http ? impl_->http->connections() : 0; }
std::shared_ptr<const FileTree> Provisioner::tree() const { return impl_->shared->tree(); }

}  // namespace ve::provision
