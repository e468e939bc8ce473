// The receive buffer the hook gives Kea's raw sockets: raised on a real packet socket beyond
// net.core.rmem_max with CAP_NET_ADMIN, capped (and said so) without it, never shrunk. That a
// burst of DISCOVERs then reaches real Kea is tested in tests/dhcp_hook_netns_test.cpp.
#include "kea-hooks/receive_buffer.hpp"

#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

namespace ve::kea_hooks {
namespace {

int rmem_max() {
  std::ifstream in("/proc/sys/net/core/rmem_max");
  int value = 0;
  in >> value;
  return value;
}

int reported_size(int fd) {
  int size = 0;
  socklen_t len = sizeof(size);
  EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len), 0);
  return size;
}

// An AF_PACKET socket as Kea opens one; needs CAP_NET_RAW (root), else the test is skipped.
class PacketSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd_ < 0) GTEST_SKIP() << "no packet socket without CAP_NET_RAW (run as root)";
    ASSERT_GT(rmem_max(), 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd_ = -1;
};

TEST_F(PacketSocket, IsRaisedBeyondRmemMaxWithCapNetAdmin) {
  const int want = 2 * rmem_max() + (1 << 20);
  const int before = reported_size(fd_);
  ASSERT_LT(before, want);
  const auto out = raise_receive_buffer(fd_, want);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_TRUE(out.forced);
  EXPECT_TRUE(out.error.empty()) << out.error;
  EXPECT_GE(out.bytes, want);
  EXPECT_LT(out.bytes, want + 16) << "asks for what it was given, not double";
  EXPECT_EQ(reported_size(fd_), out.bytes);
}

TEST_F(PacketSocket, IsNeverShrunk) {
  const int large = 4 << 20;
  ASSERT_TRUE(raise_receive_buffer(fd_, large).ok);
  const int raised = reported_size(fd_);
  ASSERT_GE(raised, large);
  const auto out = raise_receive_buffer(fd_, 256 << 10);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_FALSE(out.forced) << "nothing was set";
  EXPECT_EQ(out.bytes, raised);
  EXPECT_EQ(reported_size(fd_), raised);
}

// Without CAP_NET_ADMIN (a child that gave up root after opening the socket) the buffer goes
// only as far as net.core.rmem_max, and the outcome says so instead of claiming the size.
TEST_F(PacketSocket, IsCappedAtRmemMaxWithoutCapNetAdminAndSaysSo) {
  const int cap = rmem_max();
  const int want = 4 * cap;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    const auto out = raise_receive_buffer(fd_, want);
    if (!out.ok) ::_exit(11);
    if (out.forced) ::_exit(12);
    if (out.bytes != 2 * cap) ::_exit(13);  // SO_RCVBUF: min(asked, rmem_max), doubled
    if (out.error.find("capped at " + std::to_string(out.bytes)) == std::string::npos) ::_exit(14);
    if (out.error.find("net.core.rmem_max") == std::string::npos) ::_exit(15);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "cannot drop to nobody here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 setuid, 11 not ok, 12 forced, 13 size, 14/15 error text";
}

TEST(ReceiveBuffer, ABadDescriptorIsAnErrorNotACrash) {
  const auto out = raise_receive_buffer(-1, 1 << 20);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("SO_RCVBUF"), std::string::npos) << out.error;
}

// Kea's UDP sockets get the same treatment if ever asked (the hook only asks for packet sockets).
TEST(ReceiveBuffer, AUdpSocketIsRaisedToo) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  const int want = 512 << 10;
  const auto out = raise_receive_buffer(fd, want);
  ::close(fd);
  ASSERT_TRUE(out.ok) << out.error;
  if (out.forced || rmem_max() >= want / 2) {
    EXPECT_GE(out.bytes, want);
  }
}

}  // namespace
}  // namespace ve::kea_hooks
