// The real voiceedged under attack from real clients, on loopback only: voiceedgectl run as other
// users (setpriv) against the control socket's roles, a crowd of idle python clients, ~2000
// connections against a daemon with 512 file descriptors (prlimit), reloads onto ports someone
// else holds, and state files damaged while the daemon is stopped and while it runs.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/daemon.hpp"
#include "tests/support/site_file.hpp"

namespace ve::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kReadGid = "61001";
constexpr const char* kAdminGid = "61002";
constexpr const char* kPython = "/usr/bin/python3";  // readable by other users, unlike a pyenv shim

std::string site(const std::string& sip_tcp = "tcp:127.0.0.1:0", const std::string& tftp = "127.0.0.1:0",
                 const std::string& http = "127.0.0.1:0") {
  return SiteFile{.name = "sec",
                  .control = std::string("{ socket: @SOCKET@, read_group: \"") + kReadGid + "\", admin_group: \"" +
                             kAdminGid + "\" }",
                  .tftp_listen = tftp,
                  .http_listen = http,
                  .sip_listen = "[\"udp:127.0.0.1:0\", \"" + sip_tcp + "\"]",
                  .phones = R"(  - mac: "00:11:22:33:44:55"
    lines:
      - { extension: "1001", password: "sup3rs3cret" }
)"}
      .yaml();
}

// voiceedgectl as another user: uid 65534, primary group 65534, the given supplementary groups.
RunResult ctl_as(const Daemon& d, const std::string& groups, const std::vector<std::string>& words) {
  std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534"};
  argv.push_back(groups.empty() ? "--clear-groups" : "--groups=" + groups);
  argv.push_back(voiceedgectl_path().string());
  argv.push_back("--socket");
  argv.push_back(d.socket().string());
  argv.insert(argv.end(), words.begin(), words.end());
  return run(argv);
}

std::uint16_t port_of(const std::string& host_port) {
  return static_cast<std::uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

struct Ports {
  std::uint16_t sip_tcp = 0;
  std::uint16_t tftp = 0;
  std::uint16_t http = 0;
};

Ports ports_of(const Daemon& d) {
  Ports p;
  const auto sip = d.ctl_json({"show", "sip", "registrations"});
  const auto prov = d.ctl_json({"show", "provision"});
  if (sip.is_object()) p.sip_tcp = sip["listening"].value("tcp_port", 0);
  if (prov.is_object()) {
    p.tftp = port_of(prov["tftp"].value("listen", std::string(":0")));
    p.http = port_of(prov["http"].value("listen", std::string(":0")));
  }
  return p;
}

bool tftp_answers(std::uint16_t port) {
  auto r = run({"curl", "-s", "--max-time", "5", "tftp://127.0.0.1:" + std::to_string(port) + "/XMLDefault.cnf.xml"},
               std::chrono::seconds(10));
  return r.exit_code == 0 && r.out.find("<Default>") != std::string::npos;
}

bool http_answers(std::uint16_t port, const std::string& from = "127.0.0.1") {
  auto r = run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--interface", from,
                "http://127.0.0.1:" + std::to_string(port) + "/XMLDefault.cnf.xml"},
               std::chrono::seconds(10));
  return r.out == "200";
}

