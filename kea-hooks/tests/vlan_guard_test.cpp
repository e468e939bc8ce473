// The VLAN guard on Kea's raw sockets: the program it builds, and that it lands on a real packet
// socket in front of the filter that was there (what frames it lets through is tested with real
// Kea and tagged frames in tests/dhcp_hook_netns_test.cpp).
#include "kea-hooks/vlan_guard.hpp"

#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ve::kea_hooks {
namespace {

// A filter of Kea's shape: accept IPv4 (ethertype at 12), drop the rest.
const std::vector<sock_filter> kAcceptIpv4 = {
    {BPF_LD | BPF_H | BPF_ABS, 0, 0, 12},
    {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ETH_P_IP},
    {BPF_RET | BPF_K, 0, 0, 0xffffffffU},
    {BPF_RET | BPF_K, 0, 0, 0},
};

bool same(const sock_filter& a, const sock_filter& b) {
  return a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k;
}

bool equal(std::span<const sock_filter> a, std::span<const sock_filter> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), same);
}

TEST(VlanGuard, GoesInFrontOfTheFilterWhichStaysAsItWas) {
  const auto guarded = with_vlan_guard(kAcceptIpv4);
  const auto prefix = vlan_guard_prefix();
  ASSERT_EQ(guarded.size(), prefix.size() + kAcceptIpv4.size());
  EXPECT_TRUE(equal(std::span(guarded).first(prefix.size()), prefix));
  EXPECT_TRUE(equal(std::span(guarded).subspan(prefix.size()), kAcceptIpv4));
}

TEST(VlanGuard, EveryJumpOfThePrefixLandsInsideItOrOnTheFirstOriginalInstruction) {
  const auto prefix = vlan_guard_prefix();
  bool drops = false;
  for (std::size_t pc = 0; pc < prefix.size(); ++pc) {
    const auto& i = prefix[pc];
    if (BPF_CLASS(i.code) == BPF_RET) {
      EXPECT_EQ(i.k, 0u) << "the guard's only return drops";
      drops = true;
    }
    if (BPF_CLASS(i.code) != BPF_JMP) continue;
    for (std::size_t target : {pc + 1 + i.jt, pc + 1 + i.jf}) EXPECT_LE(target, prefix.size()) << "at " << pc;
  }
  EXPECT_TRUE(drops);
  // It reads the tag from the packet's metadata (the kernel has stripped it from the data).
  EXPECT_EQ(prefix[0].k, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT));
}

TEST(VlanGuard, IsPutInFrontOnceAndANoFilterSocketStillAcceptsEverythingElse) {
  const auto once = with_vlan_guard(kAcceptIpv4);
  EXPECT_TRUE(equal(with_vlan_guard(once), once));
  const auto none = with_vlan_guard({});
  ASSERT_EQ(none.size(), vlan_guard_prefix().size() + 1);
  EXPECT_EQ(none.back().code, BPF_RET | BPF_K);
  EXPECT_EQ(none.back().k, 0xffffffffU);
}

class PacketSocket {
 public:
  PacketSocket() : fd_(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL))) {}
  ~PacketSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  PacketSocket(const PacketSocket&) = delete;
  PacketSocket& operator=(const PacketSocket&) = delete;
  int fd() const { return fd_; }

  std::vector<sock_filter> filter() const {
    socklen_t n = 0;
    if (::getsockopt(fd_, SOL_SOCKET, SO_GET_FILTER, nullptr, &n) != 0) return {};
    std::vector<sock_filter> out(n);
    if (n > 0 && ::getsockopt(fd_, SOL_SOCKET, SO_GET_FILTER, out.data(), &n) != 0) return {};
    out.resize(n);
    return out;
  }

 private:
  int fd_;
};

TEST(VlanGuard, LandsOnARealPacketSocketInFrontOfItsFilter) {
  PacketSocket s;
  if (s.fd() < 0 && (errno == EPERM || errno == EACCES)) GTEST_SKIP() << "packet sockets need CAP_NET_RAW";
  ASSERT_GE(s.fd(), 0) << std::strerror(errno);
  sock_fprog prog{static_cast<unsigned short>(kAcceptIpv4.size()), const_cast<sock_filter*>(kAcceptIpv4.data())};
  ASSERT_EQ(::setsockopt(s.fd(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), 0) << std::strerror(errno);

  std::string error;
  ASSERT_EQ(guard_packet_socket(s.fd(), error), GuardOutcome::Guarded) << error;
  EXPECT_TRUE(equal(s.filter(), with_vlan_guard(kAcceptIpv4)));
  EXPECT_EQ(guard_packet_socket(s.fd(), error), GuardOutcome::AlreadyGuarded) << error;
  EXPECT_TRUE(equal(s.filter(), with_vlan_guard(kAcceptIpv4))) << "not guarded twice";
}

TEST(VlanGuard, LeavesOtherSocketsAlone) {
  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  std::string error;
  EXPECT_EQ(guard_packet_socket(udp, error), GuardOutcome::NotAPacketSocket);
  ::close(udp);
  EXPECT_EQ(guard_packet_socket(-1, error), GuardOutcome::Failed);
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace ve::kea_hooks
