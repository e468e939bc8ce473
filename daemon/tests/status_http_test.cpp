#include "daemon/status_http.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <regex>
#include <set>
#include <thread>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

namespace ve::daemon {
namespace {

using namespace std::chrono_literals;

PhoneEvent ev(const char* mac, Step s, Outcome o, std::string detail) {
  PhoneEvent e;
  e.mac = *MacAddress::parse(mac);
  e.step = s;
  e.outcome = o;
  e.detail = std::move(detail);
  return e;
}

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + needle.size())) ++n;
  return n;
}

// The step cells of one element (a row, a strip), in order: "1=ok 2=none ...".
std::string cells(const std::string& html) {
  static const std::regex cell(R"re(data-step="(\d+)" data-outcome="([a-z-]+)")re");
  std::string out;
  for (std::sregex_iterator it(html.begin(), html.end(), cell), end; it != end; ++it)
    out += (out.empty() ? "" : " ") + (*it)[1].str() + "=" + (*it)[2].str();
  return out;
}

std::string row_of(const std::string& page, const std::string& sep) {
  const auto at = page.find("<tr id=\"row-" + sep + "\"");
  if (at == std::string::npos) return "";
  return page.substr(at, page.find("</tr>", at) - at);
}

config::SiteConfigPtr hostile_site() {
  auto site = std::make_shared<config::SiteConfig>();
  site->site.name = "branch <b>1</b>";
  site->provisioning.default_load = "sip78xx.14-2-1-0001-14";
  config::Phone a;
  a.mac = *MacAddress::parse("00:11:22:33:44:55");
  a.model = "CP-7841";
  a.description = "Desk <script>alert(1)</script> & \"co\"";
  a.port = "eth1";
  a.lines.push_back({1, "1001\"><img src=x onerror=alert(2)>", "Desk", "", {}});
  site->phones.push_back(a);
  config::Phone never;
  never.mac = *MacAddress::parse("00:11:22:33:44:77");
  never.model = "CP-8851";
  never.description = "Reception";
  never.port = "eth3";
  site->phones.push_back(never);
  config::Port p1;
  p1.name = "eth1";
  p1.voice_vlan = 100;
  p1.data_vlan = 10;
  site->ports.push_back(p1);
  config::Port p2;
  p2.name = "eth2";
  p2.voice_vlan = 100;
  site->ports.push_back(p2);
  return site;
}

class StatusPage : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  JourneyTracker journey{{}};
  StatusHttpServer server{io, journey, config::Endpoint{"tcp", "127.0.0.1", 0}};
  void SetUp() override {
    auto reg = ev("00:11:22:33:44:55", Step::Register, Outcome::Ok, "registered 1001");
    reg.ip = "10.10.100.100";
    reg.attributes = {{Fact::RegisteredWith, "10.10.100.1"}, {Fact::ActiveLoad, "sip78xx.14-2-1-0001-14"}};
    journey.report(reg);
    auto failed = ev("00:11:22:33:44:66", Step::ConfigFile, Outcome::Failed, "SEP<x>.cnf.xml & \"quotes\"");
    failed.time -= 5min;  // quiet since: stuck, not booting
    journey.report(failed);
  }
};