bool tcp_connects(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A socket the test holds on 127.0.0.1:<free port> so that the daemon cannot have it.
class HeldPort {
 public:
  explicit HeldPort(int type) : fd_(::socket(AF_INET, type, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (type == SOCK_STREAM) ::listen(fd_, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~HeldPort() { ::close(fd_); }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// utime + stime of a process, in seconds.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i)
    if (i == 14 || i == 15) ticks += std::stod(f);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

class DaemonSecurity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root (setpriv to other uids, prlimit)";
  }
};

// ---------------------------------------------------------------- control socket roles

TEST_F(DaemonSecurity, ControlSocketRolesFollowThePeerCredentials) {
  Daemon d(site());
  fs::permissions(d.dir().path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  ASSERT_TRUE(d.start()) << d.log();
  // A member of the read group reads.
  auto show = ctl_as(d, kReadGid, {"show", "phones"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  // ... and may not change anything.
  auto reload = ctl_as(d, kReadGid, {"reload"});
  EXPECT_EQ(reload.exit_code, 1);
  EXPECT_NE(reload.err.find("permission-denied"), std::string::npos) << reload.err;
  EXPECT_NE(reload.err.find(kAdminGid), std::string::npos) << "the error should name the admin group: " << reload.err;
  auto power = ctl_as(d, kReadGid, {"power", "inline", "eth1", "off"});
  EXPECT_EQ(power.exit_code, 1);
  EXPECT_NE(power.err.find("permission-denied"), std::string::npos) << power.err;
  EXPECT_EQ(d.log().find("reload requested"), std::string::npos) << "a denied reload ran";
  // A member of the admin group (who is also in the socket's group) changes things.
  auto admin = ctl_as(d, std::string(kReadGid) + "," + kAdminGid, {"reload"});
  EXPECT_EQ(admin.exit_code, 0) << admin.err;
  EXPECT_NE(d.log().find("reload requested by uid 65534"), std::string::npos) << "changes are not on record";
  // Anyone else cannot even connect (mode 0660, group = read group).
  auto stranger = ctl_as(d, "", {"show", "phones"});
  EXPECT_EQ(stranger.exit_code, 2) << stranger.err;
  EXPECT_NE(stranger.err.find("ermission denied"), std::string::npos) << stranger.err;
  // Root stays admin.
  EXPECT_EQ(d.ctl({"reload"}).exit_code, 0);
}

// Phone control (restart, reset, power-cycle a phone) changes the branch: admin only, refused
// before anything is sent or switched.
TEST_F(DaemonSecurity, PhoneControlCommandsAreAdminCommands) {
  Daemon d(site());
  fs::permissions(d.dir().path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  ASSERT_TRUE(d.start()) << d.log();
  for (const auto* cmd : {"restart", "reset", "power-cycle"}) {
    auto r = ctl_as(d, kReadGid, {"phone", cmd, "00:11:22:33:44:55"});
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_NE(r.err.find("permission-denied"), std::string::npos) << cmd << ": " << r.err;
  }
  for (const auto* cmd : {"phone.restart", "phone.reset", "phone.power-cycle"})
    EXPECT_EQ(d.log().find(std::string(cmd) + " requested"), std::string::npos) << "a denied " << cmd << " ran";
  EXPECT_EQ(d.log().find("service-control"), std::string::npos);
  // An admin gets past the role check (the phone is not registered: nothing to send).
  auto admin = ctl_as(d, std::string(kReadGid) + "," + kAdminGid, {"phone", "restart", "00:11:22:33:44:55"});
  EXPECT_EQ(admin.exit_code, 1);
  EXPECT_NE(admin.err.find("SEP001122334455 is not registered"), std::string::npos) << admin.err;
  EXPECT_NE(d.log().find("phone.restart requested by uid 65534"), std::string::npos);
}

// capture shows a phone's traffic (its config download carries the line password) and report its
// configuration: both are admin commands, whatever the client sends.
TEST_F(DaemonSecurity, CaptureAndReportAreAdminCommands) {
  Daemon d(site());
  fs::permissions(d.dir().path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::permissions(d.dir().path(), fs::perms::others_write, fs::perm_options::add);  // the reader's output file
  ASSERT_TRUE(d.start()) << d.log();
  const auto out = (d.dir().path() / "reader.tar.gz").string();
  auto report = ctl_as(d, kReadGid, {"report", "00:11:22:33:44:55", "--output", out});
  EXPECT_EQ(report.exit_code, 1) << report.err;
  EXPECT_NE(report.err.find("permission-denied"), std::string::npos) << report.err;
  EXPECT_FALSE(fs::exists(out)) << "a denied report was written";
  const auto pcap = (d.dir().path() / "reader.pcapng").string();
  auto capture = ctl_as(d, kReadGid, {"capture", "00:11:22:33:44:55", "--seconds", "1", "--write", pcap});
  EXPECT_EQ(capture.exit_code, 1) << capture.err;
  EXPECT_NE(capture.err.find("permission-denied"), std::string::npos) << capture.err;
  EXPECT_NE(capture.err.find(kAdminGid), std::string::npos) << capture.err;
  EXPECT_FALSE(fs::exists(pcap)) << "a denied capture opened its file";
  // The raw protocol, not only voiceedgectl: the stream command on a read-only connection.
  auto raw = run({"setpriv", "--reuid=65534", "--regid=65534", "--groups=" + std::string(kReadGid), kPython, "-c",
                  "import socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                  "s.sendall(b'{\"cmd\":\"capture\",\"args\":{\"phone\":\"00:11:22:33:44:55\"}}\\n')\n"
                  "print(s.makefile().readline())",
                  d.socket().string()});
  EXPECT_NE(raw.out.find("permission-denied"), std::string::npos) << raw.out << raw.err;
  // An admin gets both; the report carries no password of the site file.
  const auto admin_out = (d.dir().path() / "admin.tar.gz").string();
  auto admin =
      ctl_as(d, std::string(kReadGid) + "," + kAdminGid, {"report", "00:11:22:33:44:55", "--output", admin_out});
  EXPECT_EQ(admin.exit_code, 0) << admin.err;
  auto listing = run({"tar", "-xzOf", admin_out});
  EXPECT_EQ(listing.exit_code, 0) << listing.err;
  EXPECT_NE(listing.out.find("<authName>1001</authName>"), std::string::npos) << "the config is not in the report";
  EXPECT_EQ(listing.out.find("sup3rs3cret"), std::string::npos) << "a password in the report";
  const auto admin_pcap = (d.dir().path() / "admin.pcapng").string();
  auto live = ctl_as(d, std::string(kReadGid) + "," + kAdminGid,
                     {"capture", "00:11:22:33:44:55", "--seconds", "1", "--write", admin_pcap});
  EXPECT_EQ(live.exit_code, 0) << live.err;
  EXPECT_NE(live.err.find("time limit reached"), std::string::npos) << live.err;
  EXPECT_NE(d.log().find("capture requested by uid 65534"), std::string::npos) << "captures are not on record";
}

TEST_F(DaemonSecurity, IdleClientsCannotLockOutTheAdministrator) {
  Daemon d(site());
  fs::permissions(d.dir().path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  ASSERT_TRUE(d.start()) << d.log();
  // 100 idle connections from a read-only user, held for 6 s: more than the 64 slots.
  d.dir().write("idle.py", R"PY(import socket, sys, time
held = []
for i in range(100):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    held.append(s)
print(len(held), flush=True)
time.sleep(6)
)PY");
  Child idle({"setpriv", "--reuid=65534", "--regid=65534", std::string("--groups=") + kReadGid, kPython,
              (d.dir() / "idle.py").string(), d.socket().string()},
             d.dir() / "idle.log");
  ASSERT_TRUE(eventually([&] { return read_file(d.dir() / "idle.log").find("100") != std::string::npos; }))
      << read_file(d.dir() / "idle.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // they are idle now
  // Today: "too many clients" for everyone. Now the admin always gets a slot...
  auto r = d.ctl({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // ... and so does another read-only call, by pushing out an idle session.
  auto reader = ctl_as(d, kReadGid, {"show", "phones"});
  EXPECT_EQ(reader.exit_code, 0) << reader.err;
  EXPECT_TRUE(idle.running()) << "the idle clients should still be there";
  EXPECT_TRUE(d.child().running());
}

// ---------------------------------------------------------------- file descriptors

TEST_F(DaemonSecurity, ConnectionFloodsCannotExhaustFileDescriptors) {
  // 512 descriptors: the caps must keep ~2100 connections from using them all.
  Daemon d(site(), {"prlimit", "--nofile=512:512"});
  ASSERT_TRUE(d.start()) << d.log();
  const auto ports = ports_of(d);
  ASSERT_NE(ports.sip_tcp, 0);
  ASSERT_NE(ports.http, 0);
  ASSERT_NE(ports.tftp, 0);
  EXPECT_NE(d.log().find("file descriptors: limit 512"), std::string::npos) << d.log();
  // Idle SIP TCP from 70 addresses (16 each, within the per-address limit) and 1000 HTTP
  // connections from one address; all held open.
  d.dir().write("flood.py", R"PY(import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
sip, http = int(sys.argv[1]), int(sys.argv[2])
held = []
def open_from(src, port):
    s = socket.socket()
    s.setblocking(False)
    s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    held.append(s)
for a in range(70):
    for i in range(16):
        open_from("127.0.1.%d" % (a + 1), sip)
for i in range(1000):
    open_from("127.0.0.1", http)
print("ready", len(held), flush=True)
time.sleep(30)
)PY");
  Child flood({kPython, (d.dir() / "flood.py").string(), std::to_string(ports.sip_tcp), std::to_string(ports.http)},
              d.dir() / "flood.log");
  ASSERT_TRUE(eventually([&] { return read_file(d.dir() / "flood.log").find("ready") != std::string::npos; },
                         std::chrono::seconds(30)))
      << read_file(d.dir() / "flood.log");
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the daemon works through its backlogs

  const auto log_before = d.log().size();
  const double cpu_before = cpu_seconds(d.child().pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_used = cpu_seconds(d.child().pid()) - cpu_before;
  const auto log_growth = d.log().size() - log_before;

  std::cout << "flooded daemon: " << cpu_used << " s CPU and " << log_growth << " log bytes in 2 s\n";
  // Everything a phone and an administrator need still answers.
  EXPECT_EQ(d.ctl({"version"}).exit_code, 0) << "control socket lost";
  EXPECT_TRUE(tftp_answers(ports.tftp)) << "TFTP lost";
  EXPECT_TRUE(http_answers(ports.http, "127.0.0.2")) << "HTTP 6970 lost for other clients";
  // And the state files can still be written (a phone's config download is an event).
  EXPECT_TRUE(http_answers(ports.http, "127.0.0.3"));
  // No spinning, no log flood (today: 100% CPU and > 20 MB/s of "Too many open files").
  EXPECT_LT(cpu_used, 0.5) << "the daemon burns CPU while flooded";
  EXPECT_LT(log_growth, 20000u) << "the log grows while nothing changes";
  EXPECT_LE(count(d.log(), "Too many open files"), 5u);
  // The caps did the work, and said so (rate-limited).
  const auto sip = d.ctl_json({"show", "sip", "registrations"});
  const auto prov = d.ctl_json({"show", "provision"});
  EXPECT_GT(sip["counters"].value("tcp_rejected", 0), 0) << sip.dump();
  EXPECT_GT(prov["counters"]["http"].value("busy", 0), 0) << prov.dump();
  EXPECT_LE(prov["http"].value("connections", 9999), 16) << "one address holds more than its per-client share";
  EXPECT_LE(count(d.log(), "http connection from 127.0.0.1 refused"), 5u) << "refusals are not rate-limited";
  flood.stop(SIGTERM);
  EXPECT_TRUE(d.child().running());
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// ---------------------------------------------------------------- reload onto taken ports

TEST_F(DaemonSecurity, ReloadOntoTakenPortsFailsAndKeepsTheOldListeners) {
  Daemon d(site());
  ASSERT_TRUE(d.start()) << d.log();
  const auto before = ports_of(d);
  ASSERT_NE(before.sip_tcp, 0);
  HeldPort tcp_taken(SOCK_STREAM);
  HeldPort udp_taken(SOCK_DGRAM);

  struct Case {
    std::string what;
    std::string yaml;
  };
  const std::vector<Case> cases = {
      {"sip", site("tcp:127.0.0.1:" + std::to_string(tcp_taken.port()))},
      {"provision (tftp)", site("tcp:127.0.0.1:0", "127.0.0.1:" + std::to_string(udp_taken.port()))},
      {"provision (http)", site("tcp:127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:" + std::to_string(tcp_taken.port()))},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    d.write_site(c.yaml);
    auto r = d.ctl({"reload"});
    EXPECT_EQ(r.exit_code, 1) << "a reload that leaves nothing listening reported success";
    EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
    const auto after = ports_of(d);
    EXPECT_EQ(after.sip_tcp, before.sip_tcp);
    EXPECT_EQ(after.tftp, before.tftp);
    EXPECT_EQ(after.http, before.http);
    EXPECT_TRUE(tcp_connects(before.sip_tcp)) << "the old SIP listener is gone";
    EXPECT_TRUE(tftp_answers(before.tftp)) << "the old TFTP listener is gone";
    EXPECT_TRUE(http_answers(before.http)) << "the old HTTP listener is gone";
  }
  // SIGHUP: the same, the error in the log.
  d.write_site(cases[0].yaml);
  ::kill(d.child().pid(), SIGHUP);
  EXPECT_TRUE(eventually([&] { return d.log().find("reload rejected: sip: tcp 127.0.0.1:") != std::string::npos; }))
      << d.log();
  EXPECT_TRUE(tcp_connects(before.sip_tcp));

  // A free port: the reload goes through, the new listener answers, the old one is closed.
  std::uint16_t free_port = 0;
  {
    HeldPort probe(SOCK_STREAM);
    free_port = probe.port();
  }
  d.write_site(site("tcp:127.0.0.1:" + std::to_string(free_port)));
  auto ok = d.ctl({"reload"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ports_of(d).sip_tcp, free_port);
  EXPECT_TRUE(tcp_connects(free_port));
  EXPECT_FALSE(tcp_connects(before.sip_tcp)) << "the old SIP listener was left open";
  EXPECT_TRUE(tftp_answers(ports_of(d).tftp));
}

// ---------------------------------------------------------------- damaged state files

std::vector<fs::path> set_aside(const fs::path& dir, const std::string& name) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(name + ".corrupt-")) out.push_back(e.path());
  return out;
}

TEST_F(DaemonSecurity, DamagedStateFilesAtStartAreSetAsideNotFatal) {
  Daemon d(site());
  const auto state = d.dir() / "state";
  fs::create_directories(state);
  {
    std::ofstream(state / "journey.sqlite") << std::string(5000, '\x7f') << "garbage";
    std::ofstream(state / "poe-state.json") << "{\"ports\": [1, 2";
  }
  ASSERT_TRUE(d.start()) << d.log();
  EXPECT_EQ(set_aside(state, "journey.sqlite").size(), 1u) << d.log();
  EXPECT_EQ(set_aside(state, "poe-state.json").size(), 1u) << d.log();
  EXPECT_EQ(count(d.log(), "journey.sqlite is damaged"), 1u) << d.log();
  EXPECT_TRUE(d.ctl_json({"show", "phones"}).is_array());
  EXPECT_EQ(d.stop(), 0);

  // A readable database with one malformed row (the crash loop of issue 13) and one good row.
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(state / (std::string("journey.sqlite") + suffix));
  const auto now_ms = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  d.dir().write("rows.py", R"PY(import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS phone_journey (mac TEXT PRIMARY KEY, data TEXT NOT NULL)")
db.execute("INSERT INTO phone_journey VALUES ('00:11:22:33:44:01', '{\"first_seen_ms\": \"not a number\"}')")
db.execute("INSERT INTO phone_journey VALUES ('00:11:22:33:44:55', ?)", ('{"first_seen_ms": %s, "last_seen_ms": %s, "steps": [{"step": 4, "outcome": "ok", "detail": "ack 10.0.0.9", "first_ms": %s, "last_ms": %s}], "facts": {"ip": "10.0.0.9"}, "history": []}' % ((sys.argv[2],) * 4),))
db.commit()
)PY");
  auto rows = run({kPython, (d.dir() / "rows.py").string(), (state / "journey.sqlite").string(), now_ms});
  ASSERT_EQ(rows.exit_code, 0) << rows.err;
  ASSERT_TRUE(d.start()) << "a malformed row stops the daemon:\n" << d.log();
  auto journey = d.ctl_json({"show", "journey", "00:11:22:33:44:55"});
  ASSERT_TRUE(journey.is_object()) << d.log();
  EXPECT_EQ(journey["steps"][3]["seen"], true);
  EXPECT_EQ(d.ctl({"show", "journey", "00:11:22:33:44:01"}).exit_code, 1);
  EXPECT_NE(d.log().find("1 unreadable timeline(s) skipped"), std::string::npos) << d.log();
}

TEST_F(DaemonSecurity, JourneyDatabaseDamagedWhileRunningIsRewrittenFromMemory) {
  Daemon d(site());
  ASSERT_TRUE(d.start()) << d.log();
  const auto state = d.dir() / "state";
  const auto ports = ports_of(d);
  // The listed phone asks for its config over HTTP: an event in its timeline, written at once.
  http_answers(ports.http);
  run({"curl", "-s", "-o", "/dev/null", "--max-time", "5",
       "http://127.0.0.1:" + std::to_string(ports.http) + "/SEP001122334455.cnf.xml"});
  ASSERT_TRUE(eventually([&] { return d.ctl({"show", "journey", "SEP001122334455"}).exit_code == 0; })) << d.log();
  // Someone overwrites the database under the running daemon.
  { std::ofstream(state / "journey.sqlite", std::ios::trunc) << std::string(8192, 'Z'); }
  // The next event finds the damage, sets the file aside and writes everything again.
  run({"curl", "-s", "-o", "/dev/null", "--max-time", "5",
       "http://127.0.0.1:" + std::to_string(ports.http) + "/CTLSEP001122334455.tlv"});
  ASSERT_TRUE(eventually([&] { return !set_aside(state, "journey.sqlite").empty(); })) << d.log();
  EXPECT_TRUE(d.child().running());
  EXPECT_EQ(d.stop(), 0) << d.log();
  // What the restarted daemon reads is the rewritten file, with the phone's timeline.
  ASSERT_TRUE(d.start()) << d.log();
  auto journey = d.ctl_json({"show", "journey", "SEP001122334455"});
  ASSERT_TRUE(journey.is_object()) << "the timeline was lost with the damaged file:\n" << d.log();
  EXPECT_FALSE(journey["history"].empty()) << journey.dump();
}

}  // namespace
}  // namespace ve::test
