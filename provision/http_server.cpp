// HTTP on tcp/6970 over the same tree (newer Cisco firmware tries it before TFTP). Sessions follow
// Beast's async server shape: each owns its stream, buffer and per-request parser with limits.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>

#include "provision/internal.hpp"
#include "ve/log.hpp"

namespace ve::provision {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Decodes %XX escapes and drops the query; nullopt on a broken escape.
std::optional<std::string> path_of(std::string_view target) {
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  std::string out;
  out.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] != '%') {
      out.push_back(target[i]);
      continue;
    }
    if (i + 2 >= target.size()) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(target.data() + i + 1, target.data() + i + 3, value, 16);
    if (ec != std::errc{} || end != target.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};

enum class RangeResult { None, Ok, Unsatisfiable };

// One "bytes=a-b", "bytes=a-" or "bytes=-n" range. Anything else (several ranges, other units,
// garbage) is ignored and the whole file is sent, which RFC 9110 allows.
RangeResult parse_range(std::string_view header, std::uint64_t size, ByteRange& out) {
  constexpr std::string_view prefix = "bytes=";
  if (header.substr(0, prefix.size()) != prefix) return RangeResult::None;
  header.remove_prefix(prefix.size());
  if (header.find(',') != std::string_view::npos) return RangeResult::None;
  const auto dash = header.find('-');
  if (dash == std::string_view::npos) return RangeResult::None;
  auto number = [](std::string_view s, std::uint64_t& v) {
    if (s.empty() || s.size() > 19) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size();
  };
  const auto a = header.substr(0, dash);
  const auto b = header.substr(dash + 1);
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  if (a.empty()) {
    std::uint64_t suffix = 0;
    if (!number(b, suffix)) return RangeResult::None;
    if (suffix == 0 || size == 0) return RangeResult::Unsatisfiable;
    first = size > suffix ? size - suffix : 0;
    last = size - 1;
  } else {
    if (!number(a, first)) return RangeResult::None;
    if (b.empty())
      last = size == 0 ? 0 : size - 1;
    else if (!number(b, last) || last < first)
      return RangeResult::None;
    if (first >= size) return RangeResult::Unsatisfiable;
    last = std::min(last, size - 1);
  }
  out = {first, last};
  return RangeResult::Ok;
}

