// find_kea_conflict: what voiceedged reports before starting its Kea. Real sockets and a real
// process named kea-dhcp4 (a copy of sleep: what is checked is /proc, not Kea itself).
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "dhcp/kea_supervisor.hpp"
#include "tests/support/temp_dir.hpp"

extern char** environ;

namespace ve::dhcp {
namespace {

namespace fs = std::filesystem;

// A UDP socket bound to 127.0.0.1 on a port the kernel picks.
class BoundUdp {
 public:
  BoundUdp() : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port_ = ntohs(a.sin_port);
  }
  ~BoundUdp() {
    if (fd_ >= 0) ::close(fd_);
  }
  BoundUdp(const BoundUdp&) = delete;
  BoundUdp& operator=(const BoundUdp&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

// A port no socket holds now: bound, then closed again.
std::uint16_t free_udp_port() { return BoundUdp().port(); }

// `<dir>/kea-dhcp4 30`: a process whose name is kea-dhcp4, killed and reaped on destruction.
class FakeKea {
 public:
  explicit FakeKea(const fs::path& dir) : exe_(dir / "kea-dhcp4") {
    fs::copy_file("/bin/sleep", exe_, fs::copy_options::overwrite_existing);
    std::string a0 = exe_.string(), a1 = "30";
    char* argv[] = {a0.data(), a1.data(), nullptr};
    if (::posix_spawn(&pid_, a0.c_str(), nullptr, nullptr, argv, environ) != 0) pid_ = -1;
    // Until exec has happened, /proc/<pid>/comm is still the test's name; and the kernel renames
    // the task before it lays out the new argv, so for a moment comm is kea-dhcp4 while cmdline
    // is still empty. Wait for both (CI once caught that window).
    for (int i = 0; i < 500 && pid_ > 0; ++i) {
      std::ifstream comm("/proc/" + std::to_string(pid_) + "/comm");
      std::string name;
      std::getline(comm, name);
      std::ifstream cmdline("/proc/" + std::to_string(pid_) + "/cmdline");
      std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
      if (name == "kea-dhcp4" && args.find("30") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~FakeKea() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  FakeKea(const FakeKea&) = delete;
  FakeKea& operator=(const FakeKea&) = delete;
  pid_t pid() const { return pid_; }
  const fs::path& exe() const { return exe_; }

 private:
  fs::path exe_;
  pid_t pid_ = -1;
};

using test::TempDir;

TEST(KeaConflict, ATakenPortBlocksAndSaysWhatToDo) {
  BoundUdp taken;
  ASSERT_NE(taken.port(), 0);
  auto c = find_kea_conflict("/nonexistent/kea-dhcp4.json", taken.port());
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->blocking);
  EXPECT_NE(c->message.find("UDP port " + std::to_string(taken.port()) + " is already in use"), std::string::npos)
      << c->message;
  EXPECT_NE(c->message.find("systemctl disable --now kea-dhcp4-server"), std::string::npos) << c->message;
  EXPECT_NE(c->message.find("dhcp.kea.manage: false"), std::string::npos) << c->message;
}

TEST(KeaConflict, AForeignKeaIsNamedWithItsPid) {
  TempDir dir("ve-kea-conflict");
  ASSERT_FALSE(dir.path().empty());
  FakeKea kea(dir.path());
  ASSERT_GT(kea.pid(), 0);
  const auto port = free_udp_port();
  auto c = find_kea_conflict("/nonexistent/kea-dhcp4.json", port);
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->blocking) << c->message;  // it holds no socket on the port
  EXPECT_NE(c->message.find("pid " + std::to_string(kea.pid()) + ": " + kea.exe().string() + " 30"), std::string::npos)
      << c->message;
  EXPECT_NE(c->message.find("kea-dhcp4-server"), std::string::npos) << c->message;

  // The same process running our own config (its command line names it) is ours, not a conflict.
  auto own = find_kea_conflict(kea.exe(), port);
  if (own) {
    EXPECT_EQ(own->message.find("pid " + std::to_string(kea.pid()) + ":"), std::string::npos) << own->message;
  }

  // A taken port and a foreign Kea: blocking, and the message names the Kea found.
  BoundUdp taken;
  auto both = find_kea_conflict("/nonexistent/kea-dhcp4.json", taken.port());
  ASSERT_TRUE(both.has_value());
  EXPECT_TRUE(both->blocking);
  EXPECT_NE(both->message.find("kea-dhcp4 pid"), std::string::npos) << both->message;
}

}  // namespace
}  // namespace ve::dhcp
