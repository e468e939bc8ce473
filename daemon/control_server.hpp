#pragma once
// The control socket: a unix stream socket speaking one JSON object per line each way.
// Request {"cmd":"show.phones","args":{...}} -> {"ok":true,"data":...} or
// {"ok":false,"error":{"code":"...","message":"..."}}. Bounded in size and time; a client can
// never take the daemon down.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "daemon/component.hpp"

namespace ve::daemon {

class ControlServer final : public ControlRegistry {
 public:
  static constexpr std::size_t kMaxRequestBytes = 64 * 1024;
  static constexpr std::size_t kMaxClients = 64;

  explicit ControlServer(boost::asio::io_context& io);
  ~ControlServer() override;

  void add(const std::string& cmd, ControlHandler handler) override;

  // Binds `path` (replacing a stale socket file), mode 0660. Returns an error text on failure.
  Result<void, std::string> listen(const std::filesystem::path& path);
  void close();

  // Handles one request line (exposed for tests): returns the response line without '\n'.
  std::string handle_line(const std::string& line) const;

  std::size_t clients() const { return clients_; }

 private:
  class Session;
  void accept();

  boost::asio::io_context& io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  std::map<std::string, ControlHandler> handlers_;
  std::size_t clients_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace ve::daemon
