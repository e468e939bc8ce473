// The per-phone result as text and JSON, and the summary (what the lab and the e2e test read).
#include <gtest/gtest.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim {
namespace {

using std::chrono::milliseconds;

PhoneResult registered_phone() {
  PhoneResult r;
  r.mac = *MacAddress::parse("00:11:22:33:44:55");
  r.model = "CP-7841";
  r.ip = "10.10.100.100";
  r.voice_vlan = 100;
  r.config_file = "SEP001122334455.cnf.xml";
  r.registered = true;
  r.registered_with = "10.10.100.1:5060";
  r.lines = {"1001"};
  r.reached_step = 14;
  r.time_to_registered = milliseconds(812);
  r.started_at = milliseconds(5);
  r.steps.push_back({Step::Power, StepOutcome::Ok, "powered", milliseconds(0), milliseconds(0)});
  r.steps.push_back(
      {Step::CtlFile, StepOutcome::Expected, "CTLSEP001122334455.tlv not found", milliseconds(300), milliseconds(4)});
  return r;
}

PhoneResult failed_phone() {
  PhoneResult r;
  r.mac = *MacAddress::parse("00:11:22:33:44:99");
  r.reached_step = 11;
  r.failed_step = Step::Register;
  r.failure = "step 11 (register): 404 Not Found for SEP001122334499";
  r.config_file = "XMLDefault.cnf.xml";
  return r;
}

TEST(Report, JsonCarriesEveryFieldTheE2eTestReads) {
  auto j = nlohmann::json::parse(result_json(registered_phone()));
  EXPECT_EQ(j["mac"], "00:11:22:33:44:55");
  EXPECT_EQ(j["name"], "SEP001122334455");
  EXPECT_EQ(j["registered"], true);
  EXPECT_EQ(j["voice_vlan"], 100);
  EXPECT_EQ(j["time_to_registered_ms"], 812);
  EXPECT_TRUE(j["failure"].is_null());
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][1]["step"], 5);
  EXPECT_EQ(j["steps"][1]["name"], "ctl");
  EXPECT_EQ(j["steps"][1]["outcome"], "expected");
  EXPECT_EQ(j["steps"][1]["at_ms"], 300);
  EXPECT_EQ(j["steps"][1]["ms"], 4);

  auto f = nlohmann::json::parse(result_json(failed_phone()));
  EXPECT_EQ(f["failed_step"], 11);
  EXPECT_TRUE(f["ip"].is_null());
  EXPECT_TRUE(f["time_to_registered_ms"].is_null());
}

TEST(Report, TextLineNamesTheOutcome) {
  const auto ok = result_line(registered_phone(), false);
  EXPECT_NE(ok.find("SEP001122334455 registered"), std::string::npos) << ok;
  EXPECT_NE(ok.find("in 812 ms"), std::string::npos) << ok;
  EXPECT_EQ(ok.find('\n'), std::string::npos);
  const auto verbose = result_line(registered_phone(), true);
  EXPECT_NE(verbose.find("ctl"), std::string::npos) << verbose;
  const auto bad = result_line(failed_phone(), false);
  EXPECT_NE(bad.find("FAILED"), std::string::npos) << bad;
  EXPECT_NE(bad.find("404 Not Found"), std::string::npos) << bad;
}

TEST(Report, SummaryCountsAndPercentiles) {
  auto a = registered_phone();
  auto b = registered_phone();
  b.time_to_registered = milliseconds(100);
  b.started_at = milliseconds(2000);
  auto c = failed_phone();
  const std::vector<const PhoneResult*> all{&a, &b, &c};
  auto j = detail::summary_json(all, 4, milliseconds(3000), false, false, "learned 100");
  const auto& s = j["summary"];
  EXPECT_EQ(s["phones"], 4);
  EXPECT_EQ(s["finished"], 3);
  EXPECT_EQ(s["registered"], 2);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_TRUE(s["all_registered_ms"].is_null());  // not every phone registered
  EXPECT_EQ(s["time_to_registered_ms"]["max"], 812);
  EXPECT_EQ(s["failed_by_step"]["11-register"], 1);
  const auto text = detail::summary_text(j);
  EXPECT_NE(text.find("phones 4: 2 registered, 1 failed, 1 not finished"), std::string::npos) << text;

  auto done = detail::summary_json({&a, &b}, 2, milliseconds(3000), false, false, "");
  EXPECT_EQ(done["summary"]["all_registered_ms"], 2100);  // b started at 2000 and took 100
}

TEST(Report, CallsInJsonTextAndSummary) {
  auto a = registered_phone();
  CallRecord placed;
  placed.direction = CallDirection::Placed;
  placed.peer = "1002";
  placed.final_code = 200;
  placed.reason = "OK";
  placed.ringing = true;
  placed.answered = true;
  placed.ended_by = "caller";
  placed.bye_code = 200;
  placed.setup = milliseconds(42);
  CallRecord busy;
  busy.direction = CallDirection::Placed;
  busy.peer = "1003";
  busy.final_code = 486;
  busy.reason = "Busy Here";
  busy.ended_by = "callee";
  busy.detail = "486 Busy Here";
  a.calls = {placed, busy};
  EXPECT_TRUE(call_completed(placed));
  EXPECT_FALSE(call_completed(busy));
  CallRecord no_bye = placed;
  no_bye.bye_code = 0;
  no_bye.detail = "BYE: no response in 10 s";
  EXPECT_FALSE(call_completed(no_bye));

  auto j = nlohmann::json::parse(result_json(a));
  ASSERT_EQ(j["calls"].size(), 2u);
  EXPECT_EQ(j["calls"][0]["direction"], "placed");
  EXPECT_EQ(j["calls"][0]["peer"], "1002");
  EXPECT_EQ(j["calls"][0]["final_code"], 200);
  EXPECT_EQ(j["calls"][0]["answered"], true);
  EXPECT_EQ(j["calls"][0]["ended_by"], "caller");
  EXPECT_EQ(j["calls"][0]["bye_code"], 200);
  EXPECT_EQ(j["calls"][0]["setup_ms"], 42);
  EXPECT_TRUE(j["calls"][0]["detail"].is_null());
  EXPECT_EQ(j["calls"][1]["final_code"], 486);
  EXPECT_TRUE(j["calls"][1]["bye_code"].is_null());
  EXPECT_EQ(nlohmann::json::parse(result_json(failed_phone()))["calls"], nlohmann::json::array());

  EXPECT_EQ(call_line(placed), "call placed to 1002: 200 OK in 42 ms, rang, answered, ended by the caller, BYE 200");
  EXPECT_EQ(call_line(no_bye).find("(BYE: no response in 10 s)") != std::string::npos, true) << call_line(no_bye);
  CallRecord received;
  received.direction = CallDirection::Received;
  received.peer = "1001";
  EXPECT_EQ(call_line(received), "call received from 1001: no final response");
  const auto line = result_line(a, false);
  EXPECT_NE(line.find("; call placed to 1003: 486 Busy Here"), std::string::npos) << line;

  auto s = detail::summary_json({&a}, 1, milliseconds(1000), true, false, "")["summary"];
  EXPECT_EQ(s["calls"]["placed"], 2);
  EXPECT_EQ(s["calls"]["placed_completed"], 1);
  EXPECT_EQ(s["calls"]["received"], 0);
  EXPECT_NE(detail::summary_text({{"summary", s}}).find("calls placed 2 (1 completed), received 0"), std::string::npos);
}

}  // namespace
}  // namespace ve::phonesim
