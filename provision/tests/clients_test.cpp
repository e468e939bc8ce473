// Real clients (tftp-hpa's tftp, atftp, curl) against the servers on loopback, byte-compared.
#include <sys/wait.h>

#include <cstdio>

#include "provision/tests/server_fixture.hpp"

namespace ve::provision {
namespace {

using testing::ServerFixture;

struct Run {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command (with a hard time limit) and captures stdout+stderr.
Run run(const std::string& command) {
  Run r;
  const std::string full = "timeout 60 " + command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return r;
  char chunk[4096];
  while (std::size_t n = std::fread(chunk, 1, sizeof chunk, pipe)) r.output.append(chunk, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool have(const std::string& tool) { return run("sh -c 'command -v " + tool + "'").exit_code == 0; }

class ClientsTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    for (const char* tool : {"tftp", "atftp", "curl"}) {
      ASSERT_TRUE(have(tool)) << tool << " is not installed (scripts/deps installs tftp-hpa, atftp, curl)";
    }
    root_.write("big/sip78xx.14-2-1-0001-14.sbn", testing::random_bytes(3 * 1024 * 1024 + 123, 42));
  }
  std::string out(const std::string& name) const { return (out_.path() / name).string(); }
  std::string read_out(const std::string& name) const {
    std::ifstream in(out_.path() / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string tftp_port() const { return std::to_string(provisioner_->tftp_port()); }
  std::string http_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(provisioner_->http_port()) + path;
  }
  testing::TempDir out_;
};

TEST_F(ClientsTest, TftpHpaDownloadsGeneratedAndStaticFiles) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // these clients play the phone
  for (const std::string file :
       {"SEP001122334455.cnf.xml", "XMLDefault.cnf.xml", "dialplan.xml", "big/sip78xx.14-2-1-0001-14.sbn"}) {
    auto r = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get " + file + " " + out("got"));
    ASSERT_EQ(r.exit_code, 0) << file << ": " << r.output;
    const auto want = file.ends_with(".cnf.xml") ? generated(file) : content_of(file);
    EXPECT_EQ(read_out("got"), want) << file;
  }
  // Netascii (tftp-hpa's default mode) converts back to the original bytes on the client.
  auto r = run("tftp -m ascii 127.0.0.1 " + tftp_port() + " -c get dialplan.xml " + out("ascii"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_out("ascii"), content_of("dialplan.xml"));
}

TEST_F(ClientsTest, TftpHpaReportsNotFoundAndRefusal) {
  start();
  auto ctl = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get CTLSEP001122334455.tlv " + out("ctl"));
  EXPECT_NE(ctl.output.find("Error code 1"), std::string::npos) << ctl.output;
  auto escape = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get ../secret.txt " + out("esc"));
  EXPECT_NE(escape.output.find("Error code 2"), std::string::npos) << escape.output;
  auto put =
      run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c put " + (root_.path() / "dialplan.xml").string() + " x.xml");
  EXPECT_NE(put.output.find("Error code 2"), std::string::npos) << put.output;
  EXPECT_FALSE(std::filesystem::exists(root_.path() / "x.xml"));
}

TEST_F(ClientsTest, AtftpWithBlksizeTsizeWindowsize) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // these clients play the phone
  const std::string opts = "--option 'blksize 1428' --option 'tsize 0' --option 'windowsize 16' ";
  for (const std::string file :
       {"SEP001122334455.cnf.xml", "big/sip78xx.14-2-1-0001-14.sbn", "/English_United_States/sp-sip.jar"}) {
    std::filesystem::remove(out_.path() / "got");
    auto r = run("atftp --trace " + opts + "-g -r " + file + " -l " + out("got") + " 127.0.0.1 " + tftp_port());
    ASSERT_EQ(r.exit_code, 0) << file << ": " << r.output;
    const std::string relative = file.front() == '/' ? file.substr(1) : file;
    EXPECT_EQ(read_out("got"), relative.ends_with(".cnf.xml") ? generated(relative) : content_of(relative)) << file;
    // atftp's trace shows the OACK the server sent.
    const auto at = r.output.find("received OACK <");
    ASSERT_NE(at, std::string::npos) << r.output.substr(0, 2000);
    const auto oack = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_NE(oack.find("windowsize: 16"), std::string::npos) << oack;
    EXPECT_NE(oack.find("blksize: 1428"), std::string::npos) << oack;
    EXPECT_NE(oack.find("tsize: " + std::to_string(read_out("got").size())), std::string::npos) << oack;
  }
  // Largest block size, plain lockstep.
  auto big = run("atftp --option 'blksize 65464' -g -r big/sip78xx.14-2-1-0001-14.sbn -l " + out("big") +
                 " 127.0.0.1 " + tftp_port());
  ASSERT_EQ(big.exit_code, 0) << big.output;
  EXPECT_EQ(read_out("big"), content_of("big/sip78xx.14-2-1-0001-14.sbn"));
  auto missing = run("atftp -g -r ITLFile.tlv -l " + out("itl") + " 127.0.0.1 " + tftp_port());
  EXPECT_NE(missing.exit_code, 0);
}

TEST_F(ClientsTest, CurlOverTftp) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // these clients play the phone
  const std::string base = "tftp://127.0.0.1:" + tftp_port() + "/";
  auto plain = run("curl -sS --tftp-no-options -o " + out("a") + " " + base + "SEP001122334455.cnf.xml");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(read_out("a"), generated("SEP001122334455.cnf.xml"));
  auto blk = run("curl -sS --tftp-blksize 1428 -o " + out("b") + " " + base + "big/sip78xx.14-2-1-0001-14.sbn");
  ASSERT_EQ(blk.exit_code, 0) << blk.output;
  EXPECT_EQ(read_out("b"), content_of("big/sip78xx.14-2-1-0001-14.sbn"));
  auto missing = run("curl -sS -o " + out("c") + " " + base + "CTLSEP001122334455.tlv");
  EXPECT_EQ(missing.exit_code, 68) << missing.output;  // CURLE_TFTP_NOTFOUND
}

TEST_F(ClientsTest, CurlOverHttp6970) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // these clients play the phone
  // Two files over one connection (keep-alive): curl reports one connect.
  auto two = run("curl -sS -w '%{num_connects} ' -o " + out("a") + " " + http_url("/SEP001122334455.cnf.xml") + " -o " +
                 out("b") + " " + http_url("/big/sip78xx.14-2-1-0001-14.sbn"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(two.output, "1 0 ");
  EXPECT_EQ(read_out("a"), generated("SEP001122334455.cnf.xml"));
  EXPECT_EQ(read_out("b"), content_of("big/sip78xx.14-2-1-0001-14.sbn"));
  auto range = run("curl -sS -r 1000-1999 -o " + out("r") + " " + http_url("/big/sip78xx.14-2-1-0001-14.sbn"));
  ASSERT_EQ(range.exit_code, 0) << range.output;
  EXPECT_EQ(read_out("r"), content_of("big/sip78xx.14-2-1-0001-14.sbn").substr(1000, 1000));
  auto head = run("curl -sS -I " + http_url("/dialplan.xml"));
  EXPECT_NE(head.output.find("Content-Length: " + std::to_string(content_of("dialplan.xml").size())), std::string::npos)
      << head.output;
  auto missing = run("curl -s -o /dev/null -w '%{http_code}' " + http_url("/ITLSEP001122334455.tlv"));
  EXPECT_EQ(missing.output, "404");
  auto post = run("curl -s -o /dev/null -w '%{http_code}' -X POST " + http_url("/dialplan.xml"));
  EXPECT_EQ(post.output, "405");
  auto traversal = run("curl -s --path-as-is -o /dev/null -w '%{http_code}' " + http_url("/../secret.txt"));
  EXPECT_EQ(traversal.output, "403");
}

TEST_F(ClientsTest, ManyConcurrentClientsOnOneThread) {
  ProvisionerOptions o;
  o.tftp.max_per_client = 200;
  start(o);
  // 100 atftp processes at once against the single-threaded server; every copy must be exact.
  root_.write("storm.sbn", testing::random_bytes(256 * 1024 + 5, 77));
  {
    std::ofstream script(out_.path() / "many.sh");
    script << "set -e\npids=\nfor i in $(seq 1 100); do\n  atftp --option 'blksize 1428' --option 'windowsize 8' -g -r "
              "storm.sbn -l "
           << out("c") << "$i 127.0.0.1 " << tftp_port()
           << " &\n  pids=\"$pids $!\"\n"
              "done\nfor p in $pids; do wait $p; done\n";
  }
  auto r = run("bash " + out("many.sh"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = content_of("storm.sbn");
  for (int i = 1; i <= 100; ++i) EXPECT_EQ(read_out("c" + std::to_string(i)), want) << i;
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  EXPECT_EQ(provisioner_->counters().tftp_ok, 100u);
}

// issue 13: atftp 0.8 sends the word after "tsize" as the value; main answered error 8 and the
// transfer failed. Now the option is ignored (RFC 2347) and the file arrives.
TEST_F(ClientsTest, AtftpTsizeEnableIsIgnoredNotRefused) {
  start();
  for (const std::string opts : {"--option 'tsize enable'", "--option 'tsize enable' --option 'blksize 1428'",
                                 "--option 'timeout 255'", "--option 'blksize 7'"}) {
    std::filesystem::remove(out_.path() / "got");
    auto r = run("atftp --trace " + opts + " -g -r dialplan.xml -l " + out("got") + " 127.0.0.1 " + tftp_port());
    ASSERT_EQ(r.exit_code, 0) << opts << ": " << r.output;
    EXPECT_EQ(read_out("got"), content_of("dialplan.xml")) << opts;
    EXPECT_EQ(r.output.find("received ERROR"), std::string::npos) << opts << ": " << r.output;
    // The capped timeout is not acknowledged (the client keeps its own).
    if (const auto at = r.output.find("received OACK"); at != std::string::npos) {
      const auto oack = r.output.substr(at, r.output.find('\n', at) - at);
      EXPECT_EQ(oack.find("timeout"), std::string::npos) << oack;
    }
  }
  // The client exits once it sent its last ACK; the server counts the transfer when it read it.
  EXPECT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_ok == 4u; }));
}

TEST_F(ClientsTest, CurlPutAndPostWithABodyGet405WithAllow) {
  start();
  for (const std::string& how :
       std::vector<std::string>{"-X PUT --data-binary @" + (root_.path() / "dialplan.xml").string(), "-d 'a=b'"}) {
    auto r = run("curl -s -o /dev/null -D - -w 'status=%{http_code}' " + how + " " + http_url("/dialplan.xml"));
    EXPECT_NE(r.output.find("status=405"), std::string::npos) << how << ": " << r.output;
    EXPECT_NE(r.output.find("Allow: GET, HEAD"), std::string::npos) << how << ": " << r.output;
  }
}

// issue 12: a PC on the voice VLAN (here 127.0.0.1, with a lease of its own) asks for a phone's
// config with every client and spelling; each answer is the one for a file that does not exist.
// The phone (127.0.0.2, curl bound to it) still gets its config.
TEST_F(ClientsTest, PhoneConfigIsNotFoundForEveryOtherHost) {
  ProvisionerOptions o;
  o.lease_wait = std::chrono::milliseconds(300);
  start(o);
  lease("127.0.0.2", "00:11:22:33:44:55");
  lease("127.0.0.1", "02:00:00:00:00:66");
  const std::string tftp = "tftp://127.0.0.1:" + tftp_port() + "/";
  for (const std::string name : {"SEP001122334455.cnf.xml", "sep001122334455.cnf.xml", "/SEP001122334455.CNF.XML"}) {
    auto hpa = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get " + name + " " + out("hpa"));
    EXPECT_NE(hpa.output.find("Error code 1: File not found"), std::string::npos) << name << ": " << hpa.output;
    auto at = run("atftp --option 'tsize 0' -g -r " + name + " -l " + out("at") + " 127.0.0.1 " + tftp_port());
    EXPECT_NE(at.exit_code, 0) << name;
    EXPECT_NE(at.output.find("File not found"), std::string::npos) << name << ": " << at.output;
    auto curl_tftp = run("curl -sS -o " + out("ct") + " " + tftp + name);
    EXPECT_EQ(curl_tftp.exit_code, 68) << name << ": " << curl_tftp.output;  // CURLE_TFTP_NOTFOUND
  }
  // The same clients on a config that does not exist print the same thing.
  auto hpa_missing = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get SEP0011223344AA.cnf.xml " + out("m"));
  auto hpa_refused = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get SEP001122334455.cnf.xml " + out("m"));
  EXPECT_EQ(hpa_refused.output, hpa_missing.output);
  for (const std::string path :
       {"/SEP001122334455.cnf.xml", "//SEP001122334455.cnf.xml", "/%53EP001122334455.cnf.xml"}) {
    auto r = run("curl -s --path-as-is -o /dev/null -w '%{http_code}' " + http_url(path));
    EXPECT_EQ(r.output, "404") << path;
  }
  auto missing_headers = run("curl -s -D - -o /dev/null " + http_url("/SEP0011223344AA.cnf.xml"));
  auto refused_headers = run("curl -s -D - -o /dev/null " + http_url("/SEP001122334455.cnf.xml"));
  EXPECT_EQ(refused_headers.output, missing_headers.output);
  // The phone.
  auto phone_tftp = run("curl -sS --interface 127.0.0.2 -o " + out("p1") + " " + tftp + "SEP001122334455.cnf.xml");
  ASSERT_EQ(phone_tftp.exit_code, 0) << phone_tftp.output;
  EXPECT_EQ(read_out("p1"), generated("SEP001122334455.cnf.xml"));
  auto phone_http = run("curl -sS --interface 127.0.0.2 -o " + out("p2") + " " + http_url("/SEP001122334455.cnf.xml"));
  ASSERT_EQ(phone_http.exit_code, 0) << phone_http.output;
  EXPECT_EQ(read_out("p2"), generated("SEP001122334455.cnf.xml"));
  // Open files stay open for everyone.
  auto defaults = run("tftp -m binary 127.0.0.1 " + tftp_port() + " -c get XMLDefault.cnf.xml " + out("d"));
  EXPECT_EQ(read_out("d"), generated("XMLDefault.cnf.xml")) << defaults.output;
  const auto c = provisioner_->counters();
  EXPECT_EQ(c.tftp_config_refused, 3u * 3u + 1u);
  EXPECT_EQ(c.http_config_refused, 4u);
  for (const auto& e : sink_.events()) {
    if (e.mac == *MacAddress::parse("00:11:22:33:44:55") && !e.ip.empty()) {
      EXPECT_EQ(e.ip, "127.0.0.2") << e.detail;
    }
  }
}

}  // namespace
}  // namespace ve::provision