std::string_view content_type(std::string_view name) {
  if (name.size() >= 4 && (name.ends_with(".xml") || name.ends_with(".XML"))) return "text/xml";
  return "application/octet-stream";
}

}  // namespace

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, const HttpOptions& options, std::shared_ptr<Shared> shared,
              std::shared_ptr<std::atomic<std::size_t>> connections,
              ve::ConnectionLimiter<asio::ip::address>::Slot slot)
      : stream_(std::move(socket)),
        options_(options),
        shared_(std::move(shared)),
        connections_(std::move(connections)),
        slot_(std::move(slot)),
        wait_timer_(stream_.get_executor()) {
    boost::system::error_code ec;
    const auto remote = stream_.socket().remote_endpoint(ec);
    client_ip_ = ec ? std::string("?") : remote.address().to_string();
  }
  ~HttpSession() { --*connections_; }

  void start() { do_read(); }
  void close() {
    closed_ = true;
    wait_timer_.cancel();
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void do_read() {
    if (closed_) return;
    parser_.emplace();  // a fresh parser per request so the limits apply to each
    parser_->header_limit(static_cast<std::uint32_t>(options_.header_limit));
    parser_->body_limit(0);
    stream_.expires_after(options_.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec, true);
    });
  }

  void on_read(beast::error_code ec, bool header_only) {
    if (closed_ || ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) {
      return close();
    }
    // A declared body fails the header read at its Content-Length (no body is ever wanted). The
    // request line is parsed by then, so a PUT or POST is still answered 405 (the method comes
    // first); a GET with a body 400.
    const bool body_refused = (ec == http::error::unexpected_body || ec == http::error::body_limit) &&
                              parser_->get().method() != http::verb::get && parser_->get().method() != http::verb::head;
    if (ec && !body_refused) {
      shared_->activity.bump(&Counters::http_malformed);
      ve::logger("provision")->debug("http bad request from {}: {}", client_ip_, ec.message());
      auto res = std::make_shared<http::response<http::empty_body>>(
          ec == http::error::header_limit ? http::status::request_header_fields_too_large : http::status::bad_request,
          11);
      res->keep_alive(false);
      res->prepare_payload();
      return write(res, {});
    }
    const auto& req = parser_->get();
    if (header_only) {
      if (req.method() != http::verb::get && req.method() != http::verb::head) {
        shared_->activity.bump(&Counters::http_requests);
        shared_->activity.bump(&Counters::http_bad_method);
        auto res = std::make_shared<http::response<http::empty_body>>(http::status::method_not_allowed, req.version());
        res->set(http::field::allow, "GET, HEAD");
        // Any body is left unread: the connection cannot carry another request. It is drained
        // after the answer, so closing with unread bytes does not reset the answer away.
        drain_before_close_ = body_refused || !parser_->is_done();
        res->keep_alive(!drain_before_close_ && req.keep_alive());
        res->prepare_payload();
        return write(res, {});
      }
      if (!parser_->is_done()) {
        // A GET with a body: read it into the zero body limit, which answers 400 as before.
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code e, std::size_t) { self->on_read(e, false); });
        return;
      }
    }
    shared_->activity.bump(&Counters::http_requests);
    started_ = Clock::now();
    wait_until_ = Clock::now() + shared_->lease_wait;
    decide();
  }

  // A phone's config from an address without a lease waits (up to lease_wait) for the lease.
  void decide() {
    const auto& req = parser_->get();
    const auto path = path_of(std::string_view(req.target().data(), req.target().size()));
    auto gate = Gate::Open;
    if (path) {
      const auto tree = shared_->tree();
      gate = Activity::gate(tree->site(), shared_->activity.requester(tree->site(), client_ip_), *path);
    }
    if (gate == Gate::Wait && Clock::now() < wait_until_) {
      wait_timer_.expires_after(std::chrono::milliseconds(100));
      wait_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (ec || self->closed_) return;
        self->decide();
      });
      return;
    }
    handle(req, gate != Gate::Open);
  }

  void handle(const http::request<http::empty_body>& req, bool refuse_config) {
    const bool head = req.method() == http::verb::head;
    TransferRecord record;
    record.protocol = Protocol::Http;
    record.client_ip = client_ip_;
    record.time = std::chrono::system_clock::now();
    const auto path = path_of(std::string_view(req.target().data(), req.target().size()));
    // URL paths always start with '/'; record the name as TFTP would see it.
    record.file = path ? path->substr(path->starts_with('/') ? 1 : 0, kMaxRequestName) : std::string("?");
    record.step = classify(record.file);
    const auto tree = shared_->tree();
    const auto who = shared_->activity.requester(tree->site(), client_ip_);
    record.mac = shared_->activity.identify(tree->site(), who, client_ip_, record.file);
    record.verified = who.mac().has_value();

    auto error_response = [&](http::status status) {
      auto res = std::make_shared<http::response<http::empty_body>>(status, req.version());
      res->keep_alive(req.keep_alive());
      res->prepare_payload();
      return res;
    };
    if (!path) {
      record.outcome = Outcome::Failed;
      record.result = "refused";
      return write(error_response(http::status::bad_request), std::move(record));
    }
    auto file = tree->open(*path);
    if (refuse_config) {
      // Exactly the 404 of a file that does not exist.
      if (const auto owner = config_owner(*path); owner && file) {
        shared_->activity.config_refused(tree->site(), Protocol::Http, *owner, client_ip_, who, record.file);
        record.outcome = Outcome::Failed;
        record.result = "config-refused";
        return write(error_response(http::status::not_found), std::move(record));
      }
    }
    if (!file) {
      const auto how = outcome_of(file.error(), record.step);
      record.outcome = how.outcome;
      record.result = how.result;
      const bool refused = file.error().kind == LookupError::Kind::Refused;
      if (refused)
        ve::logger("provision")->warn("http refused {} from {}: {}", record.file, client_ip_, file.error().reason);
      return write(error_response(refused ? http::status::forbidden : http::status::not_found), std::move(record));
    }

    const std::uint64_t size = file->bytes->size();
    ByteRange range{0, size == 0 ? 0 : size - 1};
    auto status = http::status::ok;
    if (!head) {
      const auto range_header = req[http::field::range];
      switch (parse_range(std::string_view(range_header.data(), range_header.size()), size, range)) {
        case RangeResult::None: range = {0, size == 0 ? 0 : size - 1}; break;
        case RangeResult::Ok: status = http::status::partial_content; break;
        case RangeResult::Unsatisfiable: {
          auto res = error_response(http::status::range_not_satisfiable);
          res->set(http::field::content_range, "bytes */" + std::to_string(size));
          record.outcome = Outcome::Failed;
          record.result = "bad-range";
          return write(res, std::move(record));
        }
      }
    }
    const std::uint64_t length = size == 0 ? 0 : range.last - range.first + 1;
    record.outcome = Outcome::Ok;
    record.result = "ok";
    if (head) {
      auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, req.version());
      res->set(http::field::server, "voiceedge");
      res->set(http::field::content_type, std::string(content_type(file->name)));
      res->set(http::field::accept_ranges, "bytes");
      res->keep_alive(req.keep_alive());
      res->content_length(size);
      return write(res, std::move(record));
    }
    auto res = std::make_shared<http::response<http::span_body<const char>>>(status, req.version());
    res->set(http::field::server, "voiceedge");
    res->set(http::field::content_type, std::string(content_type(file->name)));
    res->set(http::field::accept_ranges, "bytes");
    if (status == http::status::partial_content) {
      res->set(http::field::content_range,
               "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" + std::to_string(size));
    }
    res->keep_alive(req.keep_alive());
    // The body is a view of the shared file buffer; the session holds the buffer until written.
    held_ = file->bytes;
    res->body() = beast::span<const char>(reinterpret_cast<const char*>(held_->data()) + range.first,
                                          static_cast<std::size_t>(length));
    res->prepare_payload();
    record.bytes = length;
    write(res, std::move(record));
  }

  template <typename Message>
  void write(std::shared_ptr<Message> res, std::optional<TransferRecord> record) {
    pending_record_ = std::move(record);
    stream_.expires_after(options_.idle_timeout);
    const bool close_after = res->need_eof();
    http::async_write(stream_, *res, [self = shared_from_this(), res, close_after](beast::error_code ec, std::size_t) {
      self->on_write(ec, close_after);
    });
  }

  void on_write(beast::error_code ec, bool close_after) {
    held_.reset();
    if (pending_record_) {
      auto record = std::move(*pending_record_);
      pending_record_.reset();
      record.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
      if (ec && record.outcome == Outcome::Ok) {
        record.outcome = Outcome::Failed;
        record.result = "client-gone";
        record.bytes = 0;
      }
      shared_->activity.record(std::move(record));
    }
    if (!ec && !closed_ && drain_before_close_) return drain();
    if (ec || close_after || closed_) return close();
    do_read();
  }

  // Half-close, then read and drop what the client still sends (a body we did not want) until it
  // closes or a short deadline passes.
  void drain() {
    if (!drain_buffer_) {
      drain_buffer_ = std::make_unique<std::array<char, 4096>>();
      boost::system::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream_.expires_after(std::chrono::seconds(2));  // once: a trickling client cannot extend it
    }
    stream_.async_read_some(asio::buffer(*drain_buffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec || self->closed_) return self->close();
                              self->drain();
                            });
  }

  beast::tcp_stream stream_;
  HttpOptions options_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<std::atomic<std::size_t>> connections_;
  ve::ConnectionLimiter<asio::ip::address>::Slot slot_;  // released when the session ends
  beast::flat_buffer buffer_{16384};
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::optional<TransferRecord> pending_record_;
  Bytes held_;
  std::string client_ip_;
  Clock::time_point started_;
  Clock::time_point wait_until_;
  bool drain_before_close_ = false;
  std::unique_ptr<std::array<char, 4096>> drain_buffer_;
  asio::steady_timer wait_timer_;
  bool closed_ = false;
};

