#include "daemon/status_http.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string str(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

constexpr const char* kStyle =
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eee}"
    ".ok{color:#070}.failed{color:#b00}.expected{color:#555}dl.ds dt{font-weight:bold;float:left;"
    "clear:left;width:11em}dl.ds dd{margin-left:12em}</style>";

}  // namespace

class StatusHttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(const StatusHttpServer& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}
  void start() { do_read(); }

 private:
  void do_read() {
    request_ = {};
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    stream_.expires_after(std::chrono::seconds(15));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) return;  // closed, timed out or malformed: drop the connection
    request_ = parser_->release();
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(request_.version());
    res->set(http::field::server, "voiceedged");
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain");
      res->body() = "method not allowed\n";
    } else {
      auto page = server_.render(std::string(request_.target()));
      res->result(static_cast<http::status>(page.status));
      res->set(http::field::content_type, page.content_type);
      res->body() = std::move(page.body);
    }
    res->keep_alive(request_.keep_alive());
    res->prepare_payload();
    if (request_.method() == http::verb::head) res->body().clear();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code wec, std::size_t) {
      if (wec || !res->keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->do_read();
    });
  }

  const StatusHttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::request<http::empty_body> request_;
};

StatusHttpServer::StatusHttpServer(asio::io_context& io, const JourneyTracker& journey, config::Endpoint listen)
    : io_(io), journey_(journey), listen_(std::move(listen)), acceptor_(io) {}

StatusHttpServer::~StatusHttpServer() {
  *alive_ = false;
  stop();
}

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
  ve::logger("control")->info("status page on http://{}:{}/", listen_.host, port());
  accept();
  return {};
}

void StatusHttpServer::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

std::uint16_t StatusHttpServer::port() const {
  boost::system::error_code ec;
  return acceptor_.is_open() ? acceptor_.local_endpoint(ec).port() : 0;
}

void StatusHttpServer::accept() {
  acceptor_.async_accept([this, alive = alive_](beast::error_code ec, tcp::socket socket) {
    if (!*alive || ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<Session>(*this, std::move(socket))->start();
    accept();
  });
}

StatusHttpServer::Page StatusHttpServer::render(const std::string& target) const {
  if (target == "/api/phones") return {200, "application/json", journey_.phones_json().dump(2)};
  if (target == "/metrics") {
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
    for (const auto& writer : metrics_) body += writer();
    return {200, "text/plain; version=0.0.4", body};
  }
  if (target.rfind("/phone/", 0) == 0) {
    const auto* p = journey_.find(target.substr(7));
    if (!p) return {404, "text/html; charset=utf-8", "<!doctype html><title>not found</title><p>No such phone.</p>"};
    const auto j = journey_.journey_json(*p);
    const auto& ds = j["phone"];
    std::string b = "<!doctype html><html><head><meta charset=utf-8><title>" + html_escape(str(ds, "name")) +
                    "</title>" + kStyle + "</head><body><p><a href=\"/\">all phones</a></p><h1>Device Status — " +
                    html_escape(str(ds, "name")) + "</h1><dl class=ds>";
    for (const auto& [label, key] :
         std::vector<std::pair<const char*, const char*>>{{"Registration", "registration"},
                                                          {"IPv4 Address", "ipv4_address"},
                                                          {"Active Load ID", "active_load_id"},
                                                          {"Inactive Load ID", "inactive_load_id"},
                                                          {"Download Status", "download_status"},
                                                          {"Port", "port"},
                                                          {"Power (W)", "power_w"},
                                                          {"Voice VLAN", "vlan"},
                                                          {"Model", "model"}}) {
      b += fmt::format("<dt>{}</dt><dd>{}</dd>", label, html_escape(str(ds, key)));
    }
    b += "</dl><h2>Boot sequence</h2><table><tr><th>#</th><th>step</th><th>outcome</th><th>detail</th><th>first</th>"
         "<th>last</th></tr>";
    for (const auto& s : j["steps"]) {
      const auto outcome = str(s, "outcome");
      b += fmt::format("<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                       s["step"].get<int>(), html_escape(str(s, "name")), html_escape(outcome),
                       outcome.empty() ? "—" : html_escape(outcome), html_escape(str(s, "detail")),
                       html_escape(str(s, "first")), html_escape(str(s, "last")));
    }
    b += "</table></body></html>";
    return {200, "text/html; charset=utf-8", b};
  }
  if (target == "/" || target == "/index.html") {
    std::string b = std::string(
                        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>"
                        "<title>voiceedge phones</title>") +
                    kStyle +
                    "</head><body><h1>Phones</h1><table><tr><th>name</th><th>port</th><th>IPv4 address</th>"
                    "<th>registration</th><th>active load</th><th>first failing step</th></tr>";
    for (const auto& ph : journey_.phones_json()) {
      const auto name = str(ph, "name");
      b += fmt::format(
          "<tr><td><a href=\"/phone/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td class=\"{3}\">{4}</td><td>{5}</td>"
          "<td>{6}</td></tr>",
          html_escape(name), html_escape(str(ph, "port")), html_escape(str(ph, "ipv4_address")),
          ph.value("registered", false) ? "ok" : "failed", html_escape(str(ph, "registration")),
          html_escape(str(ph, "active_load_id")), ph.value("registered", false) ? "" : html_escape(str(ph, "reason")));
    }
    b += "</table></body></html>";
    return {200, "text/html; charset=utf-8", b};
  }
  return {404, "text/plain", "not found\n"};
}

}  // namespace ve::daemon
