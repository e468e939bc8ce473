// HTTP 6970 against raw TCP on loopback, so every byte of each answer is visible.
#include <utility>

#include "provision/tests/server_fixture.hpp"

namespace ve::provision {
namespace {

using namespace std::chrono_literals;
using testing::ServerFixture;

class TcpClient {
 public:
  // `source`: another loopback address (127.0.0.2) plays a second host on the VLAN.
  explicit TcpClient(std::uint16_t port, const char* source = "127.0.0.1") : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &local.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~TcpClient() { ::close(fd_); }
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;
  bool connected() const { return connected_; }
  void send(const std::string& s) { (void)::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }

  struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
  };
  // Reads one response; `head` means no body follows whatever Content-Length says.
  std::optional<Response> read(bool head = false) {
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    const auto end = buffer_.find("\r\n\r\n");
    std::string header = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    Response r;
    r.status = std::stoi(header.substr(9, 3));
    std::size_t pos = header.find("\r\n");
    while (pos != std::string::npos) {
      const auto next = header.find("\r\n", pos + 2);
      const auto line = header.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      const auto colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = line.substr(colon + 2);
      pos = next;
    }
    const std::size_t length =
        head || !r.headers.contains("content-length") ? 0 : std::stoul(r.headers["content-length"]);
    while (buffer_.size() < length) {
      if (!fill()) return std::nullopt;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }
  // Everything until the server closes (send requests with Connection: close).
  std::string read_all() {
    while (fill()) {
    }
    return std::exchange(buffer_, {});
  }
  // True when the server closed the connection (read returns 0) within the timeout.
  bool closed_by_peer(std::chrono::milliseconds timeout = 2s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char c;
    return ::recv(fd_, &c, 1, 0) <= 0;
  }

 private:
  bool fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    char chunk[65536];
    const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  int fd_;
  bool connected_ = false;
  std::string buffer_;
};

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}

class HttpServerTest : public ServerFixture {};

TEST_F(HttpServerTest, GetsGeneratedAndStaticFilesOnOneKeepAliveConnection) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");
  TcpClient c(provisioner_->http_port());
  ASSERT_TRUE(c.connected());
  c.send(get("/SEP001122334455.cnf.xml"));
  auto a = c.read();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(a->body, generated("SEP001122334455.cnf.xml"));
  EXPECT_EQ(a->headers["content-type"], "text/xml");
  c.send(get("/kern78xx.14-2-1-0001-14.sbn"));
  auto b = c.read();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(b->headers["content-length"], std::to_string(300 * 1024 + 7));
  EXPECT_EQ(b->body, content_of("kern78xx.14-2-1-0001-14.sbn"));
  c.send(get("/english_united_states/SP-SIP.JAR"));  // case-insensitive fallback
  auto j = c.read();
  ASSERT_TRUE(j);
  EXPECT_EQ(j->body, content_of("English_United_States/sp-sip.jar"));
  EXPECT_EQ(provisioner_->open_http_connections(), 1u);
}

TEST_F(HttpServerTest, HeadGivesLengthWithoutBody) {
  start();
  TcpClient c(provisioner_->http_port());
  c.send("HEAD /dialplan.xml HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["content-length"], std::to_string(content_of("dialplan.xml").size()));
  c.send(get("/softkeys.xml"));  // the next response starts right after the header
  auto next = c.read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "<softKeyCfg/>");
}

TEST_F(HttpServerTest, ServesByteRanges) {
  start();
  const auto full = content_of("kern78xx.14-2-1-0001-14.sbn");
  TcpClient c(provisioner_->http_port());
  c.send(get("/kern78xx.14-2-1-0001-14.sbn", "Range: bytes=100-199\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->headers["content-range"], "bytes 100-199/" + std::to_string(full.size()));
  EXPECT_EQ(r->body, full.substr(100, 100));
  c.send(get("/kern78xx.14-2-1-0001-14.sbn", "Range: bytes=-10\r\n"));
  auto tail = c.read();
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->body, full.substr(full.size() - 10));
  c.send(get("/kern78xx.14-2-1-0001-14.sbn", "Range: bytes=307200-\r\n"));
  auto open_end = c.read();
  ASSERT_TRUE(open_end);
  EXPECT_EQ(open_end->body, full.substr(307200));
  c.send(get("/kern78xx.14-2-1-0001-14.sbn", "Range: bytes=999999-\r\n"));
  auto bad = c.read();
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 416);
  EXPECT_EQ(bad->headers["content-range"], "bytes */" + std::to_string(full.size()));
  c.send(get("/kern78xx.14-2-1-0001-14.sbn", "Range: bytes=0-1,5-6\r\n"));  // several: whole file
  auto multi = c.read();
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->status, 200);
  EXPECT_EQ(multi->body.size(), full.size());
}

