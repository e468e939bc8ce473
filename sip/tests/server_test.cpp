// The Server over real loopback sockets (port 0): UDP answers, TCP framing, connection limits,
// idle timeout, persistence across a restart.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include <boost/asio.hpp>
#include <fmt/format.h>

#include "sip/sip.hpp"

namespace ve::sip {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

config::SiteConfigPtr site(const std::filesystem::path& state) {
  auto c = std::make_shared<config::SiteConfig>();
  c->state_dir = state.string();
  c->sip.listen = {{"udp", "127.0.0.1", 0}, {"tcp", "127.0.0.1", 0}};
  c->sip.realm = "test";
  config::Phone p;
  p.mac = *MacAddress::parse("00:11:22:33:44:55");
  // No password: registration without digest, so these tests exercise transport, not auth.
  p.lines.push_back(config::Line{1, "2001", "", "2001", config::Secret("")});
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
  EXPECT_NE(responses[2].find("SIP/2.0 200 OK"), std::string::npos);
  EXPECT_NE(responses[2].find("CSeq: 3 REGISTER"), std::string::npos);
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
    asio::write(s,
                asio::buffer(request("REGISTER", 1, "TCP", "Contact: <sip:2001@127.0.0.1:5999>\r\nExpires: 600\r\n")));
    auto responses = read_responses(s, 1);
    ASSERT_EQ(responses.size(), 1u);
    EXPECT_NE(responses[0].find("SIP/2.0 200 OK"), std::string::npos);
  }
  Running again(state.path);
  auto regs = again.on_loop([&] { return again.server().registrations(); });
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].contact, "sip:2001@127.0.0.1:5999");
  EXPECT_LE(regs[0].expires_in_s, 600);
  EXPECT_GT(regs[0].expires_in_s, 590);
}

}  // namespace
}  // namespace ve::sip
