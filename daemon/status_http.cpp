#include "daemon/status_http.hpp"

#include <deque>

#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include "daemon/web/assets.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr const char* kHtml = "text/html; charset=utf-8";

std::string str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump(-1, ' ', false, json::error_handler_t::replace);
}

// Percent-decoding of a path; anything malformed is kept as it is (it then matches no route).
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string not_found_page(std::string_view what) {
  return "<!doctype html><html lang=en><head><meta charset=utf-8><link rel=stylesheet href=\"/static/app.css\">"
         "<title>not found</title></head><body><main><p class=back><a href=\"/\">← all phones</a></p><h1>Not "
         "found</h1><p>" +
         status::html_escape(what) + "</p></main></body></html>";
}

// Text from the wire need not be UTF-8: a plain dump() would throw on it (and drop the request);
// invalid bytes become U+FFFD instead, as html_escape leaves them for the browser to replace.
std::string json_text(const json& data, int indent = -1) {
  return data.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string sse_message(std::string_view event, const json& data) {
  // dump() escapes newlines, so the data is one line as SSE needs.
  return fmt::format("event: {}\ndata: {}\n\n", event, json_text(data));
}

}  // namespace

struct StatusHttpServer::Shared {
  bool alive = true;
  Stats stats;
  std::vector<std::weak_ptr<Stream>> streams;
};

// An open /events stream. The daemon only ever queues to it; writes happen one at a time as the
// reader takes them. A queue over its byte limit is dropped and replaced by one "resync" (the
// page then fetches the whole state once), so a slow or stalled reader costs bounded memory and
// no time; one that takes no bytes for write_timeout is closed.
class StatusHttpServer::Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(tcp::socket socket, Slot slot, std::shared_ptr<Shared> shared, const Limits& limits)
      : socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        slot_(std::move(slot)),
        shared_(std::move(shared)),
        queue_limit_(limits.stream_queue_bytes),
        write_timeout_(limits.write_timeout) {
    ++shared_->stats.streams;
  }
  ~Stream() { --shared_->stats.streams; }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void start(std::shared_ptr<const std::string> first) {
    queue_.push_back(std::move(first));
    queued_ += queue_.back()->size();
    write_next();
    watch_close();
  }

  void send(const std::shared_ptr<const std::string>& message, const std::shared_ptr<const std::string>& resync) {
    if (closed_) return;
    ++shared_->stats.stream_messages;
    if (resync_pending_) return;  // the resync the page will do covers this message too
    if (queued_ + message->size() > queue_limit_) {
      // Keep only the message being written (its buffer is in use), then one resync.
      const bool keep_front = writing_ && !queue_.empty();
      std::shared_ptr<const std::string> front = keep_front ? queue_.front() : nullptr;
      queue_.clear();
      queued_ = 0;
      if (front) {
        queue_.push_back(front);
        queued_ = front->size();
      }
      queue_.push_back(resync);
      queued_ += resync->size();
      resync_pending_ = true;
      ++shared_->stats.stream_resyncs;
    } else {
      queue_.push_back(message);
      queued_ += message->size();
    }
    shared_->stats.stream_queue_peak = std::max(shared_->stats.stream_queue_peak, queued_);
    write_next();
  }

  bool closed() const { return closed_; }
  // Empty: a dashboard (rows, counters, ports); else the MAC of the phone page it serves.
  const std::string& phone() const { return phone_; }
  void set_phone(std::string mac) { phone_ = std::move(mac); }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    deadline_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    queue_.clear();
    queued_ = 0;
  }

 private:
  void write_next() {
    if (writing_ || closed_ || queue_.empty()) return;
    writing_ = true;
    deadline_.expires_after(write_timeout_);
    deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();  // the reader took nothing for too long
    });
    asio::async_write(socket_, asio::buffer(*queue_.front()),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        self->deadline_.cancel();
                        if (ec || self->closed_) {
                          self->close();
                          return;
                        }
                        self->queued_ -= self->queue_.front()->size();
                        if (self->queue_.front()->rfind("event: resync", 0) == 0) self->resync_pending_ = false;
                        self->queue_.pop_front();
                        self->write_next();
                      });
  }

  // A browser sends nothing on an event stream: any read completing means it went away (or it
  // is not a browser).
  void watch_close() {
    socket_.async_read_some(asio::buffer(read_buf_),
                            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                              if (ec != asio::error::operation_aborted) self->close();
                            });
  }

  tcp::socket socket_;
  asio::steady_timer deadline_;
  Slot slot_;  // the connection's place under the caps, released with the stream
  std::shared_ptr<Shared> shared_;
  std::size_t queue_limit_;
  std::chrono::milliseconds write_timeout_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  bool resync_pending_ = false;
  std::string phone_;
  std::array<char, 256> read_buf_{};
};

class StatusHttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(StatusHttpServer& server, tcp::socket socket, Slot slot, std::shared_ptr<Shared> shared)
      : server_(server), stream_(std::move(socket)), slot_(std::move(slot)), shared_(std::move(shared)) {}
  void start() { do_read(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    stream_.expires_after(server_.limits_.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec || !shared_->alive) return;  // closed, timed out or malformed: drop the connection
    auto request = parser_->release();
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(request.version());
    res->set(http::field::server, "voiceedged");
    // Read-only, self-contained pages: nothing from elsewhere, no framing, no referrers.
    res->set("Content-Security-Policy",
             "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res->set("X-Content-Type-Options", "nosniff");
    res->set("Referrer-Policy", "no-referrer");
    res->set(http::field::cache_control, "no-store");
    const std::string target(request.target());
    const auto path = target.substr(0, target.find('?'));
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain");
      res->body() = "method not allowed: this page is read-only\n";
    } else if (path == "/events" && request.method() == http::verb::get) {
      if (shared_->stats.streams >= server_.limits_.max_streams) {
        res->result(http::status::service_unavailable);
        res->set(http::field::retry_after, "10");
        res->set(http::field::content_type, "text/plain");
        res->body() = "too many live pages open; this one refreshes periodically instead\n";
      } else {
        // /events?phone=<MAC>: a phone page, told only about its phone.
        std::string phone;
        if (const auto q = target.find("?phone="); q != std::string::npos)
          if (auto mac = MacAddress::parse(url_decode(target.substr(q + 7)))) phone = mac->to_string();
        stream_.expires_never();
        server_.open_stream(stream_.release_socket(), std::move(slot_), std::move(phone));
        return;
      }
    } else {
      auto page = server_.render(target);
      res->result(static_cast<http::status>(page.status));
      res->set(http::field::content_type, page.content_type);
      if (!page.content_disposition.empty()) res->set(http::field::content_disposition, page.content_disposition);
      res->body() = std::move(page.body);
    }
    res->keep_alive(request.keep_alive());
    res->prepare_payload();
    if (request.method() == http::verb::head) res->body().clear();
    stream_.expires_after(server_.limits_.write_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code wec, std::size_t) {
      if (wec || !res->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->do_read();
    });
  }

  StatusHttpServer& server_;
  beast::tcp_stream stream_;
  Slot slot_;
  std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_{16 * 1024};
  std::optional<http::request_parser<http::empty_body>> parser_;
};

StatusHttpServer::StatusHttpServer(asio::io_context& io, JourneyTracker& journey, config::Endpoint listen)
    : StatusHttpServer(io, journey, std::move(listen), Limits{}) {}

StatusHttpServer::StatusHttpServer(asio::io_context& io, JourneyTracker& journey, config::Endpoint listen,
                                   Limits limits)
    : io_(io),
      journey_(journey),
      listen_(std::move(listen)),
      limits_(limits),
      acceptor_(io),
      limiter_(limits_.max_connections, limits_.max_per_address),
      accept_guard_(io.get_executor(), "control", "status page"),
      tick_timer_(io),
      shared_(std::make_shared<Shared>()),
      resync_message_(std::make_shared<const std::string>(sse_message("resync", json::object()))) {
  // The tracker outlives or equals us in the daemon; the flag makes a late call harmless.
  journey_.add_listener([this, shared = std::weak_ptr<Shared>(shared_)](const MacAddress& mac) {
    if (auto s = shared.lock(); s && s->alive) journey_changed(mac);
  });
}

StatusHttpServer::~StatusHttpServer() {
  stop();
  shared_->alive = false;
}

void StatusHttpServer::add_download(Download download) { downloads_.push_back(std::move(download)); }

Result<void, std::string> StatusHttpServer::start() {
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(listen_.host, ec), listen_.port);
  if (!ec) acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.close();
    return unexpected(fmt::format("cannot listen on {}:{}: {}", listen_.host, listen_.port, ec.message()));
  }
  ve::logger("control")->info("status page on http://{}:{}/ (at most {} connections, {} live pages)", listen_.host,
                              port(), limits_.max_connections, limits_.max_streams);
  accept();
  return {};
}

