#include "daemon/control_server.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "daemon/control_stream.hpp"
#include "ve/log.hpp"

namespace ve::daemon {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

namespace {
std::string error_line(const std::string& code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}}.dump();
}

PeerCredentials peer_credentials(int fd) {
  PeerCredentials peer;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
  }
  // Supplementary groups as they were at connect time (Linux >= 4.13).
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      peer.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(glen / sizeof(gid_t) + 1);
  }
  return peer;
}

std::string describe(const PeerCredentials& peer) { return fmt::format("uid {} (pid {})", peer.uid, peer.pid); }
}  // namespace

std::optional<gid_t> resolve_group(const std::string& name_or_gid) {
  if (name_or_gid.empty()) return std::nullopt;
  unsigned long numeric = 0;
  const auto* end = name_or_gid.data() + name_or_gid.size();
  if (auto [p, ec] = std::from_chars(name_or_gid.data(), end, numeric); ec == std::errc{} && p == end)
    return static_cast<gid_t>(numeric);
  group grp{};
  group* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getgrnam_r(name_or_gid.c_str(), &grp, buffer.data(), buffer.size(), &found) != 0 || !found) return std::nullopt;
  return found->gr_gid;
}

std::optional<ControlRole> role_of(const PeerCredentials& peer, const ControlAccess& access, uid_t daemon_uid) {
  if (peer.uid == 0 || peer.uid == daemon_uid) return ControlRole::Admin;
  const auto member = [&](const std::optional<gid_t>& gid) {
    return gid && (peer.gid == *gid || std::find(peer.groups.begin(), peer.groups.end(), *gid) != peer.groups.end());
  };
  if (member(access.admin_gid)) return ControlRole::Admin;
  if (member(access.read_gid)) return ControlRole::Read;
  return std::nullopt;
}

// One client connection: read a line, answer it, repeat; idle clients are closed, and evicted
// first when someone else needs the slot.
class ControlServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ControlServer& server, local::socket socket, std::uint64_t id, PeerCredentials peer,
          std::optional<ControlRole> role)
      : server_(server),
        alive_(server.alive_),
        socket_(std::move(socket)),
        buffer_(kMaxRequestBytes + 1),
        deadline_(socket_.get_executor()),
        id_(id),
        peer_(std::move(peer)),
        role_(role),
        who_(describe(peer_)) {}
  ~Session() {
    if (*alive_) server_.session_closed(id_);
  }

  void start() { do_read(); }

  bool admin() const { return role_ == ControlRole::Admin; }
  uid_t uid() const { return peer_.uid; }
  // How long it has been waiting for its next request; nullopt while a request is handled.
  std::optional<Clock::duration> idle_for(Clock::time_point now) const {
    if (!waiting_) return std::nullopt;
    return now - idle_since_;
  }
  void evict() {
    boost::system::error_code ec;
    deadline_.cancel();
    socket_.close(ec);
  }

 private:
  void do_read() {
    waiting_ = true;
    idle_since_ = Clock::now();
    deadline_.expires_after(kIdleTimeout);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    asio::async_read_until(
        socket_, buffer_, '\n',
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    waiting_ = false;
    deadline_.cancel();
    if (!*alive_) return;
    if (ec == asio::error::not_found) {  // the buffer's max_size was reached before a newline
      reply_ = error_line("too-large", "request exceeds 64 KiB") + "\n";
      closing_ = true;
      do_write();
      return;
    }
    if (ec) return;  // EOF, reset, eviction or our own deadline: just drop the connection
    std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + static_cast<long>(n));
    buffer_.consume(n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    // A stream (capture) leaves this session: its connection has no idle deadline while it streams.
    if (server_.try_stream(line, role_, who_, socket_)) return;
    // A command that waits for a phone answers later; the session reads nothing meanwhile.
    server_.handle_line_async(line, role_, who_, [self = shared_from_this()](std::string reply) {
      if (!*self->alive_) return;
      self->reply_ = std::move(reply) + "\n";
      self->do_write();
    });
  }

  void do_write() {
    // A client that does not read its answer is as idle as one that does not ask.
    deadline_.expires_after(kIdleTimeout);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    asio::async_write(socket_, asio::buffer(reply_),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->deadline_.cancel();
                        if (ec || self->closing_ || !*self->alive_) return;
                        self->do_read();
                      });
  }

  ControlServer& server_;
  std::shared_ptr<bool> alive_;
  local::socket socket_;
  asio::streambuf buffer_;
  asio::steady_timer deadline_;
  std::uint64_t id_;
  PeerCredentials peer_;
  std::optional<ControlRole> role_;
  std::string who_;
  std::string reply_;
  Clock::time_point idle_since_ = Clock::now();
  bool waiting_ = false;
  bool closing_ = false;
};

