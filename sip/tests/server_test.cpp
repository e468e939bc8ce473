// The Server over real loopback sockets (port 0): UDP answers, TCP framing, connection limits,
// idle timeout, persistence across a restart.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <random>
#include <thread>

#include <boost/asio.hpp>
#include <fmt/format.h>

#include "sip/digest.hpp"
#include "sip/sip.hpp"

namespace ve::sip {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

config::SiteConfigPtr site(const std::filesystem::path& state) {
  auto c = std::make_shared<config::SiteConfig>();
  c->state_dir = state.string();
  c->sip.listen = {{"udp", "127.0.0.1", 0}, {"tcp", "127.0.0.1", 0}};
  c->sip.realm = "test";
  config::Phone p;
  p.mac = *MacAddress::parse("00:11:22:33:44:55");
  p.lines.push_back(config::Line{1, "2001", "", "2001", config::Secret("pw2001")});
  c->phones = {p};
  return c;
}

std::string request(const std::string& method, int cseq, const std::string& transport = "UDP",
                    const std::string& extra = "") {
  return fmt::format(
      "{} sip:test SIP/2.0\r\nVia: SIP/2.0/{} 127.0.0.1:5999;branch=z9hG4bK{};rport\r\nFrom: <sip:2001@test>;tag=a\r\n"
      "To: <sip:2001@test>\r\nCall-ID: srv-{}\r\nCSeq: {} {}\r\n{}Content-Length: 0\r\n\r\n",
      method, transport, cseq, method, cseq, method, extra);
}

// A Server on its own io_context thread.
class Running {
 public:
  explicit Running(const std::filesystem::path& state, ServerOptions options = {})
      : server_(io_, site(state), sink_, options) {
    auto r = server_.start();
    EXPECT_TRUE(r) << (r ? "" : r.error());
    thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
  }
  ~Running() {
    asio::post(io_, [this] {
      server_.stop();
      io_.stop();
    });
    thread_.join();
  }
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(f);
    auto fut = task.get_future();
    asio::post(io_, [&task] { task(); });
    return fut.get();
  }
  Server& server() { return server_; }

 private:
  asio::io_context io_;
  NullEventSink sink_;
  Server server_;
  std::thread thread_;
};

struct TempState {
  TempState()
      : path(std::filesystem::temp_directory_path() /
             fmt::format("ve-sip-srv-{}-{}", ::getpid(), std::random_device{}())) {}
  ~TempState() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

// Reads from a TCP socket until `count` whole responses arrived (or a timeout).
std::vector<std::string> read_responses(asio::ip::tcp::socket& s, std::size_t count) {
  StreamFramer framer;
  std::vector<std::string> out;
  std::array<char, 4096> buf{};
  s.non_blocking(false);
  ::timeval tv{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (out.size() < count) {
    boost::system::error_code ec;
    const auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    framer.append(std::string_view(buf.data(), n));
    while (true) {
      auto f = framer.next();
      if (!f || !*f) break;
      out.emplace_back((*f)->bytes);
      framer.consume();
    }
  }
  return out;
}

// The Authorization header answering the 401 `challenge` for a REGISTER to sip:test.
std::string answer(const std::string& challenge) {
  const auto n0 = challenge.find("nonce=\"") + 7;
  const std::string nonce = challenge.substr(n0, challenge.find('"', n0) - n0);
  DigestCredentials c;
  c.username = "2001";
  c.realm = "test";
  c.nonce = nonce;
  c.uri = "sip:test";
  return fmt::format(
      "Authorization: Digest username=\"2001\", realm=\"test\", nonce=\"{}\", uri=\"sip:test\", response=\"{}\"\r\n",
      nonce, digest_response(c, "pw2001", "REGISTER"));
}

// REGISTER over an open TCP connection with the digest exchange; returns the final response.
std::string register_tcp(asio::ip::tcp::socket& s, int cseq, const std::string& headers) {
  asio::write(s, asio::buffer(request("REGISTER", cseq, "TCP", headers)));
  auto challenge = read_responses(s, 1);
  if (challenge.size() != 1) return {};
  asio::write(s, asio::buffer(request("REGISTER", cseq + 1, "TCP", headers + answer(challenge[0]))));
  auto final_response = read_responses(s, 1);
  return final_response.empty() ? std::string() : final_response[0];
}

TEST(SipServer, AnswersOverUdp) {
  TempState state;
  Running r(state.path);
  asio::io_context io;
  asio::ip::udp::socket s(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto msg = request("OPTIONS", 1);
  s.send_to(asio::buffer(msg), asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), r.server().udp_port()));
  ::timeval tv{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::array<char, 4096> buf{};
  asio::ip::udp::endpoint from;
  const auto n = s.receive_from(asio::buffer(buf), from);
  auto m = parse_message(std::string_view(buf.data(), n));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->value(HeaderType::Via).find(fmt::format("rport={}", s.local_endpoint().port())), std::string_view::npos);
}

TEST(SipServer, FramesTcpStreamsAcrossAndWithinReads) {
  TempState state;
  Running r(state.path);
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), r.server().tcp_port()));
  // Two messages in one write, then a third in two writes with a pause between.
  const auto two = request("OPTIONS", 1, "TCP") + request("OPTIONS", 2, "TCP");
  asio::write(s, asio::buffer(two));
  const auto third =
      request("REGISTER", 3, "TCP", "Contact: <sip:2001@127.0.0.1:5999;transport=tcp>\r\nExpires: 600\r\n");
  asio::write(s, asio::buffer(third.substr(0, 40)));
  std::this_thread::sleep_for(50ms);
  asio::write(s, asio::buffer(third.substr(40)));
  auto responses = read_responses(s, 3);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_NE(responses[0].find("CSeq: 1 OPTIONS"), std::string::npos);
  EXPECT_NE(responses[1].find("CSeq: 2 OPTIONS"), std::string::npos);
  EXPECT_NE(responses[2].find("SIP/2.0 401 Unauthorized"), std::string::npos);
  EXPECT_NE(responses[2].find("CSeq: 3 REGISTER"), std::string::npos);
  asio::write(s, asio::buffer(request(
                     "REGISTER", 4, "TCP",
                     "Contact: <sip:2001@127.0.0.1:5999;transport=tcp>\r\nExpires: 600\r\n" + answer(responses[2]))));
  ASSERT_EQ(read_responses(s, 1).size(), 1u);
  auto regs = r.on_loop([&] { return r.server().registrations(); });
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].transport, Transport::Tcp);
  // A keep-alive ping gets a pong.
  asio::write(s, asio::buffer(std::string("\r\n\r\n")));
  std::array<char, 8> pong{};
  ::timeval tv{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  boost::system::error_code ec;
  const auto n = s.read_some(asio::buffer(pong), ec);
  EXPECT_EQ(std::string(pong.data(), n), "\r\n");
}