void StatusHttpServer::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  accept_guard_.cancel();
  tick_timer_.cancel();
  for (auto& w : shared_->streams)
    if (auto s = w.lock()) s->close();
  shared_->streams.clear();
}

std::uint16_t StatusHttpServer::port() const {
  boost::system::error_code ec;
  return acceptor_.is_open() ? acceptor_.local_endpoint(ec).port() : 0;
}

StatusHttpServer::Stats StatusHttpServer::stats() const {
  // Connections and pauses are counted where they are enforced (the slots held, the guard's
  // pauses), not kept twice.
  Stats out = shared_->stats;
  out.connections = limiter_.total();
  out.accept_pauses = accept_guard_.exhaustions();
  return out;
}

void StatusHttpServer::accept() {
  acceptor_.async_accept([this, shared = shared_](const boost::system::error_code& ec, tcp::socket socket) {
    if (!shared->alive || ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors (or memory): accepting again at once would spin. The guard pauses,
      // backing off, and says so at most every 10 s.
      accept_guard_.failed(ec, [this, shared] {
        if (shared->alive && acceptor_.is_open()) accept();
      });
      return;
    }
    accept_guard_.succeeded();
    on_accepted(std::move(socket));
    accept();
  });
}

void StatusHttpServer::on_accepted(tcp::socket socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // gone already
  auto [slot, refusal] = limiter_.acquire(remote.address());
  if (!slot) {
    // Refused at once, with a line saying why where the socket takes it without waiting.
    ++shared_->stats.refused;
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\nConnection: "
        "close\r\nContent-Length: 33\r\n\r\ntoo many connections, try again\r\n";
    socket.non_blocking(true, ec);
    (void)socket.send(asio::buffer(kBusy.data(), kBusy.size()), 0, ec);
    socket.close(ec);
    refuse_log_.warn("control", "status page: refusing a connection from {}: {} ({} open, {} from there)",
                     remote.address().to_string(),
                     refusal == ConnectionLimiter<asio::ip::address>::Refusal::Total ? "too many connections"
                                                                                     : "too many from one address",
                     limiter_.total(), limiter_.from(remote.address()));
    return;
  }
  std::make_shared<Session>(*this, std::move(socket), std::move(slot), shared_)->start();
}

void StatusHttpServer::open_stream(tcp::socket socket, Slot slot, std::string phone) {
  auto stream = std::make_shared<Stream>(std::move(socket), std::move(slot), shared_, limits_);
  stream->set_phone(std::move(phone));
  shared_->streams.push_back(stream);
  const std::string head =
      "HTTP/1.1 200 OK\r\nServer: voiceedged\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
      "X-Content-Type-Options: nosniff\r\nConnection: keep-alive\r\n\r\n";
  stream->start(std::make_shared<const std::string>(head + "retry: 3000\n" +
                                                    sse_message("hello", {{"streams", shared_->stats.streams}})));
  arm_tick();
}

void StatusHttpServer::journey_changed(const MacAddress& mac) {
  if (shared_->streams.empty()) return;
  dirty_.insert(mac);
  arm_tick();
}

void StatusHttpServer::broadcast(const std::string& event, const json& data, const std::string& phone) {
  // Serialised once for every stream; a ping is a comment line.
  const auto message =
      std::make_shared<const std::string>(event == "ping" ? std::string(": ping\n\n") : sse_message(event, data));
  for (auto& w : shared_->streams) {
    auto s = w.lock();
    if (!s) continue;
    const bool for_phone_pages = event == "phone";
    if (event != "ping" && (for_phone_pages ? s->phone() != phone : !s->phone().empty())) continue;
    s->send(message, resync_message_);
  }
}

void StatusHttpServer::arm_tick() {
  if (tick_armed_ || !shared_->alive) return;
  tick_armed_ = true;
  tick_timer_.expires_after(limits_.tick);
  tick_timer_.async_wait([this, shared = shared_](const boost::system::error_code& ec) {
    if (ec || !shared->alive) return;
    tick_armed_ = false;
    tick();
  });
}