ControlServer::ControlServer(asio::io_context& io)
    : io_(io), acceptor_(io), accept_guard_(io.get_executor(), "control", "control socket"), daemon_uid_(::geteuid()) {}

ControlServer::~ControlServer() {
  *alive_ = false;
  close();
}

void ControlServer::add(const std::string& cmd, ControlHandler handler) {
  add(cmd, role_implied_by(cmd), std::move(handler));
}

void ControlServer::add(const std::string& cmd, ControlRole role, ControlHandler handler) {
  handlers_[cmd] = Entry{std::move(handler), role, nullptr};
}

std::map<std::string, ControlRole> ControlServer::roles() const {
  std::map<std::string, ControlRole> out;
  for (const auto& [cmd, entry] : handlers_) out[cmd] = entry.role;
  for (const auto& [cmd, handler] : stream_handlers_) out[cmd] = ControlRole::Admin;
  return out;
}

void ControlServer::add_async(const std::string& cmd, ControlRole role, AsyncControlHandler handler) {
  handlers_[cmd] = Entry{nullptr, role, std::move(handler)};
}

void ControlServer::add_stream(const std::string& cmd, StreamHandler handler) {
  stream_handlers_[cmd] = std::move(handler);
}

ControlResult ControlServer::call(const std::string& cmd, const nlohmann::json& args) const {
  auto it = handlers_.find(cmd);
  if (it == handlers_.end() || !it->second.handler) return unexpected(ControlError{"unavailable", "no command " + cmd});
  try {
    return it->second.handler(args);
  } catch (const std::exception& e) {
    return unexpected(ControlError{"failed", std::string("internal error: ") + e.what()});
  }
}

bool ControlServer::try_stream(const std::string& line, std::optional<ControlRole> role, const std::string& who,
                               local::socket& socket) {
  if (stream_handlers_.empty()) return false;
  auto req = nlohmann::json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) return false;
  const auto cmd = req["cmd"].get<std::string>();
  auto it = stream_handlers_.find(cmd);
  if (it == stream_handlers_.end()) return false;
  nlohmann::json args = req.contains("args") ? req["args"] : nlohmann::json::object();
  if (!args.is_object()) return false;           // handle_line answers bad-request
  if (role != ControlRole::Admin) return false;  // handle_line answers permission-denied
  if (!who.empty()) ve::logger("control")->info("{} requested by {}", cmd, who);
  ++streams_;
  start_control_stream(std::move(socket), it->second, args, [this, alive = alive_] {
    if (*alive) --streams_;
  });
  return true;
}

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
  // The socket's group is the read group, so the file mode lets exactly its members connect
  // (SO_PEERCRED decides the rest). Without CAP_CHOWN this works only for our own groups.
  if (access_.read_gid && ::chown(path.c_str(), static_cast<uid_t>(-1), *access_.read_gid) != 0) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && st.st_gid != *access_.read_gid)
      ve::logger("control")->warn("cannot give {} to group {} ({}): it stays with gid {}", path.string(),
                                  access_.read_group, std::strerror(errno), st.st_gid);
  }
  path_ = path;
  accept_guard_.set_what("control socket " + path.string());
  accept();
  return {};
}

