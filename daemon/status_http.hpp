#pragma once
// The read-only status page (control.http): Device Status of every phone like the note's, one
// page per phone with its fourteen steps, /api/phones as JSON and /metrics for Prometheus.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"
#include "daemon/journey.hpp"

namespace ve::daemon {

class StatusHttpServer {
 public:
  StatusHttpServer(boost::asio::io_context& io, const JourneyTracker& journey, config::Endpoint listen);
  ~StatusHttpServer();
  Result<void, std::string> start();
  void stop();
  std::uint16_t port() const;
  // Appends a component's Prometheus text to /metrics (Services::metrics).
  void add_metrics(std::function<std::string()> writer) { metrics_.push_back(std::move(writer)); }

  // Builds the response body and content type for a path (exposed for tests).
  struct Page {
    int status = 200;
    std::string content_type;
    std::string body;
  };
  Page render(const std::string& target) const;

 private:
  class Session;
  void accept();
  boost::asio::io_context& io_;
  const JourneyTracker& journey_;
  config::Endpoint listen_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<std::function<std::string()>> metrics_;
};

}  // namespace ve::daemon