void StatusHttpServer::tick() {
  auto& streams = shared_->streams;
  std::erase_if(streams, [](const std::weak_ptr<Stream>& w) {
    auto s = w.lock();
    return !s || s->closed();
  });
  const bool dashboards =
      std::any_of(streams.begin(), streams.end(), [](const auto& w) { return w.lock()->phone().empty(); });
  if (streams.empty()) {
    // Nobody watches: forget what was sent; the next page starts from a full render anyway.
    dirty_.clear();
    sent_rows_.clear();
    sent_counters_.clear();
    sent_ports_.clear();
    last_sweep_ = {};
    return;
  }
  const auto steady_now = std::chrono::steady_clock::now();
  const auto now = std::chrono::system_clock::now();
  const auto cfg = site();
  const bool sweep = steady_now - last_sweep_ >= limits_.sweep;
  if (!dashboards) {
    for (const auto& mac : dirty_) broadcast("phone", {{"mac", mac.to_string()}}, mac.to_string());
    dirty_.clear();
  } else if (sweep || !dirty_.empty()) {
    // Rows: on a sweep all of them (time turns "booting" into "stuck"), else the changed ones.
    const auto phones = status::phones_model(journey_, cfg.get(), now);
    std::set<std::string> present;
    for (const auto& p : phones) {
      const auto mac_text = str(p, "mac");
      present.insert(mac_text);
      const auto mac = MacAddress::parse(mac_text);
      if (!sweep && mac && !dirty_.contains(*mac)) continue;
      auto html = status::render_row(p);
      auto& sent = sent_rows_[mac_text];
      if (sent != html) {
        broadcast("row", {{"mac", mac_text}, {"id", "row-" + str(p, "name")}, {"html", html}});
        sent = std::move(html);
      }
    }
    if (sweep) {
      for (auto it = sent_rows_.begin(); it != sent_rows_.end();) {
        if (!present.contains(it->first)) {
          broadcast("remove", {{"mac", it->first}});
          it = sent_rows_.erase(it);
        } else {
          ++it;
        }
      }
    }
    auto counters = status::render_counters(status::counters_model(phones));
    if (counters != sent_counters_) {
      broadcast("counters", {{"html", counters}});
      sent_counters_ = std::move(counters);
    }
    auto ports = status::render_ports(ports_now());
    if (ports != sent_ports_) {
      broadcast("ports", {{"html", ports}});
      sent_ports_ = std::move(ports);
    }
    // Phone pages reload their events on any event of their phone, even one that left the row
    // as it was.
    for (const auto& mac : dirty_) broadcast("phone", {{"mac", mac.to_string()}}, mac.to_string());
    dirty_.clear();
    if (sweep) last_sweep_ = steady_now;
  }
  if (steady_now - last_heartbeat_ >= limits_.heartbeat) {
    broadcast("ping", json());
    last_heartbeat_ = steady_now;
  }
  arm_tick();
}

json StatusHttpServer::query(const std::string& cmd) const {
  if (!control_) return nullptr;
  auto reply = json::parse(control_(json{{"cmd", cmd}}.dump()), nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.value("ok", false) || !reply.contains("data"))
    return nullptr;
  return reply["data"];
}

json StatusHttpServer::ports_now() const {
  return status::ports_model(site().get(), query(command::kShowPowerInline), query(command::kShowCdpNeighbors),
                             query(command::kShowInterfaces), journey_);
}

config::SiteConfigPtr StatusHttpServer::site() const { return config_source_ ? config_source_() : nullptr; }

std::vector<status::DownloadLink> StatusHttpServer::downloads_for(const MacAddress& mac) const {
  std::vector<status::DownloadLink> out;
  for (const auto& d : downloads_)
    if (d.serve && (!d.available || d.available(mac))) out.push_back({d.file, d.label});
  return out;
}

