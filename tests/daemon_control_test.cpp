// The real voiceedged, driven by the real voiceedgectl: version, show config, reload of a broken
// and of a good file, SIGHUP, hostile clients, clean SIGTERM.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

// 16 lines: the errors of a broken reload name the lines after them.
std::string site(const std::string& name) {
  return SiteFile{.name = name, .phones = R"(  - mac: "00:11:22:33:44:55"
    lines:
      - { extension: "1001", password: "sup3rs3cret" }
)"}
      .yaml();
}

// Sends raw bytes on the control socket and returns the first answer line ("" if none).
std::string raw_request(const std::filesystem::path& socket_path, const std::string& bytes) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return in.substr(0, in.find('\n'));
}

class DaemonControl : public ::testing::Test {
 protected:
  Daemon daemon{site("before")};
  void SetUp() override { ASSERT_TRUE(daemon.start()) << daemon.log(); }
};

TEST_F(DaemonControl, VersionAndConfigWithSecretsMasked) {
  auto v = daemon.ctl({"version"});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_NE(v.out.find("voiceedged"), std::string::npos);

  auto cfg = daemon.ctl_json({"show", "config"});
  ASSERT_TRUE(cfg.is_object()) << daemon.log();
  EXPECT_EQ(cfg["site"]["name"], "before");
  EXPECT_EQ(cfg["phones"][0]["lines"][0]["password"], "***");
  EXPECT_EQ(cfg.dump().find("sup3rs3cret"), std::string::npos);
  EXPECT_EQ(daemon.log().find("sup3rs3cret"), std::string::npos) << "a password reached the log";
}

TEST_F(DaemonControl, BrokenReloadKeepsOldConfigAndReturnsTheErrors) {
  daemon.write_site(site("after") + "bogus_key: 1\ncdp: { interval_s: 1 }\n");
  auto r = daemon.ctl({"reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("site.yaml:17:1: bogus_key: unknown key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("site.yaml:18:"), std::string::npos) << "all errors, not only the first: " << r.err;
  EXPECT_EQ(daemon.ctl_json({"show", "config"})["site"]["name"], "before");
  EXPECT_NE(daemon.log().find("reload rejected"), std::string::npos);

  daemon.write_site(site("after"));
  auto ok = daemon.ctl({"reload"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(daemon.ctl_json({"show", "config"})["site"]["name"], "after");
}

TEST_F(DaemonControl, SighupReloadsAndKeepsOldConfigOnError) {
  daemon.write_site(site("hup: [broken"));
  ::kill(daemon.child().pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return daemon.log().find("reload rejected") != std::string::npos; }));
  EXPECT_EQ(daemon.ctl_json({"show", "config"})["site"]["name"], "before");
  daemon.write_site(site("hupped"));
  ::kill(daemon.child().pid(), SIGHUP);
  EXPECT_TRUE(eventually([&] { return daemon.ctl_json({"show", "config"})["site"]["name"] == "hupped"; }));
}

TEST_F(DaemonControl, HostileClientsGetErrorsAndTheDaemonLives) {
  auto bad = nlohmann::json::parse(raw_request(daemon.socket(), "this is not json\n"), nullptr, false);
  ASSERT_TRUE(bad.is_object());
  EXPECT_EQ(bad["error"]["code"], "bad-request");
  auto unknown = nlohmann::json::parse(raw_request(daemon.socket(), "{\"cmd\":\"format.disk\"}\n"), nullptr, false);
  EXPECT_EQ(unknown["error"]["code"], "unknown-command");
  auto big = nlohmann::json::parse(raw_request(daemon.socket(), std::string(200 * 1024, 'x')), nullptr, false);
  ASSERT_TRUE(big.is_object());
  EXPECT_EQ(big["error"]["code"], "too-large");
  raw_request(daemon.socket(), "{\"cmd\":");  // half a request, then gone
  EXPECT_EQ(daemon.ctl({"version"}).exit_code, 0);
  EXPECT_TRUE(daemon.child().running());
}

TEST_F(DaemonControl, UnknownPhoneIsNotFound) {
  auto r = daemon.ctl({"show", "journey", "SEP00AABBCCDDEE"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not-found"), std::string::npos) << r.err;
  auto bad = daemon.ctl({"show", "nothing"});
  EXPECT_EQ(bad.exit_code, 1);
}

TEST_F(DaemonControl, SigtermStopsCleanlyWithExitZero) {
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << daemon.log();
  EXPECT_FALSE(std::filesystem::exists(daemon.socket())) << "socket file left behind";
}

TEST(DaemonCommandLine, CheckConfigExitCodes) {
  TempDir dir;
  dir.write("good.yaml", "site: { name: x }\nstate_dir: /tmp/x\n");
  dir.write("bad.yaml", "site: { name: x }\nstate_dir: relative\nports: [{ name: eth1, voice_vlan: 5000 }]\n");
  auto good = run({voiceedged_path().string(), "--config", (dir / "good.yaml").string(), "--check-config"});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  auto bad = run({voiceedged_path().string(), "--config", (dir / "bad.yaml").string(), "--check-config"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("bad.yaml:2:12: state_dir: must be an absolute path"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("bad.yaml:3:35: ports[0].voice_vlan: 5000 is out of range 1-4094"), std::string::npos)
      << bad.err;
  auto help = run({voiceedged_path().string(), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("SIGHUP"), std::string::npos);
  EXPECT_EQ(run({voiceedged_path().string(), "--no-such-flag"}).exit_code, 2);
}

TEST(CtlCommandLine, UnreachableDaemonExitsTwoNamingTheSocket) {
  auto r = run({voiceedgectl_path().string(), "--socket", "/nonexistent/ve.sock", "show", "phones"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/ve.sock"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ve::test