TEST(SipServer, LimitsConnectionsPerSourceAndClosesIdleOnes) {
  TempState state;
  ServerOptions options;
  options.tcp_max_per_source = 2;
  options.tcp_idle_timeout = 1s;
  Running r(state.path, options);
  asio::io_context io;
  const asio::ip::tcp::endpoint at(asio::ip::make_address("127.0.0.1"), r.server().tcp_port());
  std::vector<asio::ip::tcp::socket> sockets;
  for (int i = 0; i < 3; ++i) {
    sockets.emplace_back(io);
    sockets.back().connect(at);
  }
  // The third is accepted by the kernel and then closed by the server: reading sees EOF.
  std::array<char, 16> buf{};
  ::timeval tv{5, 0};
  ::setsockopt(sockets[2].native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  boost::system::error_code ec;
  sockets[2].read_some(asio::buffer(buf), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  EXPECT_EQ(r.on_loop([&] { return r.server().counters().tcp_rejected; }), 1u);
  // The first two are closed after the idle timeout.
  ::setsockopt(sockets[0].native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockets[0].read_some(asio::buffer(buf), ec);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_GE(r.on_loop([&] { return r.server().counters().tcp_idle_closed; }), 1u);
}

TEST(SipServer, KeepsRegistrationsAcrossRestart) {
  TempState state;
  {
    Running r(state.path);
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), r.server().tcp_port()));
    EXPECT_NE(register_tcp(s, 1, "Contact: <sip:2001@127.0.0.1:5999>\r\nExpires: 600\r\n").find("SIP/2.0 200 OK"),
              std::string::npos);
  }
  Running again(state.path);
  auto regs = again.on_loop([&] { return again.server().registrations(); });
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].contact, "sip:2001@127.0.0.1:5999");
  EXPECT_LE(regs[0].expires_in_s, 600);
  EXPECT_GT(regs[0].expires_in_s, 590);
}

TEST(SipServer, KeepsTheFlowTokenKeyAcrossRestart) {
  TempState state;
  const auto file = state.path / "sip-flow-key";
  std::string first;
  {
    Running r(state.path);
    ASSERT_TRUE(std::filesystem::exists(file));
    first = read_all(file);
    EXPECT_EQ(first.size(), 32u);
    EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  Running again(state.path);
  EXPECT_EQ(read_all(file), first) << "the Paths the cluster stored stay valid";
}

TEST(SipServer, UdpAnswersComeFromTheAddressTheRequestWasSentTo) {
  // Bound to 0.0.0.0, asked at 127.0.0.2 by a client on 127.0.0.1: without IP_PKTINFO the kernel
  // would pick 127.0.0.1 as the source and the phone would drop the answer.
  TempState state;
  auto cfg = std::make_shared<config::SiteConfig>(*site(state.path));
  cfg->sip.listen = {{"udp", "0.0.0.0", 0}};
  asio::io_context server_io;
  NullEventSink sink;
  Server server(server_io, cfg, sink);
  ASSERT_TRUE(server.start());
  std::thread loop([&] {
    auto guard = asio::make_work_guard(server_io);
    server_io.run();
  });
  const auto port = server.udp_port();
  asio::io_context io;
  asio::ip::udp::socket s(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto msg = request("OPTIONS", 1);
  s.send_to(asio::buffer(msg), asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.2"), port));
  ::timeval tv{5, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::array<char, 4096> buf{};
  asio::ip::udp::endpoint from;
  boost::system::error_code ec;
  const auto n = s.receive_from(asio::buffer(buf), from, 0, ec);
  asio::post(server_io, [&] {
    server.stop();
    server_io.stop();
  });
  loop.join();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(from.address().to_string(), "127.0.0.2");
  EXPECT_EQ(from.port(), port);
  auto m = parse_message(std::string_view(buf.data(), n));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
}

TEST(SipServer, ConflictingContentLengthsOverTcpGet400AndTheConnectionCloses) {
  // RFC 4475 3.3.9: today the first value wins and the rest is glued onto the next request.
  TempState state;
  Running r(state.path);
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), r.server().tcp_port()));
  const std::string smuggled =
      "OPTIONS sip:test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKmcl\r\nFrom: <sip:2001@test>;tag=a\r\n"
      "To: <sip:2001@test>\r\nCall-ID: mcl01\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" +
      request("OPTIONS", 2, "TCP");
  asio::write(s, asio::buffer(smuggled));
  auto responses = read_responses(s, 2);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].rfind("SIP/2.0 400", 0), 0u) << responses[0];
  std::array<char, 16> buf{};
  boost::system::error_code ec;
  s.read_some(asio::buffer(buf), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

}  // namespace
}  // namespace ve::sip