TEST_F(HttpServerTest, AnswersErrorsWithTheRightStatus) {
  start();
  TcpClient c(provisioner_->http_port());
  const std::vector<std::pair<std::string, int>> cases = {
      {get("/CTLSEP001122334455.tlv"), 404},
      {get("/nothere.xml"), 404},
      {get("/../secret.txt"), 403},
      {get("/%2e%2e/secret.txt"), 403},
      {get("/escape.txt"), 403},
      {get("/etc/passwd"), 404},
      {get("/dial%zzplan.xml"), 400},
      {"POST /dialplan.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
      {"DELETE /dialplan.xml HTTP/1.1\r\nHost: x\r\n\r\n", 405},
  };
  for (const auto& [request, status] : cases) {
    c.send(request);
    auto r = c.read();
    ASSERT_TRUE(r) << request;
    EXPECT_EQ(r->status, status) << request;
    if (status == 405) {
      EXPECT_EQ(r->headers["allow"], "GET, HEAD");
    }
  }
  EXPECT_TRUE(testing::eventually([&] { return provisioner_->counters().http_bad_method == 2u; }));
}

TEST_F(HttpServerTest, OversizedHeaderIsRefusedAndClosed) {
  start();
  TcpClient c(provisioner_->http_port());
  c.send("GET /dialplan.xml HTTP/1.1\r\nHost: x\r\nX-Junk: " + std::string(20000, 'a') + "\r\n\r\n");
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(testing::eventually([&] { return provisioner_->open_http_connections() == 0u; }));
}

TEST_F(HttpServerTest, GarbageIsABadRequest) {
  start();
  TcpClient c(provisioner_->http_port());
  c.send("\x01\x02 not http at all\r\n\r\n");
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(HttpServerTest, ConnectionLimitClosesExtraConnections) {
  ProvisionerOptions o;
  o.http.max_connections = 2;
  start(o);
  TcpClient a(provisioner_->http_port());
  TcpClient b(provisioner_->http_port());
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->open_http_connections() == 2u; }));
  TcpClient extra(provisioner_->http_port());
  EXPECT_TRUE(extra.closed_by_peer());
  a.send(get("/softkeys.xml"));
  auto r = a.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(provisioner_->counters().http_busy, 1u);
}

TEST_F(HttpServerTest, ClosesWhenClientAsksAndOnHttp10) {
  start();
  TcpClient c(provisioner_->http_port());
  c.send(get("/softkeys.xml", "Connection: close\r\n"));
  ASSERT_TRUE(c.read());
  EXPECT_TRUE(c.closed_by_peer());
  TcpClient old(provisioner_->http_port());
  old.send("GET /softkeys.xml HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(old.read());
  EXPECT_TRUE(old.closed_by_peer());
}

TEST_F(HttpServerTest, PhoneRequestOrderGivesStepEvents) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // the phone is known by its lease, not by what it asks for
  TcpClient c(provisioner_->http_port());
  const std::vector<std::pair<std::string, int>> order = {
      {"/ITLFile.tlv", 404},
      {"/CTLSEP001122334455.tlv", 404},
      {"/SEP001122334455.cnf.xml", 200},
      {"/sip78xx.14-2-1-0001-14.loads", 200},
      {"/dialplan.xml", 200},
      {"/English_United_States/sp-sip.jar", 200},
      {"/softkeys.xml", 200},
      {"/Ringlist-wb.xml", 200},
  };
  for (const auto& [path, status] : order) {
    c.send(get(path));
    auto r = c.read();
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, status) << path;
  }
  ASSERT_TRUE(testing::eventually([&] { return sink_.events().size() == 8u; }));
  const auto events = sink_.events();
  const std::vector<std::pair<Step, Outcome>> expected = {
      {Step::ItlFile, Outcome::Expected}, {Step::CtlFile, Outcome::Expected}, {Step::ConfigFile, Outcome::Ok},
      {Step::FirmwareLoad, Outcome::Ok},  {Step::DialRules, Outcome::Ok},     {Step::Locale, Outcome::Ok},
      {Step::Softkeys, Outcome::Ok},      {Step::Ringtones, Outcome::Ok},
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(events[i].step, expected[i].first) << i;
    EXPECT_EQ(events[i].outcome, expected[i].second) << i;
    EXPECT_EQ(events[i].mac, *MacAddress::parse("00:11:22:33:44:55")) << i;
    EXPECT_EQ(events[i].detail.rfind("http ", 0), 0u) << events[i].detail;
  }
  EXPECT_EQ(provisioner_->recent().size(), 8u);
}