// ---------------------------------------------------------------- HttpServer

HttpServer::HttpServer(asio::io_context& io, HttpOptions options, std::shared_ptr<Shared> shared)
    : io_(io),
      options_(std::move(options)),
      shared_(std::move(shared)),
      acceptor_(io),
      accept_guard_(io.get_executor(), "provision", "http"),
      limiter_(static_cast<std::size_t>(std::max(options_.max_connections, 1)),
               static_cast<std::size_t>(std::max(options_.max_per_client, 1))) {}

Result<void, std::string> HttpServer::start() {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(options_.listen.host, ec);
  if (ec) return unexpected("http listen address " + options_.listen.host + ": " + ec.message());
  const tcp::endpoint endpoint(address, options_.listen.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unexpected("http listen " + options_.listen.to_string() + ": " + ec.message());
  port_ = acceptor_.local_endpoint(ec).port();
  accept_guard_.set_what("http " + options_.listen.host + ":" + std::to_string(port_));
  stopped_ = false;
  accept();
  ve::logger("provision")->info("http listening on {}:{}", options_.listen.host, port_);
  return {};
}

void HttpServer::stop() {
  stopped_ = true;
  accept_guard_.cancel();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->close();
  }
  sessions_.clear();
}

void HttpServer::accept() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
    if (self->stopped_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: pause accepting (rate-limited log line), then go on by itself.
      self->accept_guard_.failed(ec, [self] {
        if (!self->stopped_) self->accept();
      });
      return;
    }
    self->accept_guard_.succeeded();
    boost::system::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec).address();
    auto [slot, refusal] = self->limiter_.acquire(peer);
    if (!slot) {
      self->shared_->activity.bump(&Counters::http_busy);
      self->refusal_log_.warn("provision",
                              "http connection from {} refused: {} open from it (max {}), {} in all (max {})",
                              peer.to_string(), self->limiter_.from(peer), self->limiter_.max_per_client(),
                              self->limiter_.total(), self->limiter_.max_total());
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      ++*self->connections_;
      auto session = std::make_shared<HttpSession>(std::move(socket), self->options_, self->shared_, self->connections_,
                                                   std::move(slot));
      std::erase_if(self->sessions_, [](const std::weak_ptr<HttpSession>& w) { return w.expired(); });
      self->sessions_.push_back(session);
      session->start();
    }
    self->accept();
  });
}

}  // namespace ve::provision
