#include "daemon/control_server.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "ve/base64.hpp"

namespace ve::daemon {
namespace {

class ControlServerTest : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  ControlServer server{io};
  void SetUp() override {
    server.add("echo", [](const nlohmann::json& args) -> ControlResult { return args; });
    server.add("fail", [](const nlohmann::json&) -> ControlResult {
      return unexpected(ControlError{"not-found", "nothing here"});
    });
    server.add("throw", [](const nlohmann::json&) -> ControlResult { throw std::runtime_error("boom"); });
  }
  nlohmann::json call(const std::string& line) { return nlohmann::json::parse(server.handle_line(line)); }
};

TEST_F(ControlServerTest, AnswersAKnownCommand) {
  auto r = call(R"({"cmd":"echo","args":{"x":1}})");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["data"]["x"], 1);
}

TEST_F(ControlServerTest, MalformedRequestsGetJsonErrors) {
  EXPECT_EQ(call("not json")["error"]["code"], "bad-request");
  EXPECT_EQ(call("[1,2]")["error"]["code"], "bad-request");
  EXPECT_EQ(call(R"({"args":{}})")["error"]["code"], "bad-request");
  EXPECT_EQ(call(R"({"cmd":"echo","args":5})")["error"]["code"], "bad-request");
  EXPECT_EQ(call(R"({"cmd":"nope"})")["error"]["code"], "unknown-command");
}

TEST_F(ControlServerTest, HandlerErrorsAndExceptionsBecomeErrors) {
  auto r = call(R"({"cmd":"fail"})");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "not-found");
  EXPECT_EQ(r["error"]["message"], "nothing here");
  EXPECT_EQ(call(R"({"cmd":"throw"})")["error"]["code"], "failed");
}

TEST(ControlRoles, NamesImplyTheRoleFailSafe) {
  EXPECT_EQ(ControlRegistry::role_implied_by("version"), ControlRole::Read);
  EXPECT_EQ(ControlRegistry::role_implied_by("show.phones"), ControlRole::Read);
  EXPECT_EQ(ControlRegistry::role_implied_by("power.inline"), ControlRole::Admin);
  EXPECT_EQ(ControlRegistry::role_implied_by("reload"), ControlRole::Admin);
  EXPECT_EQ(ControlRegistry::role_implied_by("showx"), ControlRole::Admin);
  EXPECT_EQ(ControlRegistry::role_implied_by("capture.start"), ControlRole::Admin);
}

class ControlRoleTest : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  ControlServer server{io};
  int power_calls = 0;
  void SetUp() override {
    server.add("show.power.inline", [](const nlohmann::json&) -> ControlResult { return nlohmann::json::array(); });
    server.add("power.inline", [this](const nlohmann::json&) -> ControlResult {
      ++power_calls;
      return nlohmann::json::object();
    });
    // An explicit role wins over the name.
    server.add("show.secrets", ControlRole::Admin,
               [](const nlohmann::json&) -> ControlResult { return nlohmann::json(1); });
    ControlAccess access;
    access.read_group = "voiceedge";
    access.admin_group = "voiceedge-admin";
    server.set_access(access);
  }
  nlohmann::json call(const std::string& line, std::optional<ControlRole> role) {
    return nlohmann::json::parse(server.handle_line(line, role, "uid 1000 (pid 42)"));
  }
};

TEST_F(ControlRoleTest, ReadOnlyCallersMayShowButNotChange) {
  EXPECT_EQ(call(R"({"cmd":"show.power.inline"})", ControlRole::Read)["ok"], true);
  auto denied = call(R"({"cmd":"power.inline","args":{"port":"eth1","mode":"off"}})", ControlRole::Read);
  EXPECT_EQ(denied["ok"], false);
  EXPECT_EQ(denied["error"]["code"], "permission-denied");
  EXPECT_NE(denied["error"]["message"].get<std::string>().find("voiceedge-admin"), std::string::npos);
  EXPECT_EQ(power_calls, 0) << "a read-only caller reached the handler";
  EXPECT_EQ(call(R"({"cmd":"show.secrets"})", ControlRole::Read)["error"]["code"], "permission-denied");
  EXPECT_EQ(call(R"({"cmd":"power.inline"})", ControlRole::Admin)["ok"], true);
  EXPECT_EQ(power_calls, 1);
  EXPECT_EQ(server.roles().at("power.inline"), ControlRole::Admin);
  EXPECT_EQ(server.roles().at("show.power.inline"), ControlRole::Read);
}

TEST_F(ControlRoleTest, CallersWithoutARoleMayDoNothing) {
  EXPECT_EQ(call(R"({"cmd":"show.power.inline"})", std::nullopt)["error"]["code"], "permission-denied");
  EXPECT_EQ(call(R"({"cmd":"power.inline"})", std::nullopt)["error"]["code"], "permission-denied");
  EXPECT_EQ(power_calls, 0);
}

