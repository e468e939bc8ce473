// AcceptGuard, ConnectionLimiter, FdBudget and RateLimitedLog against real sockets and a real
// RLIMIT_NOFILE: the process is run out of descriptors and the accept loop must pause, not spin.
#include "ve/accept_guard.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

namespace ve {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Highest descriptor number in use + 1 (so a limit of this value leaves none free).
int next_free_fd() {
  const int fd = ::dup(0);
  ::close(fd);
  return fd;
}

// The smallest accept loop that uses the guard, as the daemon's listeners do.
struct Listener {
  explicit Listener(asio::io_context& io)
      : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        guard(io.get_executor(), "test", "tcp test") {}
  void accept() {
    acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        guard.failed(ec, [this] { accept(); });
        return;
      }
      guard.succeeded();
      accepted.push_back(std::move(s));
      accept();
    });
  }
  tcp::acceptor acceptor;
  AcceptGuard guard;
  std::vector<tcp::socket> accepted;
};

class RestoreLimit {
 public:
  RestoreLimit() { ::getrlimit(RLIMIT_NOFILE, &saved_); }
  ~RestoreLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  const rlimit& saved() const { return saved_; }

 private:
  rlimit saved_{};
};

TEST(AcceptGuard, PausesOnEmfileInsteadOfSpinningAndResumesWhenFdsFree) {
  RestoreLimit restore;
  asio::io_context io;
  Listener listener(io);
  const auto port = listener.acceptor.local_endpoint().port();
  constexpr int kClients = 30;
  std::vector<tcp::socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(io);
    clients.back().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));  // sits in the backlog
  }
  // Room for exactly 5 accepted sockets.
  rlimit low{static_cast<rlim_t>(next_free_fd() + 5), restore.saved().rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  listener.accept();
  io.run_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(listener.accepted.size(), 5u);
  EXPECT_GE(listener.guard.exhaustions(), 1u);
  // Backoff 50, 100, 200, 400, 800 ms: a handful of tries in 1.5 s. A loop that retries at once
  // makes hundreds of thousands.
  EXPECT_LE(listener.guard.errors(), 8u) << "the accept loop spins on EMFILE";
  EXPECT_TRUE(listener.guard.paused());

  ::setrlimit(RLIMIT_NOFILE, &restore.saved());
  io.restart();
  io.run_for(std::chrono::milliseconds(1200));  // the longest pause is 1 s
  EXPECT_EQ(listener.accepted.size(), static_cast<std::size_t>(kClients)) << "accepting did not resume";
  EXPECT_FALSE(listener.guard.paused());
}

TEST(AcceptGuard, CancelDropsThePendingResume) {
  asio::io_context io;
  AcceptGuard guard(io.get_executor(), "test", "tcp test");
  bool resumed = false;
  guard.failed(boost::system::error_code(EMFILE, boost::system::system_category()), [&] { resumed = true; });
  guard.cancel();
  io.run_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(resumed);
  EXPECT_TRUE(is_resource_exhaustion(boost::system::error_code(ENFILE, boost::system::system_category())));
  EXPECT_FALSE(is_resource_exhaustion(boost::system::error_code(ECONNABORTED, boost::system::system_category())));
}

TEST(RateLimitedLog, OneLinePerIntervalWithTheSuppressedCount) {
  RateLimitedLog log(std::chrono::seconds(10));
  const auto t0 = RateLimitedLog::Clock::now();
  std::uint64_t suppressed = 99;
  EXPECT_TRUE(log.allow(suppressed, t0));
  EXPECT_EQ(suppressed, 0u);
  int allowed = 0;
  for (int i = 1; i <= 10000; ++i)
    if (log.allow(suppressed, t0 + std::chrono::milliseconds(i / 2))) ++allowed;
  EXPECT_EQ(allowed, 0);
  EXPECT_TRUE(log.allow(suppressed, t0 + std::chrono::seconds(11)));
  EXPECT_EQ(suppressed, 10000u);
}

TEST(ConnectionLimiter, TotalAndPerClientCapsReleasedBySlots) {
  ConnectionLimiter<std::string> limiter(5, 2);
  std::vector<ConnectionLimiter<std::string>::Slot> held;
  auto [a1, r1] = limiter.acquire("10.0.0.1");
  auto [a2, r2] = limiter.acquire("10.0.0.1");
  auto [a3, r3] = limiter.acquire("10.0.0.1");
  EXPECT_TRUE(a1);
  EXPECT_TRUE(a2);
  EXPECT_FALSE(a3);
  EXPECT_EQ(r3, ConnectionLimiter<std::string>::Refusal::PerClient);
  held.push_back(std::move(a1));
  held.push_back(std::move(a2));
  for (const char* ip : {"10.0.0.2", "10.0.0.3", "10.0.0.3"}) {
    auto [s, r] = limiter.acquire(ip);
    EXPECT_TRUE(s) << ip;
    held.push_back(std::move(s));
  }
  auto [full, why] = limiter.acquire("10.0.0.4");
  EXPECT_FALSE(full);
  EXPECT_EQ(why, ConnectionLimiter<std::string>::Refusal::Total);
  EXPECT_EQ(limiter.total(), 5u);
  held.erase(held.begin());  // one of 10.0.0.1's connections ends
  EXPECT_EQ(limiter.from("10.0.0.1"), 1u);
  EXPECT_TRUE(limiter.acquire("10.0.0.4").first);  // a temporary: released at once
  EXPECT_EQ(limiter.total(), 4u);
  held.clear();
  EXPECT_EQ(limiter.total(), 0u);
  EXPECT_EQ(limiter.from("10.0.0.3"), 0u);
}

TEST(FdBudget, CapsShareWhatIsLeftAfterTheReserve) {
  const auto small = FdBudget::for_limit(1024);
  EXPECT_EQ(small.reserve, 256u);
  EXPECT_EQ(small.usable(), 768u);
  EXPECT_EQ(small.cap(4096, fd_share::kSipTcp), 768u * 35 / 100);
  EXPECT_EQ(small.cap(100, fd_share::kSipTcp), 100u);  // below its share: unchanged
  const auto unit = FdBudget::for_limit(65536);
  EXPECT_EQ(unit.reserve, 4096u);
  EXPECT_EQ(unit.cap(4096, fd_share::kSipTcp), 4096u);
  const unsigned sum = fd_share::kSipTcp + fd_share::kHttp + fd_share::kTftp + fd_share::kStatusPage + fd_share::kOther;
  EXPECT_LT(sum, 100u) << "the caps together must stay below the usable fds";
  EXPECT_EQ(FdBudget::for_limit(100).cap(50, fd_share::kHttp), 1u);  // never zero
}

TEST(FdBudget, FromProcessRaisesTheSoftLimitToTheHardOne) {
  RestoreLimit restore;
  rlimit low{256, restore.saved().rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::string note;
  const auto budget = FdBudget::from_process(&note);
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  const auto expected = restore.saved().rlim_max == RLIM_INFINITY ? FdBudget::kCeiling : restore.saved().rlim_max;
  EXPECT_EQ(now.rlim_cur, expected) << note;
  EXPECT_EQ(budget.limit, static_cast<std::size_t>(expected));
  EXPECT_NE(note.find("raised"), std::string::npos) << note;
}

}  // namespace
}  // namespace ve