TEST_F(StatusPage, DashboardRowsCarryFourteenStepCellsWithOutcomes) {
  auto page = server.render("/");
  EXPECT_EQ(page.status, 200);
  const auto reg = row_of(page.body, "SEP001122334455");
  ASSERT_FALSE(reg.empty()) << page.body;
  EXPECT_EQ(cells(reg),
            "1=none 2=ok 3=none 4=none 5=none 6=none 7=none 8=none 9=none 10=none 11=ok 12=none 13=none 14=none");
  EXPECT_NE(reg.find("data-state=\"registered\""), std::string::npos);
  EXPECT_NE(reg.find("10.10.100.1"), std::string::npos);
  const auto stuck = row_of(page.body, "SEP001122334466");
  // Step 7 failed; 3-6 were skipped (required, a later step was seen); 1 is not expected: no port.
  EXPECT_EQ(
      cells(stuck),
      "1=none 2=ok 3=missing 4=missing 5=missing 6=missing 7=failed 8=none 9=none 10=none 11=none 12=none 13=none "
      "14=none");
  EXPECT_NE(stuck.find("data-state=\"stuck\""), std::string::npos);
  EXPECT_NE(stuck.find("SEP&lt;x&gt;.cnf.xml &amp; &quot;quotes&quot;"), std::string::npos);
  EXPECT_EQ(page.body.find("SEP<x>"), std::string::npos) << "unescaped text in HTML";
  // Counters: 2 phones, 1 registered, 1 stuck at step 7.
  EXPECT_NE(page.body.find("data-counter=registered><b>1</b>"), std::string::npos);
  EXPECT_NE(page.body.find("data-stuck-step=\"7\""), std::string::npos);
  for (auto o : status::kOutcomes) EXPECT_NE(page.body.find(std::string("o-") + std::string(o)), std::string::npos);
}

TEST_F(StatusPage, PhoneThatIsStillTalkingIsInProgressNotMissing) {
  journey.report(ev("00:11:22:33:44:88", Step::Dhcp, Outcome::Ok, "ack"));
  const auto row = row_of(server.render("/").body, "SEP001122334488");
  EXPECT_NE(row.find("data-state=\"booting\""), std::string::npos);
  // Step 3 was skipped (missing); step 5 (CTL) is next and the phone is active: in progress.
  EXPECT_EQ(cells(row).substr(0, 35), "1=none 2=ok 3=missing 4=ok 5=in-pro");
}

TEST_F(StatusPage, EverythingFromPhonesNeighboursAndTheSiteFileIsEscaped) {
  auto site = hostile_site();
  server.set_config_source([site] { return site; });
  auto cdp = ev("00:11:22:33:44:55", Step::VoiceVlan, Outcome::Ok, "CDP <neighbour>");
  cdp.attributes = {{Fact::Model, "Cisco IP Phone 8851<svg onload=alert(3)>"}, {Fact::LastCall, "<i>1002</i>"}};
  journey.report(cdp);
  for (const char* target : {"/", "/phone/SEP001122334455", "/phone/SEP001122334455/fragment"}) {
    const auto body = server.render(target).body;
    SCOPED_TRACE(target);
    // "branch <b>1": the counters' own markup is "<b>1</b>registered", so the bare tag is no proof.
    for (const char* raw : {"<script>alert", "<img src=x", "<svg onload", "<i>1002", "branch <b>1", "<neighbour>"})
      EXPECT_EQ(body.find(raw), std::string::npos) << raw;
  }
  const auto dash = server.render("/").body;
  EXPECT_NE(dash.find("Desk &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;"), std::string::npos);
  EXPECT_NE(dash.find("1001&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"), std::string::npos);
  EXPECT_NE(dash.find("branch &lt;b&gt;1&lt;/b&gt;"), std::string::npos);
  // The model CDP reports differs from the site file's: the row says so.
  const auto row = row_of(dash, "SEP001122334455");
  EXPECT_NE(row.find("site file says CP-7841, CDP/LLDP reports Cisco IP Phone 8851&lt;svg"), std::string::npos) << row;
  // A listed phone never seen has a row and a page of its own.
  const auto never = row_of(dash, "SEP001122334477");
  EXPECT_NE(never.find("data-state=\"never-seen\""), std::string::npos);
  EXPECT_EQ(count(never, "data-outcome=\"none\""), 14u);
  EXPECT_EQ(server.render("/phone/00:11:22:33:44:77").status, 200);
  // Control characters from the wire do not reach the page.
  EXPECT_EQ(status::html_escape("a\x01"
                                "b"),
            "a\xEF\xBF\xBD"
            "b");
}