TEST(ControlRoles, RoleComesFromUidAndGroups) {
  ControlAccess access;
  access.read_gid = 61001;
  access.admin_gid = 61002;
  const uid_t daemon_uid = 999;
  PeerCredentials root;
  root.uid = 0;
  root.gid = 0;
  EXPECT_EQ(role_of(root, access, daemon_uid), ControlRole::Admin);
  PeerCredentials self;
  self.uid = 999;
  self.gid = 999;
  EXPECT_EQ(role_of(self, access, daemon_uid), ControlRole::Admin);
  PeerCredentials reader;
  reader.uid = 1000;
  reader.gid = 1000;
  reader.groups = {27, 61001};
  EXPECT_EQ(role_of(reader, access, daemon_uid), ControlRole::Read);
  PeerCredentials admin = reader;
  admin.groups.push_back(61002);
  EXPECT_EQ(role_of(admin, access, daemon_uid), ControlRole::Admin);
  PeerCredentials primary;
  primary.uid = 1001;
  primary.gid = 61002;
  EXPECT_EQ(role_of(primary, access, daemon_uid), ControlRole::Admin);
  PeerCredentials stranger;
  stranger.uid = 1002;
  stranger.gid = 1002;
  stranger.groups = {100};
  EXPECT_EQ(role_of(stranger, access, daemon_uid), std::nullopt);
  // Groups that do not exist have no members.
  EXPECT_EQ(role_of(reader, ControlAccess{}, daemon_uid), std::nullopt);
  EXPECT_EQ(resolve_group("61001"), gid_t{61001});
  EXPECT_EQ(resolve_group("root"), gid_t{0});
  EXPECT_EQ(resolve_group("no-such-group-ve"), std::nullopt);
  EXPECT_EQ(resolve_group(""), std::nullopt);
}

// Streams (capture) over a real socket: the header first, then chunks, then the end line. A
// reader that does not read fills its bounded queue; the daemon does not wait for it (other
// clients are answered meanwhile) and counts what it could not queue.
class ControlStreamTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kChunk = 64 * 1024;
  static constexpr int kChunks = 200;  // 12.5 MiB, three times the queue bound

  struct Flood {
    std::shared_ptr<ControlStream> stream;
    std::unique_ptr<boost::asio::steady_timer> timer;
    int sent = 0;
    int queued = 0;
    int dropped = 0;
  };

  void SetUp() override {
    path = std::filesystem::temp_directory_path() / ("ve-stream-" + std::to_string(::getpid()) + ".sock");
    server.add("echo", [](const nlohmann::json& args) -> ControlResult { return args; });
    server.add_stream("flood", [this](const nlohmann::json&, const std::shared_ptr<ControlStream>& stream) {
      flood.stream = stream;
      flood.timer = std::make_unique<boost::asio::steady_timer>(io);
      tick();
      return ControlResult(nlohmann::json{{"what", "flood"}});
    });
    ASSERT_TRUE(server.listen(path));
    runner = std::thread([this] { io.run(); });
  }
  void TearDown() override {
    boost::asio::post(io, [this] {
      if (flood.timer) flood.timer->cancel();
      server.close();
      io.stop();
    });
    if (runner.joinable()) runner.join();
    std::filesystem::remove(path);
  }
  void tick() {
    const std::string chunk(kChunk, 'x');
    if (flood.stream->write(chunk))
      ++flood.queued;
    else
      ++flood.dropped;
    if (++flood.sent == kChunks) {
      flood.stream->finish(nlohmann::json{{"queued", flood.queued}, {"dropped", flood.dropped}});
      return;
    }
    flood.timer->expires_after(std::chrono::milliseconds(2));
    flood.timer->async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }
  int connect_client() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    return fd;
  }
  static std::string read_line(int fd, std::string& buffer) {
    while (buffer.find('\n') == std::string::npos) {
      char b[65536];
      const auto n = ::recv(fd, b, sizeof b, 0);
      if (n <= 0) return "";
      buffer.append(b, static_cast<std::size_t>(n));
    }
    const auto nl = buffer.find('\n');
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    return line;
  }

  boost::asio::io_context io;
  ControlServer server{io};
  std::filesystem::path path;
  std::thread runner;
  Flood flood;  // touched only on the io thread until the end line was read
};

