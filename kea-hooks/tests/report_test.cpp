// LeaseReporter: delivers to a bound datagram socket, and with no receiver or a full one it fails
// at once instead of blocking.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {

using dhcp::decode_lease_report;
using dhcp::LeaseEventKind;
using dhcp::LeaseReport;
using dhcp::PhoneReason;

namespace {

using namespace std::chrono_literals;

class TempSocketPath {
 public:
  TempSocketPath() {
    path_ = (std::filesystem::temp_directory_path() /
             ("ve-report-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".sock"))
                .string();
    std::filesystem::remove(path_);
  }
  ~TempSocketPath() { std::filesystem::remove(path_); }
  const std::string& str() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

class BoundReceiver {
 public:
  explicit BoundReceiver(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  }
  ~BoundReceiver() { ::close(fd_); }
  std::optional<std::string> receive() {
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  int fd_ = -1;
};

LeaseReport sample() {
  LeaseReport r;
  r.kind = LeaseEventKind::Ack;
  r.mac = *MacAddress::parse("00:11:22:33:44:55");
  r.ip = 0x0a0a6464;
  r.subnet = "10.10.100.0/24";
  r.phone = PhoneReason::VendorClass;
  return r;
}

TEST(LeaseReporter, DeliversADecodableDatagram) {
  TempSocketPath path;
  BoundReceiver rx(path.str());
  LeaseReporter reporter(path.str());
  ASSERT_TRUE(reporter.send(sample()));
  ASSERT_TRUE(reporter.flush(5s));
  auto got = rx.receive();
  ASSERT_TRUE(got);
  auto decoded = decode_lease_report(std::span(reinterpret_cast<const std::uint8_t*>(got->data()), got->size()));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->ip, 0x0a0a6464u);
  EXPECT_EQ(reporter.sent(), 1u);
  EXPECT_EQ(reporter.dropped(), 0u);
}

// The first reports of a window are sent by the caller's own thread (no hand-off to the sender
// thread: fewer syscalls and wake-ups per report); what follows within the window is held for the
// sender and arrives as one batch, after the first and in order.
TEST(LeaseReporter, ALoneReportGoesOutAtOnceAndABurstAfterItIsCoalesced) {
  TempSocketPath path;
  BoundReceiver rx(path.str());
  LeaseReporter reporter(path.str(), {.coalesce = 1000ms, .direct_per_window = 1});
  auto numbered = [](std::uint32_t i) {
    auto r = sample();
    r.ip = 0x0a0a6400 + i;
    return r;
  };
  ASSERT_TRUE(reporter.send(numbered(0)));
  EXPECT_EQ(reporter.sent(), 1u) << "sent by send() itself";
  EXPECT_TRUE(rx.receive()) << "already in the receiver's queue";
  for (std::uint32_t i = 1; i <= 5; ++i) ASSERT_TRUE(reporter.send(numbered(i)));
  EXPECT_EQ(reporter.sent(), 1u) << "held until the window after the first send ends";
  ASSERT_TRUE(reporter.flush(5s));
  EXPECT_EQ(reporter.sent(), 6u);
  for (std::uint32_t i = 1; i <= 5; ++i) {
    auto got = rx.receive();
    ASSERT_TRUE(got) << i;
    auto decoded = decode_lease_report(std::span(reinterpret_cast<const std::uint8_t*>(got->data()), got->size()));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->ip, 0x0a0a6400 + i);
  }
}

TEST(LeaseReporter, NoReceiverCountsADropAndTellsWhy) {
  TempSocketPath path;  // nobody bound there
  std::mutex m;
  std::vector<std::string> reasons;
  LeaseReporter reporter(path.str(), {}, [&](const LeaseReport&, const char* why) {
    std::lock_guard lock(m);
    reasons.emplace_back(why);
  });
  EXPECT_TRUE(reporter.send(sample()));  // queued: the sender finds nobody
  ASSERT_TRUE(reporter.flush(5s));
  EXPECT_EQ(reporter.dropped(), 1u);
  EXPECT_EQ(reporter.sent(), 0u);
  std::lock_guard lock(m);
  EXPECT_EQ(reasons, (std::vector<std::string>{"no daemon at the socket"}));
}

// A daemon that stopped reading: the caller never waits (send only queues; the queue bound turns
// the excess into drops at once), and the sender gives up after stall_timeout without progress.
TEST(LeaseReporter, FullReceiverNeverBlocksTheCaller) {
  TempSocketPath path;
  BoundReceiver rx(path.str());  // never read: its queue fills up
  LeaseReporter reporter(path.str(), {.queue_limit = 100, .stall_timeout = 200ms});
  int refused = 0;
  for (int i = 0; i < 5000; ++i) refused += reporter.send(sample()) ? 0 : 1;
  EXPECT_GT(refused, 0);  // the queue bound, not a wait
  ASSERT_TRUE(reporter.flush(10s));
  EXPECT_GT(reporter.sent(), 0u);  // what fitted in the receiver's queue
  EXPECT_GT(reporter.dropped(), 0u);
  EXPECT_EQ(reporter.sent() + reporter.dropped(), 5000u);
}

// The boot-storm case of issue 21: far more reports than the receiver's queue holds
// (net.unix.max_dgram_qlen, 10 by default), read by a slow daemon. None may be lost, each arrives
// once, in order.
TEST(LeaseReporter, ASlowReaderLosesNoReportOfAFlood) {
  TempSocketPath path;
  BoundReceiver rx(path.str());
  constexpr std::uint32_t kReports = 3000;
  std::vector<std::uint32_t> received;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    int n = 0;
    while (!stop.load() || received.size() < kReports) {
      auto got = rx.receive();
      if (!got) {
        if (stop.load()) break;
        std::this_thread::sleep_for(1ms);
        continue;
      }
      auto decoded = decode_lease_report(std::span(reinterpret_cast<const std::uint8_t*>(got->data()), got->size()));
      if (decoded) received.push_back(decoded->ip);
      if (++n % 20 == 0) std::this_thread::sleep_for(1ms);  // slower than the senders
    }
  });
  {
    LeaseReporter reporter(path.str());
    // Four Kea packet threads at once.
    std::vector<std::thread> senders;
    for (std::uint32_t t = 0; t < 4; ++t) {
      senders.emplace_back([&, t] {
        for (std::uint32_t i = t; i < kReports; i += 4) {
          auto r = sample();
          r.ip = i;
          EXPECT_TRUE(reporter.send(r));
        }
      });
    }
    for (auto& s : senders) s.join();
    EXPECT_TRUE(reporter.flush(60s));
    EXPECT_EQ(reporter.dropped(), 0u);
    EXPECT_EQ(reporter.sent(), kReports);
  }
  stop = true;
  reader.join();
  ASSERT_EQ(received.size(), kReports);
  std::sort(received.begin(), received.end());
  for (std::uint32_t i = 0; i < kReports; ++i) ASSERT_EQ(received[i], i);
}

// The daemon restarts: a new socket is bound at the same path. The sender reconnects.
TEST(LeaseReporter, ReconnectsWhenTheDaemonRebindsThePath) {
  TempSocketPath path;
  LeaseReporter reporter(path.str());
  {
    BoundReceiver first(path.str());
    ASSERT_TRUE(reporter.send(sample()));
    ASSERT_TRUE(reporter.flush(5s));
    EXPECT_TRUE(first.receive());
  }
  std::filesystem::remove(path.str());
  BoundReceiver second(path.str());
  ASSERT_TRUE(reporter.send(sample()));
  ASSERT_TRUE(reporter.flush(5s));
  EXPECT_TRUE(second.receive());
  EXPECT_EQ(reporter.sent(), 2u);
  EXPECT_EQ(reporter.dropped(), 0u);
}

TEST(LeaseReporter, OverlongPathIsADropNotACrash) {
  LeaseReporter reporter(std::string(200, 'x'));
  EXPECT_TRUE(reporter.send(sample()));
  ASSERT_TRUE(reporter.flush(5s));
  EXPECT_EQ(reporter.dropped(), 1u);
}

}  // namespace
}  // namespace ve::kea_hooks