// CDP/LLDP strings are raw bytes from the wire: JSON answers and the event stream carry them
// with U+FFFD in place of what is not UTF-8, instead of failing the request.
TEST_F(StatusPage, BytesThatAreNotUtf8StillGiveJson) {
  auto cdp = ev("00:11:22:33:44:99", Step::VoiceVlan, Outcome::Ok, "cdp neighbour \xff\xfe");
  cdp.attributes = {{Fact::Model, "Cisco \xc3("}};
  journey.report(cdp);
  for (const char* target : {"/api/phones", "/api/dashboard", "/fragment/dashboard"}) {
    SCOPED_TRACE(target);
    const auto page = server.render(target);
    EXPECT_EQ(page.status, 200);
    const auto parsed = nlohmann::json::parse(page.body, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << page.body.substr(0, 200);
    EXPECT_NE(page.body.find("\xEF\xBF\xBD"), std::string::npos);
  }
  EXPECT_EQ(server.render("/phone/SEP001122334499").status, 200);
}

TEST(StatusModel, ModelMismatchComparesModelNumbers) {
  EXPECT_EQ(status::model_mismatch("CP-7841", "Cisco IP Phone 7841"), "");
  EXPECT_EQ(status::model_mismatch("CP-7841", ""), "");
  EXPECT_EQ(status::model_mismatch("CP-8851", "CP-8851NR"), "site file says CP-8851, CDP/LLDP reports CP-8851NR");
  EXPECT_NE(status::model_mismatch("CP-7841", "Cisco IP Phone 8845"), "");
  EXPECT_EQ(status::clock_time("2026-12-01T12:03:44.123Z"), "12:03:44");
}

TEST_F(StatusPage, PhonePageAcceptsEveryMacSpelling) {
  for (const char* key : {"SEP001122334455", "00:11:22:33:44:55", "00-11-22-33-44-55", "0011.2233.4455", "001122334455",
                          "00%3A11%3A22%3A33%3A44%3A55", "10.10.100.100"}) {
    SCOPED_TRACE(key);
    auto page = server.render(std::string("/phone/") + key);
    ASSERT_EQ(page.status, 200);
    for (const char* s : {"Device Status", "Registration", "IPv4 Address", "10.10.100.100", "Active Load ID",
                          "sip78xx.14-2-1-0001-14", "Inactive Load ID", "Download Status", "<svg id=timeline"})
      EXPECT_NE(page.body.find(s), std::string::npos) << s;
    EXPECT_EQ(count(page.body, "data-step=\""), 14u + 2u);  // the strip, plus one dot per event in the chart
  }
  EXPECT_EQ(server.render("/phone/SEP00AABBCCDDEE").status, 404);
  EXPECT_EQ(server.render("/phone/%3Cscript%3E").body.find("<script>"), std::string::npos);
  EXPECT_EQ(server.render("/nothing").status, 404);
}

TEST_F(StatusPage, TimelinePlacesEventsBySecondsSincePowerOn) {
  const auto t0 = std::chrono::system_clock::now() - 1min;
  auto at = [&](Step s, Outcome o, std::chrono::milliseconds dt) {
    auto e = ev("00:11:22:33:44:99", s, o, "x");
    e.time = t0 + dt;
    e.port = "eth2";
    journey.report(e);
  };
  at(Step::Power, Outcome::Ok, 0ms);
  at(Step::Dhcp, Outcome::Ok, 1000ms);
  at(Step::CtlFile, Outcome::Expected, 9000ms);  // a slow TFTP: far to the right
  const auto* p = journey.find("00:11:22:33:44:99");
  const auto svg = status::render_timeline_svg(journey.journey_json(*p));
  static const std::regex dot(R"re(<circle class="ev o-([a-z-]+)" data-step="(\d+)" cx="([0-9.]+)")re");
  std::vector<std::pair<int, double>> dots;
  for (std::sregex_iterator it(svg.begin(), svg.end(), dot), end; it != end; ++it)
    dots.emplace_back(std::stoi((*it)[2]), std::stod((*it)[3]));
  ASSERT_EQ(dots.size(), 4u) << svg;  // power, the inferred firmware boot, dhcp, ctl
  // x grows with time: power at the left edge, DHCP at ~1/9.5 of the plot, CTL near the end.
  EXPECT_EQ(dots[0].first, 1);
  EXPECT_LT(dots[0].second, dots[2].second);
  EXPECT_GT(dots.back().second - dots[2].second, 5 * (dots[2].second - dots[0].second));
  EXPECT_NE(svg.find("seconds since power-on"), std::string::npos);
}

TEST_F(StatusPage, PhonePageSaysHowManyOlderEventsWereNotKeptAndStillDrawsTheBoot) {
  const auto t0 = std::chrono::system_clock::now() - 1min;
  auto at = [&](Step s, std::chrono::milliseconds dt) {
    auto e = ev("00:11:22:33:44:99", s, Outcome::Ok, "x");
    e.time = t0 + dt;
    e.port = "eth2";
    journey.report(e);
  };
  at(Step::Power, 0ms);
  at(Step::Dhcp, 1000ms);  // step 2 inferred here
  at(Step::ConfigFile, 2000ms);
  at(Step::Register, 3000ms);
  EXPECT_EQ(server.render("/phone/SEP001122334499").body.find("history-dropped"), std::string::npos);
  for (int i = 0; i < 100; ++i) at(Step::Register, 4000ms + std::chrono::milliseconds(i * 100));
  const auto page = server.render("/phone/SEP001122334499");
  ASSERT_EQ(page.status, 200);
  const std::uint64_t dropped = 5 + 100 - JourneyTracker::kHistoryPerPhone;
  EXPECT_NE(page.body.find(fmt::format("data-dropped=\"{}\"", dropped)), std::string::npos) << page.body;
  EXPECT_NE(page.body.find(fmt::format("{} older event(s) not kept", dropped)), std::string::npos);
  // The chart still starts at power-on and shows where each step of the boot was first reached.
  const auto svg = status::render_timeline_svg(journey.journey_json(*journey.find("00:11:22:33:44:99")));
  static const std::regex dot(R"re(<circle class="ev o-[a-z-]+" data-step="(\d+)")re");
  std::set<int> steps;
  for (std::sregex_iterator it(svg.begin(), svg.end(), dot), end; it != end; ++it) steps.insert(std::stoi((*it)[1]));
  EXPECT_EQ(steps, (std::set<int>{1, 2, 4, 7, 11})) << svg;
  EXPECT_EQ(svg.find("earlier boots"), std::string::npos) << svg;
}

TEST_F(StatusPage, DownloadLinksOnlyWhenTheRouteExists) {
  EXPECT_EQ(server.render("/phone/SEP001122334455").body.find("report.tar.gz"), std::string::npos);
  EXPECT_EQ(server.render("/phone/SEP001122334455/report.tar.gz").status, 404);
  server.add_download({"report.tar.gz", "download report", nullptr, [](const MacAddress& mac) {
                         return StatusHttpServer::Page{200, "application/gzip", "report of " + mac.sep_name(), ""};
                       }});
  server.add_download({"boot.pcapng", "download last boot capture",
                       [](const MacAddress&) { return false; },  // no capture for any phone yet
                       [](const MacAddress&) {
                         return StatusHttpServer::Page{200, "application/octet-stream", "", ""};
                       }});
  const auto body = server.render("/phone/SEP001122334455").body;
  EXPECT_NE(body.find("href=\"/phone/00:11:22:33:44:55/report.tar.gz\""), std::string::npos);
  EXPECT_EQ(body.find("boot.pcapng"), std::string::npos);
  auto report = server.render("/phone/00-11-22-33-44-55/report.tar.gz");
  EXPECT_EQ(report.status, 200);
  EXPECT_EQ(report.body, "report of SEP001122334455");
  EXPECT_NE(report.content_disposition.find("SEP001122334455-report.tar.gz"), std::string::npos);
  EXPECT_EQ(server.render("/phone/SEP001122334455/boot.pcapng").status, 404);
}

TEST_F(StatusPage, PortsViewShowsPowerNeighboursAndVlans) {
  auto site = hostile_site();
  server.set_config_source([site] { return site; });
  server.set_control([](const std::string& line) -> std::string {
    const auto cmd = nlohmann::json::parse(line)["cmd"].get<std::string>();
    if (cmd == "show.power.inline")
      return R"({"ok":true,"data":{"driver":"sim","budget_w":370.0,"allocated_w":15.4,"used_w":6.3,"remaining_w":354.6,
        "ports":[{"interface":"eth1","oper":"delivering","power_w":6.3,"allocated_w":15.4,"class":2,"detail":""},
                 {"interface":"eth2","oper":"searching","power_w":0.0,"allocated_w":0.0,"class":null,"detail":""}]}})";
    if (cmd == "show.cdp.neighbors")
      return R"({"ok":true,"data":{"neighbors":[{"local_port":"eth1","protocol":"cdp","device_id":"SEP001122334455",
        "platform":"Cisco IP Phone 7841<b>","port_id":"Port 1","addresses":["10.10.100.100"]}],"ports":[]}})";
    return R"({"ok":false,"error":{"code":"unknown-command","message":"no"}})";
  });
  const auto body = server.render("/").body;
  EXPECT_NE(body.find("data-port=\"eth1\" data-link=\"up\" data-poe=\"delivering\" data-watts=\"6.3\""),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("data-port=\"eth2\" data-link=\"unknown\" data-poe=\"searching\" data-watts=\"0.0\""),
            std::string::npos);
  EXPECT_NE(body.find("data-remaining-w=\"354.6\""), std::string::npos);
  EXPECT_NE(body.find("V100 · D10"), std::string::npos);
  EXPECT_NE(body.find("Cisco IP Phone 7841&lt;b&gt;"), std::string::npos);
  const auto api = nlohmann::json::parse(server.render("/api/dashboard").body);
  EXPECT_EQ(api["ports"]["ports"][0]["power_w"].get<double>(), 6.3);
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