StatusHttpServer::Page StatusHttpServer::render(const std::string& target) const {
  const auto query_at = target.find('?');
  const std::string path = url_decode(target.substr(0, query_at));
  const auto cfg = site();
  const std::string site_name = cfg ? cfg->site.name : "voiceedge";
  const auto now = std::chrono::system_clock::now();

  if (path == "/static/app.css") return {200, "text/css; charset=utf-8", std::string(web::kAppCss), ""};
  if (path == "/static/app.js") return {200, "text/javascript; charset=utf-8", std::string(web::kAppJs), ""};
  if (path == "/api/phones") return {200, "application/json", json_text(journey_.phones_json(), 2), ""};
  if (path == "/api/dashboard" || path == "/fragment/dashboard") {
    const auto phones = status::phones_model(journey_, cfg.get(), now);
    const auto counters = status::counters_model(phones);
    const auto ports = ports_now();
    if (path == "/api/dashboard")
      return {200, "application/json", json_text(json{{"phones", phones}, {"counters", counters}, {"ports", ports}}, 2),
              ""};
    return {200, "application/json",
            json_text(json{{"rows", status::render_rows(phones)},
                           {"counters", status::render_counters(counters)},
                           {"ports", status::render_ports(ports)}}),
            ""};
  }
  if (path == "/metrics") {
    std::size_t registered = 0;
    std::array<std::size_t, kStepCount + 1> failed{};
    for (const auto& [mac, p] : journey_.phones()) {
      if (p.registered()) ++registered;
      auto d = journey_.diagnose(p);
      if (d.step && !p.registered()) ++failed[static_cast<std::size_t>(*d.step)];
    }
    std::string body = "# HELP voiceedge_phones Phones seen by any component.\n# TYPE voiceedge_phones gauge\n";
    body += fmt::format("voiceedge_phones {}\n", journey_.phones().size());
    body += "# HELP voiceedge_phones_registered Phones registered now.\n# TYPE voiceedge_phones_registered gauge\n";
    body += fmt::format("voiceedge_phones_registered {}\n", registered);
    body +=
        "# HELP voiceedge_phones_stuck Unregistered phones by the step they are stuck at.\n"
        "# TYPE voiceedge_phones_stuck gauge\n";
    for (int n = 1; n <= kStepCount; ++n)
      body += fmt::format("voiceedge_phones_stuck{{step=\"{}\"}} {}\n", n, failed[static_cast<std::size_t>(n)]);
    const auto& st = shared_->stats;
    body +=
        "# HELP voiceedge_status_page_streams Live status pages open.\n# TYPE voiceedge_status_page_streams gauge\n";
    body += fmt::format("voiceedge_status_page_streams {}\n", st.streams);
    body +=
        "# HELP voiceedge_status_page_refused_total Status page connections refused by a cap.\n"
        "# TYPE voiceedge_status_page_refused_total counter\n";
    body += fmt::format("voiceedge_status_page_refused_total {}\n", st.refused);
    body +=
        "# HELP voiceedge_status_page_resyncs_total Live pages that fell behind and resynced.\n"
        "# TYPE voiceedge_status_page_resyncs_total counter\n";
    body += fmt::format("voiceedge_status_page_resyncs_total {}\n", st.stream_resyncs);
    for (const auto& writer : metrics_) body += writer();
    return {200, "text/plain; version=0.0.4", body, ""};
  }
  if (path.rfind("/phone/", 0) == 0) {
    auto rest = path.substr(7);
    std::string sub;
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
      sub = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
    }
    const PhoneJourney* seen = journey_.find(rest);
    const config::Phone* listed = nullptr;
    if (cfg) {
      if (seen)
        listed = cfg->find_phone(seen->mac);
      else if (auto mac = MacAddress::parse(rest))
        listed = cfg->find_phone(*mac);
    }
    if (!seen && !listed)
      return {404, kHtml, not_found_page("No phone '" + rest + "' has been seen and the site file does not list it."),
              ""};
    const MacAddress mac = seen ? seen->mac : listed->mac;
    if (!sub.empty() && sub != "fragment") {
      for (const auto& d : downloads_)
        if (d.file == sub && d.serve && (!d.available || d.available(mac))) {
          auto page = d.serve(mac);
          if (page.content_disposition.empty() && page.status == 200)
            page.content_disposition = fmt::format("attachment; filename=\"{}-{}\"", mac.sep_name(), d.file);
          return page;
        }
      return {404, kHtml, not_found_page("Nothing called '" + sub + "' for " + mac.sep_name() + "."), ""};
    }
    const auto model = status::phone_model(journey_, seen, listed, cfg.get(), now);
    const json journey = seen ? journey_.journey_json(*seen) : json(nullptr);
    const auto downloads = downloads_for(mac);
    if (sub == "fragment") return {200, kHtml, status::render_phone_main(model, journey, downloads), ""};
    return {200, kHtml, status::render_phone_page(model, journey, downloads, site_name), ""};
  }
  if (path == "/" || path == "/index.html") {
    const auto phones = status::phones_model(journey_, cfg.get(), now);
    return {200, kHtml, status::render_dashboard(phones, ports_now(), site_name), ""};
  }
  return {404, kHtml, not_found_page("There is no page " + path + " here."), ""};
}

}  // namespace ve::daemon
