// LeaseReporter: delivers to a bound datagram socket, and with no receiver or a full one it fails
// at once instead of blocking.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {
namespace {

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
  auto got = rx.receive();
  ASSERT_TRUE(got);
  auto decoded = decode_lease_report(std::span(reinterpret_cast<const std::uint8_t*>(got->data()), got->size()));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->ip, 0x0a0a6464u);
  EXPECT_EQ(reporter.sent(), 1u);
  EXPECT_EQ(reporter.dropped(), 0u);
}

TEST(LeaseReporter, NoReceiverCountsADropAndReturns) {
  TempSocketPath path;  // nobody bound there
  LeaseReporter reporter(path.str());
  EXPECT_FALSE(reporter.send(sample()));
  EXPECT_EQ(reporter.dropped(), 1u);
}

TEST(LeaseReporter, FullReceiverNeverBlocks) {
  TempSocketPath path;
  BoundReceiver rx(path.str());  // never read: its queue fills up
  LeaseReporter reporter(path.str());
  for (int i = 0; i < 5000; ++i) (void)reporter.send(sample());
  // Every send returned (the loop ended); the queue limit turned the rest into drops.
  EXPECT_GT(reporter.dropped(), 0u);
  EXPECT_GT(reporter.sent(), 0u);
  EXPECT_EQ(reporter.sent() + reporter.dropped(), 5000u);
}

TEST(LeaseReporter, OverlongPathIsADropNotACrash) {
  LeaseReporter reporter(std::string(200, 'x'));
  EXPECT_FALSE(reporter.send(sample()));
  EXPECT_EQ(reporter.dropped(), 1u);
}

}  // namespace
}  // namespace ve::kea_hooks