TEST_F(StatusPage, ApiAndAssets) {
  EXPECT_EQ(nlohmann::json::parse(server.render("/api/phones").body).size(), 2u);
  const auto dash = nlohmann::json::parse(server.render("/api/dashboard").body);
  EXPECT_EQ(dash["phones"].size(), 2u);
  EXPECT_EQ(dash["counters"]["registered"], 1);
  EXPECT_EQ(server.render("/static/app.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(server.render("/static/app.js").body.find("EventSource"), std::string::npos);
  EXPECT_NE(server.render("/static/app.css").body.find("data-outcome"), std::string::npos);
}

// ---- over real sockets: the server runs its io_context on a thread of its own ------------------

class LiveServer : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  JourneyTracker journey{{}};
  std::unique_ptr<StatusHttpServer> server;
  std::thread thread;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;

  template <typename F>
  auto in_io(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io, [&task] { task(); });
    return result.get();
  }
  void start(StatusHttpServer::Limits limits) {
    server = std::make_unique<StatusHttpServer>(io, journey, config::Endpoint{"tcp", "127.0.0.1", 0}, limits);
    ASSERT_TRUE(server->start());
    work.emplace(io.get_executor());
    thread = std::thread([this] { io.run(); });
  }
  void TearDown() override {
    if (thread.joinable()) {
      in_io([this] { server.reset(); });
      work.reset();
      io.stop();
      thread.join();
    }
  }
  StatusHttpServer::Stats stats() {
    return in_io([this] { return server->stats(); });
  }
  int connect_client(int rcvbuf = 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  static void send_all(int fd, const std::string& s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads what arrives within `wait` (until `until` is seen, if given).
  static std::string read_for(int fd, std::chrono::milliseconds wait, const std::string& until = "") {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) continue;
      char buf[65536];
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    return out;
  }
  std::string get(const std::string& path) {
    const int fd = connect_client();
    if (fd < 0) return "";
    send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    auto r = read_for(fd, 5s);
    ::close(fd);
    return r;
  }
};

TEST_F(LiveServer, EventStreamPushesRowsOfPhonesThatBootWhileItIsOpen) {
  StatusHttpServer::Limits limits;
  limits.tick = 20ms;
  start(limits);
  const int fd = connect_client();
  send_all(fd, "GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
  const auto hello = read_for(fd, 3s, "event: hello");
  EXPECT_NE(hello.find("Content-Type: text/event-stream"), std::string::npos) << hello;
  in_io([this] { journey.report(ev("00:11:22:33:44:aa", Step::Dhcp, Outcome::Ok, "ack <10.10.100.9>")); });
  const auto got = read_for(fd, 3s, "event: counters");
  EXPECT_NE(got.find("event: row\ndata: {\"html\":\"<tr id=\\\"row-SEP0011223344AA\\\""), std::string::npos) << got;
  EXPECT_NE(got.find("ack &lt;10.10.100.9&gt;"), std::string::npos);
  EXPECT_EQ(got.find("event: phone"), std::string::npos) << "phone events are for phone pages";
  // A phone page's stream hears of its phone only.
  const int other = connect_client();
  send_all(other, "GET /events?phone=0011.2233.44bb HTTP/1.1\r\nHost: t\r\n\r\n");
  const int mine = connect_client();
  send_all(mine, "GET /events?phone=00-11-22-33-44-AA HTTP/1.1\r\nHost: t\r\n\r\n");
  read_for(other, 3s, "event: hello");
  read_for(mine, 3s, "event: hello");
  in_io([this] { journey.report(ev("00:11:22:33:44:aa", Step::CtlFile, Outcome::Expected, "not found")); });
  const auto page = read_for(mine, 3s, "event: phone");
  EXPECT_NE(page.find("event: phone\ndata: {\"mac\":\"00:11:22:33:44:aa\"}"), std::string::npos) << page;
  EXPECT_EQ(page.find("event: row"), std::string::npos);
  EXPECT_EQ(read_for(other, 300ms).find("event: phone"), std::string::npos);
  ::close(other);
  ::close(mine);
  ::close(fd);
}

TEST_F(LiveServer, SlowReaderIsResyncedAndCostsBoundedMemoryWhileOthersAreServed) {
  StatusHttpServer::Limits limits;
  limits.tick = 5ms;
  limits.stream_queue_bytes = 256 * 1024;
  start(limits);
  // The slow page: a tiny receive window and it never reads.
  const int slow = connect_client(2048);
  send_all(slow, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  const int fast = connect_client();
  send_all(fast, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  read_for(fast, 2s, "event: hello");
  const std::string detail(1500, 'x');
  std::string fast_got;
  std::size_t fast_resyncs = 0;
  for (int round = 0; round < 400 && stats().stream_resyncs == 0; ++round) {
    in_io([&] {
      for (int i = 0; i < 10; ++i)
        journey.report(ev(fmt::format("00:11:22:33:{:02x}:{:02x}", round % 256, i).c_str(), Step::ConfigFile,
                          Outcome::Failed, detail + std::to_string(round)));
    });
    auto chunk = read_for(fast, 10ms);
    fast_resyncs += count(chunk, "event: resync");
    fast_got += chunk.substr(0, 64);
  }
  const auto s = stats();
  EXPECT_GE(s.stream_resyncs, 1u) << "the slow reader never overflowed its queue";
  // Bounded: the limit plus at most the message being written and the resync line.
  EXPECT_LE(s.stream_queue_peak, limits.stream_queue_bytes + 32 * 1024);
  EXPECT_EQ(fast_resyncs, 0u) << "a reader that keeps up must not be resynced";
  // The daemon still answers everyone else at once.
  EXPECT_NE(get("/metrics").find("voiceedge_phones "), std::string::npos);
  EXPECT_EQ(s.streams, 2u);
  ::close(slow);
  ::close(fast);
}

TEST_F(LiveServer, ThousandConnectionsAreCappedNotExhaustingDescriptors) {
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  rlimit more = old;
  more.rlim_cur = std::min<rlim_t>(old.rlim_max, 4096);
  ::setrlimit(RLIMIT_NOFILE, &more);
  if (more.rlim_cur < 1300) GTEST_SKIP() << "needs 1300 descriptors for the clients, hard limit " << old.rlim_max;
  StatusHttpServer::Limits limits;  // the defaults the daemon runs with
  start(limits);
  std::vector<int> clients;
  for (int i = 0; i < 1100; ++i) {
    const int fd = connect_client();
    if (fd >= 0) clients.push_back(fd);
  }
  ASSERT_EQ(clients.size(), 1100u);
  // Wait until the server has taken every connection in (accepted and kept, or refused).
  for (int i = 0; i < 300; ++i) {
    const auto st = stats();
    if (st.connections + st.refused >= 1100) break;
    std::this_thread::sleep_for(10ms);
  }
  const auto st = stats();
  EXPECT_LE(st.connections, limits.max_per_address);
  EXPECT_EQ(st.connections + st.refused, 1100u);
  // A refused client was told why.
  EXPECT_NE(read_for(clients.back(), 2s).find("503"), std::string::npos);
  for (int fd : clients) ::close(fd);
  for (int i = 0; i < 300 && stats().connections > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_NE(get("/").find("200 OK"), std::string::npos) << "served again once the crowd left";
  ::setrlimit(RLIMIT_NOFILE, &old);
}

TEST_F(LiveServer, OutOfDescriptorsPausesAcceptInsteadOfSpinning) {
  start(StatusHttpServer::Limits{});
  // Fill every descriptor the process may have, then let three clients knock: their sockets
  // exist before, connecting needs no new descriptor, accepting does.
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  int highest = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d)) highest = std::max(highest, std::atoi(e->d_name));
    ::closedir(d);
  }
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(highest + 1);
  std::vector<int> fillers;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(server->port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in_io([&] {
    ::setrlimit(RLIMIT_NOFILE, &tight);
    for (int fd; (fd = ::dup(0)) >= 0;) fillers.push_back(fd);
    for (int fd : clients) ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  });
  std::this_thread::sleep_for(500ms);
  const auto paused = stats();
  in_io([&] {
    for (int fd : fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
  });
  EXPECT_GE(paused.accept_pauses, 1u);
  // Backing off from 50 ms: 50+100+200 fit in half a second; a spinning loop would count thousands.
  EXPECT_LE(paused.accept_pauses, 6u) << "accept retried without pausing";
  EXPECT_EQ(paused.connections, 0u);
  // Once descriptors are free again the waiting clients are served.
  send_all(clients[0], "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_NE(read_for(clients[0], 3s).find("200 OK"), std::string::npos);
  for (int fd : clients) ::close(fd);
}

TEST_F(LiveServer, StreamCapAnswersServiceUnavailable) {
  StatusHttpServer::Limits limits;
  limits.max_streams = 1;
  start(limits);
  const int first = connect_client();
  send_all(first, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_NE(read_for(first, 2s, "event: hello").find("event: hello"), std::string::npos);
  const auto second = get("/events");
  EXPECT_NE(second.find("503"), std::string::npos) << second;
  EXPECT_NE(get("/").find("200 OK"), std::string::npos);
  ::close(first);
}

}  // namespace
}  // namespace ve::daemon