TEST_F(ControlStreamTest, SlowReaderIsDroppedNotWaitedFor) {
  const int slow = connect_client();
  const std::string request = R"({"cmd":"flood"})"
                              "\n";
  ASSERT_EQ(::send(slow, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  // While the slow client reads nothing, another client is answered at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int other = connect_client();
  const std::string echo = R"({"cmd":"echo","args":{"n":7}})"
                           "\n";
  ASSERT_EQ(::send(other, echo.data(), echo.size(), 0), static_cast<ssize_t>(echo.size()));
  std::string other_buffer;
  const auto t0 = std::chrono::steady_clock::now();
  const auto answer = nlohmann::json::parse(read_line(other, other_buffer));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  EXPECT_EQ(answer["data"]["n"], 7);
  ::close(other);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the flood has ended meanwhile

  std::string buffer;
  auto header = nlohmann::json::parse(read_line(slow, buffer));
  EXPECT_EQ(header["ok"], true);
  EXPECT_EQ(header["stream"], true);
  EXPECT_EQ(header["data"]["what"], "flood");
  int chunks = 0;
  nlohmann::json end;
  for (std::string line = read_line(slow, buffer); !line.empty(); line = read_line(slow, buffer)) {
    auto msg = nlohmann::json::parse(line);
    if (msg.contains("end")) {
      end = msg["end"];
      break;
    }
    ASSERT_TRUE(msg.contains("chunk"));
    auto bytes = base64_decode(msg["chunk"].get<std::string>());
    ASSERT_TRUE(bytes);
    EXPECT_EQ(bytes->size(), kChunk);
    ++chunks;
  }
  ::close(slow);
  ASSERT_TRUE(end.is_object()) << "no end line after " << chunks << " chunks";
  EXPECT_EQ(end["queued"].get<int>() + end["dropped"].get<int>(), kChunks);
  EXPECT_GT(end["dropped"].get<int>(), 0) << "the queue did not bound a reader that read nothing";
  EXPECT_EQ(chunks, end["queued"].get<int>()) << "every queued chunk arrives, in one piece";
  // The queue holds at most kMaxQueuedBytes of encoded lines (plus what the socket buffers).
  EXPECT_LT(static_cast<std::size_t>(end["queued"].get<int>()) * kChunk, ControlStream::kMaxQueuedBytes * 2);
}

}  // namespace
}  // namespace ve::daemon

namespace ve::daemon {
namespace {

// A command that answers later (phone.restart waits for the phone): the reply comes when the
// handler completes, exactly once, and the role check happens before the handler runs.
class AsyncControlTest : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  ControlServer server{io};
  ControlDone pending;
  int calls = 0;
  void SetUp() override {
    server.add_async("phone.restart", ControlRole::Admin, [this](const nlohmann::json& args, ControlDone done) {
      ++calls;
      if (args.contains("now")) return done(nlohmann::json{{"now", true}});
      pending = std::move(done);
    });
  }
  std::vector<nlohmann::json> replies;
  void send(const std::string& line, std::optional<ControlRole> role) {
    server.handle_line_async(line, role, "uid 0 (pid 1)",
                             [this](std::string reply) { replies.push_back(nlohmann::json::parse(reply)); });
  }
};

TEST_F(AsyncControlTest, AnswersWhenTheHandlerCompletesAndOnlyOnce) {
  send(R"({"cmd":"phone.restart","args":{"phone":"SEP001122334455"}})", ControlRole::Admin);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(replies.empty());  // nothing until the phone answered
  ASSERT_TRUE(pending);
  auto done = pending;
  done(nlohmann::json{{"status", 200}});
  done(nlohmann::json{{"status", 500}});  // a second completion is dropped
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]["ok"], true);
  EXPECT_EQ(replies[0]["data"]["status"], 200);
}

TEST_F(AsyncControlTest, ErrorsAndImmediateAnswersComeBackToo) {
  send(R"({"cmd":"phone.restart","args":{"now":1}})", ControlRole::Admin);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]["data"]["now"], true);
  send(R"({"cmd":"phone.restart"})", ControlRole::Admin);
  pending(unexpected(ControlError{"not-found", "SEP001122334455 is not registered"}));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1]["error"]["code"], "not-found");
}

TEST_F(AsyncControlTest, ReadOnlyCallersAndBadRequestsNeverReachTheHandler) {
  send(R"({"cmd":"phone.restart","args":{}})", ControlRole::Read);
  send(R"({"cmd":"phone.restart","args":{}})", std::nullopt);
  send(R"({"cmd":"phone.restart","args":[]})", ControlRole::Admin);
  send("not json", ControlRole::Admin);
  EXPECT_EQ(calls, 0);
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0]["error"]["code"], "permission-denied");
  EXPECT_EQ(replies[1]["error"]["code"], "permission-denied");
  EXPECT_EQ(replies[2]["error"]["code"], "bad-request");
  EXPECT_EQ(replies[3]["error"]["code"], "bad-request");
  EXPECT_EQ(server.roles().at("phone.restart"), ControlRole::Admin);
  // The synchronous path (status page, in-process calls) cannot run it.
  EXPECT_EQ(nlohmann::json::parse(server.handle_line(R"({"cmd":"phone.restart"})"))["error"]["code"], "bad-request");
  EXPECT_FALSE(server.call("phone.restart", nlohmann::json::object()));
}

}  // namespace
}  // namespace ve::daemon
