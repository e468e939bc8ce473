#include "kea-hooks/vlan_guard.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace ve::kea_hooks {
namespace {

constexpr sock_filter stmt(std::uint16_t code, std::uint32_t k) { return {code, 0, 0, k}; }
constexpr sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
  return {code, jt, jf, k};
}

// 0 A = VLAN tag present?   1 none: to 6      2 A = TCI   3 A &= VID bits
// 4 VID 0 (priority tag): to 6      5 drop    6,7 A = X = 0, as a program starts    8.. Kea's
constexpr std::array<sock_filter, 8> kGuard = {
    stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT)),
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 4, 0),
    stmt(BPF_LD | BPF_W | BPF_ABS, static_cast<std::uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG)),
    stmt(BPF_ALU | BPF_AND | BPF_K, 0x0fff),
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
    stmt(BPF_RET | BPF_K, 0),
    stmt(BPF_LD | BPF_IMM, 0),
    stmt(BPF_LDX | BPF_IMM, 0),
};

bool same(const sock_filter& a, const sock_filter& b) {
  return a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k;
}

bool starts_with_guard(std::span<const sock_filter> filter) {
  return filter.size() >= kGuard.size() && std::equal(kGuard.begin(), kGuard.end(), filter.begin(), same);
}

}  // namespace

std::span<const sock_filter> vlan_guard_prefix() { return kGuard; }

std::vector<sock_filter> with_vlan_guard(std::span<const sock_filter> filter) {
  if (starts_with_guard(filter)) return {filter.begin(), filter.end()};
  std::vector<sock_filter> out(kGuard.begin(), kGuard.end());
  if (filter.empty())
    out.push_back(stmt(BPF_RET | BPF_K, 0xffffffffU));  // no filter was accepting everything
  else
    out.insert(out.end(), filter.begin(), filter.end());
  return out;
}

GuardOutcome guard_packet_socket(int fd, std::string& error) {
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    error = std::string("SO_DOMAIN: ") + std::strerror(errno);
    return GuardOutcome::Failed;
  }
  if (domain != AF_PACKET) return GuardOutcome::NotAPacketSocket;

  // SO_GET_FILTER counts in instructions, not bytes: a length of 0 asks for the count.
  socklen_t count = 0;
  if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) != 0) {
    error = std::string("SO_GET_FILTER: ") + std::strerror(errno);
    return GuardOutcome::Failed;
  }
  std::vector<sock_filter> current(count);
  if (count > 0 && ::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, current.data(), &count) != 0) {
    error = std::string("SO_GET_FILTER: ") + std::strerror(errno);
    return GuardOutcome::Failed;
  }
  current.resize(count);
  if (starts_with_guard(current)) return GuardOutcome::AlreadyGuarded;

  auto guarded = with_vlan_guard(current);
  if (guarded.size() > BPF_MAXINSNS) {
    error = "the guarded filter would exceed BPF_MAXINSNS";
    return GuardOutcome::Failed;
  }
  sock_fprog prog{static_cast<unsigned short>(guarded.size()), guarded.data()};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    error = std::string("SO_ATTACH_FILTER: ") + std::strerror(errno);
    return GuardOutcome::Failed;
  }
  return GuardOutcome::Guarded;
}

}  // namespace ve::kea_hooks