void ControlServer::close() {
  boost::system::error_code ec;
  accept_guard_.cancel();
  if (acceptor_.is_open()) {
    acceptor_.close(ec);
    std::error_code fs_ec;
    std::filesystem::remove(path_, fs_ec);
  }
}

void ControlServer::session_closed(std::uint64_t id) { sessions_.erase(id); }

// Finds a slot for a newcomer, evicting an idle session if that is the only way. Admins may use
// every slot and evict anyone idle; others get kMaxClients - kAdminReserve slots, kMaxPerUser
// each, and evict only sessions idle for kEvictableAfter.
bool ControlServer::make_room(bool admin, uid_t uid) {
  const auto now = Clock::now();
  std::size_t non_admin = 0;
  std::size_t same_user = 0;
  for (const auto& [id, weak] : sessions_) {
    auto s = weak.lock();
    if (!s || s->admin()) continue;
    ++non_admin;
    if (s->uid() == uid) ++same_user;
  }
  const auto evict_idlest = [&](auto&& eligible, Clock::duration min_idle) {
    std::shared_ptr<Session> victim;
    Clock::duration longest{-1};
    for (const auto& [id, weak] : sessions_) {
      auto s = weak.lock();
      if (!s || !eligible(*s)) continue;
      const auto idle = s->idle_for(now);
      if (idle && *idle >= min_idle && *idle > longest) {
        longest = *idle;
        victim = s;
      }
    }
    if (!victim) return false;
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.lock() == victim) {
        sessions_.erase(it);
        break;
      }
    }
    victim->evict();
    ++evicted_;
    return true;
  };
  if (admin) {
    if (sessions_.size() < kMaxClients) return true;
    return evict_idlest([](const Session& s) { return !s.admin(); }, Clock::duration::zero()) ||
           evict_idlest([](const Session&) { return true; }, kEvictableAfter);
  }
  if (same_user >= kMaxPerUser)
    return evict_idlest([uid](const Session& s) { return !s.admin() && s.uid() == uid; }, kEvictableAfter);
  if (non_admin >= kMaxClients - kAdminReserve || sessions_.size() >= kMaxClients)
    return evict_idlest([](const Session& s) { return !s.admin(); }, kEvictableAfter);
  return true;
}

void ControlServer::accept() {
  acceptor_.async_accept([this, alive = alive_](const boost::system::error_code& ec, local::socket socket) {
    if (!*alive || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: pause instead of spinning; the loop resumes by itself.
      accept_guard_.failed(ec, [this, alive] {
        if (*alive && acceptor_.is_open()) accept();
      });
      return;
    }
    accept_guard_.succeeded();
    auto peer = peer_credentials(socket.native_handle());
    const auto role = role_of(peer, access_, daemon_uid_);
    if (!make_room(role == ControlRole::Admin, peer.uid)) {
      ++refused_;
      refusal_log_.warn("control", "control socket full ({} clients); refusing {}", sessions_.size(), describe(peer));
      auto msg = std::make_shared<std::string>(error_line("unavailable", "too many clients") + "\n");
      auto sock = std::make_shared<local::socket>(std::move(socket));
      asio::async_write(*sock, asio::buffer(*msg), [msg, sock](const boost::system::error_code&, std::size_t) {});
    } else {
      const auto id = next_id_++;
      auto session = std::make_shared<Session>(*this, std::move(socket), id, std::move(peer), role);
      sessions_[id] = session;
      session->start();
    }
    accept();
  });
}

