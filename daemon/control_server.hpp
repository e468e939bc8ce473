#pragma once
// The control socket: a unix stream socket speaking one JSON object per line each way.
// Request {"cmd":"show.phones","args":{...}} -> {"ok":true,"data":...} or
// {"ok":false,"error":{"code":"...","message":"..."}}. Bounded in size and time; a client can
// never take the daemon down, and many clients can never lock the administrator out.
//
// Who may do what is decided per connection from the kernel's SO_PEERCRED/SO_PEERGROUPS, never
// from anything the client says: see ControlAccess and ControlRole.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "daemon/component.hpp"
#include "ve/accept_guard.hpp"

namespace ve::daemon {

// Which callers get which role. Root and the daemon's own user are always admins.
struct ControlAccess {
  std::optional<gid_t> read_gid;   // control.read_group, resolved; nullopt: the group does not exist
  std::optional<gid_t> admin_gid;  // control.admin_group, resolved
  std::string read_group;          // names, for error messages
  std::string admin_group;
};

// Resolves a group name or a numeric GID ("1234"); nullopt if no such group.
std::optional<gid_t> resolve_group(const std::string& name_or_gid);

// The kernel's word on who is at the other end of a connection.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};

// nullopt: neither role (every command is refused).
std::optional<ControlRole> role_of(const PeerCredentials& peer, const ControlAccess& access, uid_t daemon_uid);

class ControlServer final : public ControlRegistry {
 public:
  static constexpr std::size_t kMaxRequestBytes = 64 * 1024;
  static constexpr std::size_t kMaxClients = 64;
  // Slots only root/admins may take: a crowd of read-only clients never locks the admin out.
  static constexpr std::size_t kAdminReserve = 4;
  // One read-only user cannot hold more than this many sessions.
  static constexpr std::size_t kMaxPerUser = 16;
  // A session waiting this long for its next request is closed.
  static constexpr std::chrono::seconds kIdleTimeout{10};
  // When all slots are taken, a newcomer evicts the session idle the longest, if it has been
  // idle at least this long (a client between two requests of a script is not idle).
  static constexpr std::chrono::milliseconds kEvictableAfter{1000};

  explicit ControlServer(boost::asio::io_context& io);
  ~ControlServer() override;

  using ControlRegistry::add;
  void add(const std::string& cmd, ControlHandler handler) override;
  void add(const std::string& cmd, ControlRole role, ControlHandler handler) override;
  void add_stream(const std::string& cmd, StreamHandler handler) override;
  void add_async(const std::string& cmd, ControlRole role, AsyncControlHandler handler) override;
  ControlResult call(const std::string& cmd, const nlohmann::json& args) const override;

  // Who gets which role; applied to connections accepted from now on.
  void set_access(ControlAccess access) { access_ = std::move(access); }
  const ControlAccess& access() const { return access_; }

  // Binds `path` (replacing a stale socket file), mode 0660, group control.read_group when the
  // daemon may set it. Returns an error text on failure.
  Result<void, std::string> listen(const std::filesystem::path& path);
  void close();

  // Handles one request line as `role` would (exposed for tests): the response line, no '\n'.
  // Without a role the caller may run nothing.
  std::string handle_line(const std::string& line, std::optional<ControlRole> role = ControlRole::Admin,
                          const std::string& who = "") const;

  // The same for a command that may answer later (add_async): `reply` gets the response line
  // once, now or when the handler is done. Every other command answers before this returns.
  void handle_line_async(const std::string& line, std::optional<ControlRole> role, const std::string& who,
                         std::function<void(std::string)> reply) const;

  std::size_t clients() const { return sessions_.size(); }
  std::uint64_t evicted() const { return evicted_; }
  std::uint64_t refused() const { return refused_; }
  // The registered commands and their roles (for docs and tests).
  std::map<std::string, ControlRole> roles() const;

 private:
  class Session;
  struct Entry {
    ControlHandler handler;
    ControlRole role = ControlRole::Admin;
    AsyncControlHandler async;  // set instead of `handler` for commands that answer later
  };
  void accept();
  bool make_room(bool admin, uid_t uid);
  void session_closed(std::uint64_t id);
  // A stream command takes the connection over (control_stream.cpp); true when `line` was one.
  // Streams are admin commands; a caller without the role gets the permission error on it.
  bool try_stream(const std::string& line, std::optional<ControlRole> role, const std::string& who,
                  boost::asio::local::stream_protocol::socket& socket);

  boost::asio::io_context& io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  AcceptGuard accept_guard_;
  std::filesystem::path path_;
  std::map<std::string, Entry> handlers_;
  ControlAccess access_;
  uid_t daemon_uid_;
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions_;
  std::uint64_t next_id_ = 1;
  std::uint64_t evicted_ = 0;
  std::uint64_t refused_ = 0;
  RateLimitedLog refusal_log_;
  std::map<std::string, StreamHandler> stream_handlers_;
  std::size_t streams_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace ve::daemon
