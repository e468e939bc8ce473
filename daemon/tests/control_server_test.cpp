#include "daemon/control_server.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ve::daemon