std::string ControlServer::handle_line(const std::string& line, std::optional<ControlRole> role,
                                       const std::string& who) const {
  auto req = nlohmann::json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object()) return error_line("bad-request", "request is not a JSON object");
  if (!req.contains("cmd") || !req["cmd"].is_string()) return error_line("bad-request", "missing string field 'cmd'");
  const auto cmd = req["cmd"].get<std::string>();
  nlohmann::json args = req.contains("args") ? req["args"] : nlohmann::json::object();
  if (!args.is_object()) return error_line("bad-request", "'args' must be an object");
  const std::string caller = who.empty() ? "this caller" : who;
  if (!role) {
    return error_line("permission-denied",
                      fmt::format("{} may not use the control socket: it is neither root nor in group '{}' "
                                  "(control.read_group) or '{}' (control.admin_group)",
                                  caller, access_.read_group, access_.admin_group));
  }
  auto it = handlers_.find(cmd);
  const bool admin_only =
      it == handlers_.end() ? stream_handlers_.contains(cmd) : it->second.role == ControlRole::Admin;
  if (it == handlers_.end() && !admin_only) return error_line("unknown-command", "unknown command '" + cmd + "'");
  if (admin_only && *role != ControlRole::Admin) {
    return error_line("permission-denied",
                      fmt::format("'{}' changes the running daemon: it needs root or a member of group '{}' "
                                  "(control.admin_group); {} may only read",
                                  cmd, access_.admin_group, caller));
  }
  // An admin reaches a stream command only on a connection of its own (try_stream), not here.
  if (it == handlers_.end()) return error_line("bad-request", "'" + cmd + "' streams: it needs its own connection");
  if (!it->second.handler) return error_line("bad-request", "'" + cmd + "' answers later: use the control socket");
  // Every change is on record with who asked for it.
  if (it->second.role == ControlRole::Admin && !who.empty())
    ve::logger("control")->info("{} requested by {}", cmd, who);
  try {
    auto result = it->second.handler(args);
    if (!result) return error_line(result.error().code, result.error().message);
    return nlohmann::json{{"ok", true}, {"data", std::move(result.value())}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);  // wire text may not be UTF-8
  } catch (const std::exception& e) {
    // A handler bug must not take the daemon down with it.
    ve::logger("control")->error("command {} failed: {}", cmd, e.what());
    return error_line("failed", std::string("internal error: ") + e.what());
  }
}

void ControlServer::handle_line_async(const std::string& line, std::optional<ControlRole> role, const std::string& who,
                                      std::function<void(std::string)> reply) const {
  auto req = nlohmann::json::parse(line, nullptr, false);
  const Entry* entry = nullptr;
  if (!req.is_discarded() && req.is_object() && req.contains("cmd") && req["cmd"].is_string() &&
      (!req.contains("args") || req["args"].is_object())) {
    auto it = handlers_.find(req["cmd"].get<std::string>());
    if (it != handlers_.end() && it->second.async) entry = &it->second;
  }
  // Errors (bad request, permission) and ordinary commands: the synchronous path answers now.
  if (!entry || !role || (entry->role == ControlRole::Admin && *role != ControlRole::Admin)) {
    reply(handle_line(line, role, who));
    return;
  }
  const auto cmd = req["cmd"].get<std::string>();
  if (entry->role == ControlRole::Admin && !who.empty()) ve::logger("control")->info("{} requested by {}", cmd, who);
  nlohmann::json args = req.contains("args") ? req["args"] : nlohmann::json::object();
  // Exactly one reply, even if a handler calls done twice or throws after calling it.
  auto once = std::make_shared<std::function<void(std::string)>>(std::move(reply));
  auto done = [once, cmd](ControlResult result) {
    if (!*once) return;
    auto r = std::exchange(*once, nullptr);
    if (!result) return r(error_line(result.error().code, result.error().message));
    r(nlohmann::json{{"ok", true}, {"data", std::move(result.value())}}.dump(-1, ' ', false,
                                                                             nlohmann::json::error_handler_t::replace));
  };
  try {
    entry->async(args, done);
  } catch (const std::exception& e) {
    ve::logger("control")->error("command {} failed: {}", cmd, e.what());
    done(unexpected(ControlError{"failed", std::string("internal error: ") + e.what()}));
  }
}

}  // namespace ve::daemon
