#pragma once
// The read-only status page (control.http): a branch administrator's dashboard at / (every phone
// with its fourteen boot steps, counters, the ports with PoE and neighbours), one page per phone
// at /phone/<MAC> (Device Status as the note shows it, the boot as a time chart, every event),
// live updates over Server-Sent Events at /events, /api/phones and /api/dashboard as JSON and
// /metrics for Prometheus.
//
// Limits (the listener may face a hostile VLAN): a cap on connections in all and per source
// address, a cap on event streams, header size and time limits, accept paused briefly when the
// process runs out of descriptors (ve/accept_guard.hpp, shared with the other listeners). A slow event-stream reader
// never slows the daemon: each stream has a bounded queue; on overflow its queue is dropped and the page told to
// resync.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.hpp"
#include "daemon/journey.hpp"
#include "daemon/status_render.hpp"
#include "ve/accept_guard.hpp"

namespace ve::daemon {

class StatusHttpServer {
 public:
  struct Limits {
    std::size_t max_connections = 128;            // open connections, event streams included
    std::size_t max_per_address = 32;             // from one source address
    std::size_t max_streams = 32;                 // open /events streams
    std::size_t stream_queue_bytes = 256 * 1024;  // queued for one stream before it must resync
    std::chrono::milliseconds tick{250};          // how often changes are pushed (coalescing)
    std::chrono::milliseconds sweep{5000};        // full re-render (time-based states, ports)
    std::chrono::milliseconds heartbeat{15000};   // comment line on idle streams
    std::chrono::milliseconds write_timeout{20000};
    std::chrono::milliseconds read_timeout{10000};  // request headers, keep-alive idle
  };

  // Counters for tests and `show`: what the limits did.
  struct Stats {
    std::size_t connections = 0;
    std::size_t streams = 0;
    std::uint64_t refused = 0;          // connections closed at once because of a cap
    std::uint64_t accept_pauses = 0;    // times accept was paused for lack of descriptors
    std::uint64_t stream_resyncs = 0;   // stream queues dropped because the reader was slow
    std::uint64_t stream_messages = 0;  // messages queued to streams in all
    std::size_t stream_queue_peak = 0;  // the largest queue (bytes) any stream reached
  };

  struct Page {
    int status = 200;
    std::string content_type;
    std::string body;
    std::string content_disposition;  // "attachment; filename=..." for downloads
  };

  // A file another part of the daemon serves for one phone under /phone/<MAC>/<file>; the phone
  // page links it only when one is registered and `available` (if set) says so for that phone.
  struct Download {
    std::string file;   // "report.tar.gz"
    std::string label;  // "download report"
    std::function<bool(const MacAddress&)> available;
    std::function<Page(const MacAddress&)> serve;
  };

  StatusHttpServer(boost::asio::io_context& io, JourneyTracker& journey, config::Endpoint listen);
  StatusHttpServer(boost::asio::io_context& io, JourneyTracker& journey, config::Endpoint listen, Limits limits);
  ~StatusHttpServer();
  StatusHttpServer(const StatusHttpServer&) = delete;
  StatusHttpServer& operator=(const StatusHttpServer&) = delete;

  // The running site file (descriptions, lines, ports); unset: pages show what the journey knows.
  void set_config_source(std::function<config::SiteConfigPtr()> source) { config_source_ = std::move(source); }
  // Runs a control request line ({"cmd":"show.power.inline"}) and returns the response line; the
  // ports view reads PoE, neighbours and links through it. Unset: the ports view shows the site file.
  void set_control(std::function<std::string(const std::string&)> control) { control_ = std::move(control); }
  void add_download(Download download);
  // More /metrics text from a component (calls by outcome, refused config requests, ...).
  void add_metrics(std::function<std::string()> writer) { metrics_.push_back(std::move(writer)); }

  Result<void, std::string> start();
  void stop();
  std::uint16_t port() const;
  Stats stats() const;

  // Builds the response for a GET of `target` (exposed for tests; /events is not a page).
  Page render(const std::string& target) const;

 private:
  class Session;
  class Stream;
  struct Shared;
  void accept();
  void on_accepted(boost::asio::ip::tcp::socket socket);
  void journey_changed(const MacAddress& mac);
  using Slot = ConnectionLimiter<boost::asio::ip::address>::Slot;
  void open_stream(boost::asio::ip::tcp::socket socket, Slot slot, std::string phone);
  // "phone" events go to the page of that phone only, the others to dashboards; "ping" to all.
  void broadcast(const std::string& event, const nlohmann::json& data, const std::string& phone = "");
  void arm_tick();
  void tick();
  nlohmann::json query(const std::string& cmd) const;
  nlohmann::json ports_now() const;
  config::SiteConfigPtr site() const;
  std::vector<status::DownloadLink> downloads_for(const MacAddress& mac) const;

  boost::asio::io_context& io_;
  JourneyTracker& journey_;
  config::Endpoint listen_;
  Limits limits_;
  boost::asio::ip::tcp::acceptor acceptor_;
  ConnectionLimiter<boost::asio::ip::address> limiter_;
  AcceptGuard accept_guard_;
  RateLimitedLog refuse_log_;
  boost::asio::steady_timer tick_timer_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<const std::string> resync_message_;
  std::function<config::SiteConfigPtr()> config_source_;
  std::function<std::string(const std::string&)> control_;
  std::vector<std::function<std::string()>> metrics_;
  std::vector<Download> downloads_;
  // What the streams were last sent, to push only what changed.
  std::set<MacAddress> dirty_;
  std::map<std::string, std::string> sent_rows_;  // by MAC text
  std::string sent_counters_;
  std::string sent_ports_;
  bool tick_armed_ = false;
  std::chrono::steady_clock::time_point last_sweep_{};
  std::chrono::steady_clock::time_point last_heartbeat_{};
};

}  // namespace ve::daemon
