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

}  // namespace
}  // namespace ve::daemon
