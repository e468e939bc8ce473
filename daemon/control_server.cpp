#include "daemon/control_server.hpp"

#include <sys/stat.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {
std::string error_line(const std::string& code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}
}  // namespace

// One client connection: read a line, answer it, repeat; idle clients are closed.
class ControlServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ControlServer& server, local::socket socket)
      : server_(server),
        alive_(server.alive_),
        socket_(std::move(socket)),
        buffer_(kMaxRequestBytes + 1),
        deadline_(socket_.get_executor()) {
    ++server_.clients_;
  }
  ~Session() {
    if (*alive_) --server_.clients_;
  }

  void start() { do_read(); }

 private:
  void do_read() {
    deadline_.expires_after(std::chrono::seconds(30));
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    asio::async_read_until(
        socket_, buffer_, '\n',
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    deadline_.cancel();
    if (!*alive_) return;
    if (ec == asio::error::not_found) {  // the buffer's max_size was reached before a newline
      reply_ = error_line("too-large", "request exceeds 64 KiB") + "\n";
      closing_ = true;
      do_write();
      return;
    }
    if (ec) return;  // EOF, reset, or our own deadline: just drop the connection
    std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + static_cast<long>(n));
    buffer_.consume(n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    reply_ = server_.handle_line(line) + "\n";
    do_write();
  }

  void do_write() {
    asio::async_write(socket_, asio::buffer(reply_),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        if (ec || self->closing_ || !*self->alive_) return;
                        self->do_read();
                      });
  }

  ControlServer& server_;
  std::shared_ptr<bool> alive_;
  local::socket socket_;
  asio::streambuf buffer_;
  asio::steady_timer deadline_;
  std::string reply_;
  bool closing_ = false;
};

ControlServer::ControlServer(asio::io_context& io) : io_(io), acceptor_(io) {}

ControlServer::~ControlServer() {
  *alive_ = false;
  close();
}

void ControlServer::add(const std::string& cmd, ControlHandler handler) { handlers_[cmd] = std::move(handler); }

Result<void, std::string> ControlServer::listen(const std::filesystem::path& path) {
  std::error_code fs_ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), fs_ec);
  // A socket file left by a previous run that died is stale: nobody can be listening on it
  // while we hold the state (systemd runs one instance). Remove it so bind succeeds.
  if (std::filesystem::is_socket(path, fs_ec)) std::filesystem::remove(path, fs_ec);
  boost::system::error_code ec;
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(path.string()), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.close();
    return unexpected(std::string("cannot listen on ") + path.string() + ": " + ec.message());
  }
  ::chmod(path.c_str(), 0660);
  path_ = path;
  accept();
  return {};
}

void ControlServer::close() {
  boost::system::error_code ec;
  if (acceptor_.is_open()) {
    acceptor_.close(ec);
    std::error_code fs_ec;
    std::filesystem::remove(path_, fs_ec);
  }
}

void ControlServer::accept() {
  acceptor_.async_accept([this, alive = alive_](const boost::system::error_code& ec, local::socket socket) {
    if (!*alive || ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (clients_ >= kMaxClients) {
        ve::logger("control")->warn("too many control clients ({}); refusing one", clients_);
        auto msg = std::make_shared<std::string>(error_line("unavailable", "too many clients") + "\n");
        auto sock = std::make_shared<local::socket>(std::move(socket));
        asio::async_write(*sock, asio::buffer(*msg), [msg, sock](const boost::system::error_code&, std::size_t) {});
      } else {
        std::make_shared<Session>(*this, std::move(socket))->start();
      }
    }
    accept();
  });
}

std::string ControlServer::handle_line(const std::string& line) const {
  auto req = nlohmann::json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object()) return error_line("bad-request", "request is not a JSON object");
  if (!req.contains("cmd") || !req["cmd"].is_string()) return error_line("bad-request", "missing string field 'cmd'");
  const auto cmd = req["cmd"].get<std::string>();
  nlohmann::json args = req.contains("args") ? req["args"] : nlohmann::json::object();
  if (!args.is_object()) return error_line("bad-request", "'args' must be an object");
  auto it = handlers_.find(cmd);
  if (it == handlers_.end()) return error_line("unknown-command", "unknown command '" + cmd + "'");
  try {
    auto result = it->second(args);
    if (!result) return error_line(result.error().code, result.error().message);
    return nlohmann::json{{"ok", true}, {"data", std::move(result.value())}}.dump();
  } catch (const std::exception& e) {
    // A handler bug must not take the daemon down with it.
    ve::logger("control")->error("command {} failed: {}", cmd, e.what());
    return error_line("failed", std::string("internal error: ") + e.what());
  }
}

}  // namespace ve::daemon
