#pragma once
#include <functional>
// The read-only status page (control.http): Device Status of every phone like the note's, one
// page per phone with its fourteen steps, /api/phones as JSON and /metrics for Prometheus.
#include <memory>
#include <string>

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

  // Builds the response body and content type for a path (exposed for tests).
  struct Page {
    int status = 200;
    std::string content_type;
    std::string body;
  };
  Page render(const std::string& target) const;
  // More /metrics text from the components (calls by outcome, ...).
  void set_metrics(std::function<std::string()> more) { more_metrics_ = std::move(more); }

 private:
  class Session;
  void accept();
  boost::asio::io_context& io_;
  const JourneyTracker& journey_;
  std::function<std::string()> more_metrics_;
  config::Endpoint listen_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace ve::daemon
