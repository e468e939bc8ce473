// ve_provision_serve: runs only the provisioning servers over a directory, for benchmarks and
// manual tests (the daemon does the same with the full site file).
//   ve_provision_serve --root DIR [--tftp 127.0.0.1:6969] [--http 127.0.0.1:6970] [--site FILE]
#include <csignal>
#include <iostream>

#include <boost/asio/signal_set.hpp>
#include <CLI/CLI.hpp>

#include "provision/provision.hpp"

namespace {

std::optional<ve::config::Endpoint> parse_endpoint(const std::string& text, const std::string& transport) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  ve::config::Endpoint e;
  e.transport = transport;
  e.host = text.substr(0, colon);
  e.port = static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1)));
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"voiceedge provisioning servers only"};
  std::string root;
  std::string tftp = "127.0.0.1:6969";
  std::string http = "127.0.0.1:6970";
  std::string site_file;
  int max_transfers = 10000;
  int max_per_client = 10000;
  int tftp_workers = 0;
  app.add_option("--root", root, "directory served")->required();
  app.add_option("--tftp", tftp, "TFTP listen address:port");
  app.add_option("--http", http, "HTTP listen address:port");
  app.add_option("--site", site_file, "site file for phones and call managers (optional)");
  app.add_option("--max-transfers", max_transfers);
  app.add_option("--max-per-client", max_per_client);
  app.add_option("--tftp-workers", tftp_workers, "threads running TFTP transfers (0: four per CPU, at most 8)");
  CLI11_PARSE(app, argc, argv);

  std::shared_ptr<const ve::config::SiteConfig> site;
  if (!site_file.empty()) {
    auto loaded = ve::config::load_file(site_file);
    if (!loaded) {
      for (const auto& e : loaded.error()) std::cerr << e.to_string() << "\n";
      return 1;
    }
    auto copy = std::make_shared<ve::config::SiteConfig>(**loaded);
    copy->provisioning.root = root;
    site = copy;
  } else {
    auto s = std::make_shared<ve::config::SiteConfig>();
    s->provisioning.root = root;
    site = s;
  }
  auto options = ve::provision::options_from(*site);
  auto tftp_ep = parse_endpoint(tftp, "udp");
  auto http_ep = parse_endpoint(http, "tcp");
  if (!tftp_ep || !http_ep) {
    std::cerr << "bad listen address\n";
    return 1;
  }
  options.tftp.listen = *tftp_ep;
  options.http.listen = *http_ep;
  options.tftp.max_transfers = max_transfers;
  options.tftp.max_per_client = max_per_client;
  options.tftp.workers = tftp_workers;

  boost::asio::io_context io;
  ve::NullEventSink sink;
  ve::provision::Provisioner provisioner(io, site, options, sink);
  if (auto r = provisioner.start(); !r) {
    std::cerr << r.error() << "\n";
    return 1;
  }
  std::cout << "tftp " << provisioner.tftp_port() << " http " << provisioner.http_port() << std::endl;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    provisioner.stop();
    const auto c = provisioner.counters();
    std::cerr << "tftp ok " << c.tftp_ok << " failed " << c.tftp_failed << " retransmits " << c.tftp_retransmits
              << " busy " << c.tftp_busy << "\n";
    io.stop();
  });
  io.run();
  return 0;
}