TEST_F(HttpServerTest, PutAndPostWithABodyGet405NotTheBodyLimits400) {
  start();
  for (const std::string method : {"PUT", "POST", "DELETE"}) {
    TcpClient c(provisioner_->http_port());
    c.send(method +
           " /dialplan.xml HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 11\r\n\r\n<x>evil</x>");
    auto r = c.read();
    ASSERT_TRUE(r) << method;
    EXPECT_EQ(r->status, 405) << method;
    EXPECT_EQ(r->headers["allow"], "GET, HEAD") << method;
    EXPECT_TRUE(c.closed_by_peer()) << "the unread body must not be taken for the next request";
  }
  // Without a body the connection stays usable.
  TcpClient c(provisioner_->http_port());
  c.send("OPTIONS /dialplan.xml HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  c.send(get("/dialplan.xml"));
  auto after = c.read();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  // A GET with a body still meets the body limit.
  TcpClient g(provisioner_->http_port());
  g.send("GET /dialplan.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  auto bad = g.read();
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(provisioner_->counters().http_bad_method, 4u);
}

TEST_F(HttpServerTest, PhoneConfigGoesOnlyToTheAddressLeasedToThatPhone) {
  ProvisionerOptions o;
  o.lease_wait = 300ms;
  start(o);
  lease("127.0.0.2", "00:11:22:33:44:55");
  lease("127.0.0.1", "02:00:00:00:00:66");
  auto raw = [&](const char* source, const std::string& path) {
    TcpClient c(provisioner_->http_port(), source);
    c.send(get(path, "Connection: close\r\n"));
    return c.read_all();
  };
  const auto missing = raw("127.0.0.1", "/SEP0011223344AA.cnf.xml");
  ASSERT_EQ(missing.rfind("HTTP/1.1 404", 0), 0u) << missing;
  for (const std::string path : {"/SEP001122334455.cnf.xml", "/sep001122334455.cnf.XML", "//SEP001122334455.cnf.xml",
                                 "/%53EP001122334455.cnf.xml", "/SEP001122334455.cnf.xml?x=1"}) {
    EXPECT_EQ(raw("127.0.0.1", path), missing) << path;
    EXPECT_EQ(raw("127.0.0.3", path), missing) << path << " from an address without a lease";
  }
  TcpClient phone(provisioner_->http_port(), "127.0.0.2");
  phone.send(get("/SEP001122334455.cnf.xml"));
  auto ok = phone.read();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, generated("SEP001122334455.cnf.xml"));
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->recent().size() == 12u; }));
  EXPECT_EQ(provisioner_->counters().http_config_refused, 10u);
  for (const auto& e : sink_.events()) {
    if (e.mac != *MacAddress::parse("00:11:22:33:44:55")) continue;
    if (e.history_only) {
      EXPECT_TRUE(e.ip.empty());
      EXPECT_NE(e.detail.find("refused http"), std::string::npos) << e.detail;
    } else {
      EXPECT_EQ(e.ip, "127.0.0.2") << e.detail;
    }
  }
}

}  // namespace
}  // namespace ve::provision
