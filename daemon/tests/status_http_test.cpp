#include "daemon/status_http.hpp"

#include <gtest/gtest.h>

namespace ve::daemon {
namespace {

PhoneEvent ev(const char* mac, Step s, Outcome o, std::string detail) {
  PhoneEvent e;
  e.mac = *MacAddress::parse(mac);
  e.step = s;
  e.outcome = o;
  e.detail = std::move(detail);
  return e;
}

class StatusPage : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  JourneyTracker journey{{}};
  StatusHttpServer server{io, journey, config::Endpoint{"tcp", "127.0.0.1", 0}};
  void SetUp() override {
    auto reg = ev("00:11:22:33:44:55", Step::Register, Outcome::Ok, "registered 1001");
    reg.ip = "10.10.100.100";
    reg.attributes = {{"registered_with", "10.10.100.1"}, {"active_load", "sip78xx.14-2-1-0001-14"}};
    journey.report(reg);
    journey.report(ev("00:11:22:33:44:66", Step::ConfigFile, Outcome::Failed, "SEP<x>.cnf.xml & \"quotes\""));
  }
};

TEST_F(StatusPage, IndexListsPhonesWithEscapedReasons) {
  auto page = server.render("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("SEP001122334455"), std::string::npos);
  EXPECT_NE(page.body.find("Registered with 10.10.100.1"), std::string::npos);
  EXPECT_NE(page.body.find("SEP&lt;x&gt;.cnf.xml &amp; &quot;quotes&quot;"), std::string::npos);
  EXPECT_EQ(page.body.find("SEP<x>"), std::string::npos) << "unescaped text in HTML";
}

TEST_F(StatusPage, PhonePageShowsDeviceStatusAndSteps) {
  auto page = server.render("/phone/SEP001122334455");
  EXPECT_EQ(page.status, 200);
  for (const char* s :
       {"Device Status", "IPv4 Address", "10.10.100.100", "Active Load ID", "sip78xx.14-2-1-0001-14", "register"})
    EXPECT_NE(page.body.find(s), std::string::npos) << s;
  EXPECT_EQ(server.render("/phone/SEP00AABBCCDDEE").status, 404);
  EXPECT_EQ(server.render("/nothing").status, 404);
}

TEST_F(StatusPage, MetricsCountRegisteredAndStuckPhones) {
  auto page = server.render("/metrics");
  EXPECT_NE(page.body.find("voiceedge_phones 2\n"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("voiceedge_phones_registered 1\n"), std::string::npos);
  EXPECT_NE(page.body.find("voiceedge_phones_stuck{step=\"7\"} 1\n"), std::string::npos);
}

TEST_F(StatusPage, MetricsCarryWhatComponentsAdd) {
  server.add_metrics([] { return std::string("voiceedge_provision_config_refused_total{transport=\"tftp\"} 3\n"); });
  auto page = server.render("/metrics");
  EXPECT_NE(page.body.find("voiceedge_phones 2\n"), std::string::npos);
  EXPECT_NE(page.body.find("voiceedge_provision_config_refused_total{transport=\"tftp\"} 3\n"), std::string::npos)
      << page.body;
}

TEST_F(StatusPage, ApiIsJson) {
  auto page = server.render("/api/phones");
  auto j = nlohmann::json::parse(page.body);
  EXPECT_EQ(j.size(), 2u);
}

}  // namespace
}  // namespace ve::daemon
