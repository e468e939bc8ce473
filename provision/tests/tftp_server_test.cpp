// The TFTP server against a hand-driven client on loopback: every packet is checked.
#include <algorithm>
#include <map>
#include <thread>

#include "provision/tests/server_fixture.hpp"

namespace ve::provision {
namespace {

using namespace std::chrono_literals;
using testing::ServerFixture;
namespace t = tftp;

// A blocking UDP client on 127.0.0.1 that sends raw TFTP packets and receives with a deadline.
class UdpClient {
 public:
  // `source`: another loopback address (127.0.0.2) plays a second host on the VLAN.
  explicit UdpClient(const char* source = "127.0.0.1") : fd_(::socket(AF_INET, SOCK_DGRAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &a.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  ~UdpClient() { close(); }
  UdpClient(const UdpClient&) = delete;
  UdpClient& operator=(const UdpClient&) = delete;
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(std::uint16_t port, const std::vector<std::byte>& bytes) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  struct Datagram {
    std::vector<std::byte> bytes;
    std::uint16_t from_port = 0;
  };
  std::optional<Datagram> receive(std::chrono::milliseconds timeout = 3s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    Datagram d;
    d.bytes.resize(70000);
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const auto n = ::recvfrom(fd_, d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return std::nullopt;
    d.bytes.resize(static_cast<std::size_t>(n));
    d.from_port = ntohs(from.sin_port);
    return d;
  }
  std::optional<t::Packet> receive_packet(std::uint16_t* from_port = nullptr, std::chrono::milliseconds timeout = 3s) {
    auto d = receive(timeout);
    if (!d) return std::nullopt;
    last_ = std::move(d->bytes);
    if (from_port) *from_port = d->from_port;
    auto p = t::decode(last_);
    if (!p) return std::nullopt;
    return *p;
  }

 private:
  int fd_;
  std::vector<std::byte> last_;  // DATA payload views point here
};

t::Request rrq(const std::string& name, std::vector<t::Option> options = {}, t::Mode mode = t::Mode::Octet) {
  return t::Request{false, name, mode, std::move(options)};
}

// Runs a whole read as a well-behaved client and returns the file (or an error text).
struct Download {
  std::string content;
  std::optional<t::Error> error;
  std::vector<t::Option> oack;
  std::vector<std::uint16_t> blocks;  // wire block numbers in order received
};

Download download(UdpClient& client, std::uint16_t port, const t::Request& request) {
  Download out;
  client.send(port, t::encode(request));
  std::uint16_t tid = 0;
  std::uint64_t expected = 1;
  std::size_t blksize = 512;
  for (;;) {
    std::uint16_t from = 0;
    auto p = client.receive_packet(&from);
    if (!p) {
      out.error = t::Error{t::ErrorCode::NotDefined, "no answer"};
      return out;
    }
    if (tid == 0) tid = from;
    if (auto* e = std::get_if<t::Error>(&*p)) {
      out.error = *e;
      return out;
    }
    if (auto* o = std::get_if<t::OptionAck>(&*p)) {
      out.oack = o->options;
      for (const auto& opt : o->options) {
        if (opt.name == "blksize") blksize = std::stoul(opt.value);
      }
      client.send(tid, t::encode(t::Ack{0}));
      continue;
    }
    auto* d = std::get_if<t::Data>(&*p);
    if (d == nullptr) continue;
    if (d->block != static_cast<std::uint16_t>(expected)) continue;  // out of order: wait for resend
    out.blocks.push_back(d->block);
    out.content.append(reinterpret_cast<const char*>(d->payload.data()), d->payload.size());
    std::size_t window = 1;
    for (const auto& opt : out.oack) {
      if (opt.name == "windowsize") window = std::stoul(opt.value);
    }
    const bool last = d->payload.size() < blksize;
    if (last || expected % window == 0) client.send(tid, t::encode(t::Ack{d->block}));
    if (last) return out;
    ++expected;
  }
}

class TftpServerTest : public ServerFixture {};

TEST_F(TftpServerTest, SendsRenderedConfigWithoutOptions) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");
  UdpClient client;
  auto d = download(client, provisioner_->tftp_port(), rrq("SEP001122334455.cnf.xml"));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_TRUE(d.oack.empty());
  EXPECT_EQ(d.content, generated("SEP001122334455.cnf.xml"));
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  const auto events = sink_.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].mac, *MacAddress::parse("00:11:22:33:44:55"));
  EXPECT_EQ(events[0].step, Step::ConfigFile);
  EXPECT_EQ(events[0].outcome, Outcome::Ok);
  EXPECT_EQ(events[0].ip, "127.0.0.1");
}

TEST_F(TftpServerTest, NegotiatesBlksizeTsizeWindowsize) {
  start();
  UdpClient client;
  auto d = download(
      client, provisioner_->tftp_port(),
      rrq("kern78xx.14-2-1-0001-14.sbn", {{"blksize", "1428"}, {"tsize", "0"}, {"windowsize", "16"}, {"foo", "1"}}));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_EQ(d.oack, (std::vector<t::Option>{
                        {"blksize", "1428"}, {"tsize", std::to_string(300 * 1024 + 7)}, {"windowsize", "16"}}));
  EXPECT_EQ(d.content, content_of("kern78xx.14-2-1-0001-14.sbn"));
}

TEST_F(TftpServerTest, SizeThatIsAMultipleOfBlksizeEndsWithEmptyBlock) {
  start();
  UdpClient client;
  auto d = download(client, provisioner_->tftp_port(), rrq("exact512.bin"));
  ASSERT_FALSE(d.error);
  EXPECT_EQ(d.blocks, (std::vector<std::uint16_t>{1, 2, 3}));
  EXPECT_EQ(d.content, content_of("exact512.bin"));
}

TEST_F(TftpServerTest, BlockNumbersRollOverPast65535) {
  // 8-byte blocks: a 600 kB file needs 76800 blocks, so numbering wraps to 0 once.
  root_.write("big.sbn", testing::random_bytes(600 * 1024, 9));
  start();
  UdpClient client;
  auto d = download(client, provisioner_->tftp_port(), rrq("big.sbn", {{"blksize", "8"}, {"windowsize", "64"}}));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_EQ(d.content, content_of("big.sbn"));
  ASSERT_EQ(d.blocks.size(), 76801u);
  EXPECT_EQ(d.blocks[65534], 65535);
  EXPECT_EQ(d.blocks[65535], 0);
  EXPECT_EQ(d.blocks[65536], 1);
}

// RFC 7440 recovery, driven by hand with 8-byte blocks and a window of 4 over a 100-byte file
// (blocks 1..13, the last 4 bytes): an ACK inside the window restarts from the block after it, a
// silent client gets the unacknowledged window again, and the file arrives whole. Run with the
// window sent by UDP GSO and by sendmmsg.
class TftpWindowTest : public ServerFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(TftpWindowTest, AckInsideTheWindowAndSilenceResendTheRest) {
  const std::string file = testing::random_bytes(100, 21);
  root_.write("w100.bin", file);
  ProvisionerOptions o;
  o.tftp.retransmit_timeout = 200ms;
  o.tftp.gso = GetParam();
  start(o);
  UdpClient client;
  client.send(provisioner_->tftp_port(), t::encode(rrq("w100.bin", {{"blksize", "8"}, {"windowsize", "4"}})));
  std::uint16_t tid = 0;
  auto oack = client.receive_packet(&tid);
  ASSERT_TRUE(oack && std::holds_alternative<t::OptionAck>(*oack));
  client.send(tid, t::encode(t::Ack{0}));
  // Receives the next `count` DATA packets; returns their block numbers, keeps their payloads.
  std::map<std::uint16_t, std::string> got;
  auto receive = [&](int count) {
    std::vector<std::uint16_t> blocks;
    for (int i = 0; i < count; ++i) {
      auto p = client.receive_packet();
      if (!p || !std::holds_alternative<t::Data>(*p)) break;
      const auto& d = std::get<t::Data>(*p);
      blocks.push_back(d.block);
      got[d.block] = std::string(reinterpret_cast<const char*>(d.payload.data()), d.payload.size());
    }
    return blocks;
  };
  EXPECT_EQ(receive(4), (std::vector<std::uint16_t>{1, 2, 3, 4}));
  client.send(tid, t::encode(t::Ack{2}));  // "3 and 4 were lost"
  EXPECT_EQ(receive(4), (std::vector<std::uint16_t>{3, 4, 5, 6}));
  // No ACK: after the retransmit timeout the same window again, nothing before it.
  EXPECT_EQ(receive(4), (std::vector<std::uint16_t>{3, 4, 5, 6}));
  client.send(tid, t::encode(t::Ack{6}));
  EXPECT_EQ(receive(4), (std::vector<std::uint16_t>{7, 8, 9, 10}));
  client.send(tid, t::encode(t::Ack{10}));
  EXPECT_EQ(receive(3), (std::vector<std::uint16_t>{11, 12, 13}));
  EXPECT_EQ(got[13].size(), 4u);
  client.send(tid, t::encode(t::Ack{13}));
  std::string whole;
  for (const auto& [block, payload] : got) whole += payload;
  EXPECT_EQ(whole, file);
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_ok == 1u; }));
  EXPECT_EQ(provisioner_->counters().tftp_retransmits, 1u);
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 0u);
}

INSTANTIATE_TEST_SUITE_P(GsoAndSendmmsg, TftpWindowTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "Gso" : "Sendmmsg"; });

// Many windowed downloads at once spread over the worker threads; every one arrives whole and is
// counted once (the limits and records live on the io thread, the transfers on the workers).
TEST_F(TftpServerTest, ConcurrentWindowedDownloadsOnSeveralWorkersAllArriveWhole) {
  ProvisionerOptions o;
  o.tftp.workers = 3;
  start(o);
  constexpr int kClients = 12;
  std::vector<std::thread> threads;
  std::vector<Download> results(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      UdpClient client;
      results[static_cast<std::size_t>(i)] =
          download(client, provisioner_->tftp_port(),
                   rrq("kern78xx.14-2-1-0001-14.sbn", {{"blksize", i % 2 ? "1428" : "512"}, {"windowsize", "16"}}));
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& d : results) {
    ASSERT_FALSE(d.error) << d.error->message;
    EXPECT_EQ(d.content, content_of("kern78xx.14-2-1-0001-14.sbn"));
  }
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_ok == std::uint64_t{kClients}; }));
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 0u);
  EXPECT_EQ(provisioner_->recent().size(), static_cast<std::size_t>(kClients));
}

TEST_F(TftpServerTest, DuplicateAcksDoNotTriggerResends) {
  ProvisionerOptions o;
  o.tftp.retransmit_timeout = 2s;
  start(o);
  UdpClient client;
  client.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml", {{"blksize", "8"}})));
  std::uint16_t tid = 0;
  auto oack = client.receive_packet(&tid);
  ASSERT_TRUE(oack && std::holds_alternative<t::OptionAck>(*oack));
  client.send(tid, t::encode(t::Ack{0}));
  auto first = client.receive_packet();
  ASSERT_TRUE(first && std::get<t::Data>(*first).block == 1);
  // The apprentice: three ACKs for block 1 must produce exactly one DATA 2.
  for (int i = 0; i < 3; ++i) client.send(tid, t::encode(t::Ack{1}));
  auto second = client.receive_packet();
  ASSERT_TRUE(second && std::get<t::Data>(*second).block == 2);
  EXPECT_FALSE(client.receive(300ms)) << "a duplicate ACK caused a resend";
  // Stale ACK 0 is ignored too.
  client.send(tid, t::encode(t::Ack{0}));
  EXPECT_FALSE(client.receive(300ms));
}

TEST_F(TftpServerTest, RetransmitsOnTimeoutThenGivesUpAndReleasesTheTransfer) {
  ProvisionerOptions o;
  o.tftp.retransmit_timeout = 100ms;
  o.tftp.max_retries = 2;
  start(o);
  UdpClient client;
  client.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml")));
  int copies = 0;
  while (auto p = client.receive_packet(nullptr, 1s)) {
    ASSERT_EQ(std::get<t::Data>(*p).block, 1);
    ++copies;
  }
  EXPECT_EQ(copies, 3);  // first send + 2 retries
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  EXPECT_EQ(provisioner_->counters().tftp_retransmits, 2u);
  const auto recent = provisioner_->recent();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].result, "timeout");
  EXPECT_EQ(recent[0].outcome, Outcome::Failed);
}

TEST_F(TftpServerTest, ClientVanishingMidTransferReleasesIt) {
  ProvisionerOptions o;
  o.tftp.retransmit_timeout = 100ms;
  o.tftp.max_retries = 3;
  start(o);
  {
    UdpClient client;
    client.send(provisioner_->tftp_port(), t::encode(rrq("kern78xx.14-2-1-0001-14.sbn")));
    auto p = client.receive_packet();
    ASSERT_TRUE(p);
    client.close();  // the next send from the server meets a closed port
  }
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  const auto recent = provisioner_->recent();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].outcome, Outcome::Failed);
  EXPECT_TRUE(recent[0].result == "client-gone" || recent[0].result == "timeout") << recent[0].result;
}

TEST_F(TftpServerTest, ClientErrorEndsTransfer) {
  start();
  UdpClient client;
  client.send(provisioner_->tftp_port(), t::encode(rrq("kern78xx.14-2-1-0001-14.sbn")));
  std::uint16_t tid = 0;
  ASSERT_TRUE(client.receive_packet(&tid));
  client.send(tid, t::encode(t::Error{t::ErrorCode::NotDefined, "user abort"}));
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  EXPECT_EQ(provisioner_->recent().at(0).result, "client-error");
}

TEST_F(TftpServerTest, NetasciiModeConvertsLineEnds) {
  start();
  UdpClient client;
  auto d = download(client, provisioner_->tftp_port(), rrq("dialplan.xml", {}, t::Mode::Netascii));
  ASSERT_FALSE(d.error);
  EXPECT_EQ(d.content, "<DIALTEMPLATE>\r\n</DIALTEMPLATE>\r\n");
}

struct Abuse {
  const char* what;
  std::vector<std::byte> packet;
  t::ErrorCode expected;
};

TEST_F(TftpServerTest, RefusesOrSurvivesTheAbuseList) {
  using namespace std::string_literals;
  auto raw = [](const std::string& s) {
    std::vector<std::byte> v;
    for (char c : s) v.push_back(static_cast<std::byte>(c));
    return v;
  };
  start();
  const std::vector<Abuse> abuse = {
      {"traversal", t::encode(rrq("../secret.txt")), t::ErrorCode::AccessViolation},
      {"deep traversal", t::encode(rrq("English_United_States/../../../etc/passwd")), t::ErrorCode::AccessViolation},
      {"absolute path", t::encode(rrq("/etc/passwd")), t::ErrorCode::FileNotFound},
      {"symlink escape", t::encode(rrq("escape.txt")), t::ErrorCode::AccessViolation},
      {"over-long name", t::encode(rrq(std::string(400, 'a'))), t::ErrorCode::AccessViolation},
      {"control character", t::encode(rrq("dial\x01plan.xml")), t::ErrorCode::AccessViolation},
      {"write request", t::encode(t::Request{true, "SEP001122334455.cnf.xml", t::Mode::Octet, {}}),
       t::ErrorCode::AccessViolation},
      {"missing file", t::encode(rrq("nothere.xml")), t::ErrorCode::FileNotFound},
      {"mail mode", t::encode(rrq("dialplan.xml", {}, t::Mode::Mail)), t::ErrorCode::IllegalOperation},
      {"unknown opcode", raw("\x00\x09hello\0"s), t::ErrorCode::IllegalOperation},
      {"truncated", raw("\x00"s), t::ErrorCode::IllegalOperation},
      {"empty datagram", {}, t::ErrorCode::IllegalOperation},
      {"unterminated name",
       raw("\x00\x01"
           "dialplan.xml"s),
       t::ErrorCode::IllegalOperation},
      {"bad mode",
       raw("\x00\x01"
           "dialplan.xml\0binary\0"s),
       t::ErrorCode::IllegalOperation},
      {"stray ACK", t::encode(t::Ack{1}), t::ErrorCode::UnknownTransferId},
  };
  UdpClient client;
  for (const auto& a : abuse) {
    client.send(provisioner_->tftp_port(), a.packet);
    auto p = client.receive_packet();
    ASSERT_TRUE(p) << a.what;
    auto* e = std::get_if<t::Error>(&*p);
    ASSERT_NE(e, nullptr) << a.what;
    EXPECT_EQ(e->code, a.expected) << a.what;
  }
  // A stray ERROR is dropped without an answer (answering errors could loop).
  client.send(provisioner_->tftp_port(), t::encode(t::Error{t::ErrorCode::NotDefined, "x"}));
  EXPECT_FALSE(client.receive(200ms));
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 0u);
  // Still serving.
  auto d = download(client, provisioner_->tftp_port(), rrq("XMLDefault.cnf.xml"));
  ASSERT_FALSE(d.error);
  EXPECT_EQ(d.content, generated("XMLDefault.cnf.xml"));
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_ok == 1u; }));
  const auto c = provisioner_->counters();
  EXPECT_GE(c.tftp_malformed, 6u);
  EXPECT_EQ(c.tftp_refused, 6u);
}

TEST_F(TftpServerTest, PacketsFromAnotherPortDoNotDisturbATransfer) {
  start();
  UdpClient client;
  UdpClient intruder;
  client.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml", {{"blksize", "8"}})));
  std::uint16_t tid = 0;
  ASSERT_TRUE(client.receive_packet(&tid));  // OACK
  intruder.send(tid, t::encode(t::Ack{0}));
  intruder.send(tid, t::encode(t::Error{t::ErrorCode::NotDefined, "go away"}));
  EXPECT_FALSE(intruder.receive(200ms));
  client.send(tid, t::encode(t::Ack{0}));
  auto p = client.receive_packet();
  ASSERT_TRUE(p && std::holds_alternative<t::Data>(*p));
  EXPECT_EQ(std::get<t::Data>(*p).block, 1);
}

TEST_F(TftpServerTest, EnforcesPerClientAndTotalLimits) {
  ProvisionerOptions o;
  o.tftp.max_per_client = 2;
  o.tftp.max_transfers = 3;
  o.tftp.retransmit_timeout = 5s;
  start(o);
  UdpClient a;
  for (int i = 0; i < 2; ++i) {
    a.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml")));
    auto p = a.receive_packet();
    ASSERT_TRUE(p && std::holds_alternative<t::Data>(*p));
  }
  a.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml")));
  auto busy = a.receive_packet();
  ASSERT_TRUE(busy && std::holds_alternative<t::Error>(*busy));
  EXPECT_EQ(std::get<t::Error>(*busy).code, t::ErrorCode::NotDefined);
  // The same host from another port counts as the same client (address, not port).
  UdpClient b;
  b.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml")));
  auto busy_b = b.receive_packet();
  ASSERT_TRUE(busy_b && std::holds_alternative<t::Error>(*busy_b));
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 2u);
  EXPECT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_busy == 2u; }));
}

TEST_F(TftpServerTest, PhoneRequestOrderGivesStepEvents) {
  start();
  lease("127.0.0.1", "00:11:22:33:44:55");  // DHCP knows the phone before it names itself
  UdpClient client;
  struct Want {
    std::string file;
    bool found;
    Step step;
    Outcome outcome;
  };
  const std::vector<Want> order = {
      {"ITLFile.tlv", false, Step::ItlFile, Outcome::Expected},
      {"CTLSEP001122334455.tlv", false, Step::CtlFile, Outcome::Expected},
      {"ITLSEP001122334455.tlv", false, Step::ItlFile, Outcome::Expected},
      {"SEP001122334455.cnf.xml", true, Step::ConfigFile, Outcome::Ok},
      {"sip78xx.14-2-1-0001-14.loads", true, Step::FirmwareLoad, Outcome::Ok},
      {"kern78xx.14-2-1-0001-14.sbn", true, Step::FirmwareLoad, Outcome::Ok},
      {"dialplan.xml", true, Step::DialRules, Outcome::Ok},
      {"/English_United_States/sp-sip.jar", true, Step::Locale, Outcome::Ok},
      {"softkeys.xml", true, Step::Softkeys, Outcome::Ok},
      {"Ringlist-wb.xml", true, Step::Ringtones, Outcome::Ok},
      {"DistinctiveRingList.xml", false, Step::Ringtones, Outcome::Failed},
  };
  for (const auto& w : order) {
    auto d = download(client, provisioner_->tftp_port(), rrq(w.file, {{"blksize", "1428"}, {"tsize", "0"}}));
    if (w.found) {
      ASSERT_FALSE(d.error) << w.file << ": " << d.error->message;
      const auto relative = w.file.front() == '/' ? w.file.substr(1) : w.file;
      EXPECT_EQ(d.content, w.file.starts_with("SEP") ? generated(w.file) : content_of(relative)) << w.file;
    } else {
      ASSERT_TRUE(d.error) << w.file;
      EXPECT_EQ(d.error->code, t::ErrorCode::FileNotFound) << w.file;
    }
  }
  ASSERT_TRUE(testing::eventually([&] { return sink_.events().size() == order.size(); }));
  // A transfer's end is reported from its worker thread, so the sink may receive the next
  // request's "not found" first; the events' times keep the phone's order (the journey orders by them).
  auto events = sink_.events();
  std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
  for (std::size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(events[i].step, order[i].step) << order[i].file;
    EXPECT_EQ(events[i].outcome, order[i].outcome) << order[i].file;
    EXPECT_EQ(events[i].mac, *MacAddress::parse("00:11:22:33:44:55")) << order[i].file;
    EXPECT_NE(events[i].detail.find(order[i].file), std::string::npos) << events[i].detail;
  }
  const auto c = provisioner_->counters();
  EXPECT_EQ(c.tftp_ok, 7u);
  EXPECT_EQ(c.tftp_not_found, 4u);
}

// ---------------------------------------------------------------- the hostile voice VLAN

// The raw answer to one request, whatever it is (the first datagram back).
std::vector<std::byte> first_answer(UdpClient& client, std::uint16_t port, const t::Request& request,
                                    std::chrono::milliseconds timeout = 3s) {
  client.send(port, t::encode(request));
  auto d = client.receive(timeout);
  return d ? d->bytes : std::vector<std::byte>{};
}

const MacAddress kPhone = *MacAddress::parse("00:11:22:33:44:55");

TEST_F(TftpServerTest, PhoneConfigGoesOnlyToTheAddressLeasedToThatPhone) {
  ProvisionerOptions o;
  o.lease_wait = 300ms;
  start(o);
  lease("127.0.0.2", "00:11:22:33:44:55");  // the phone
  lease("127.0.0.1", "02:00:00:00:00:66");  // a PC on the phone's PC port: a lease of its own
  UdpClient attacker("127.0.0.1");
  UdpClient unleased("127.0.0.3");
  const auto port = provisioner_->tftp_port();
  // What a file that does not exist looks like, byte for byte.
  const auto missing = first_answer(attacker, port, rrq("SEP0011223344AA.cnf.xml"));
  ASSERT_FALSE(missing.empty());
  auto decoded = t::decode(missing);
  ASSERT_TRUE(decoded);
  ASSERT_EQ(std::get<t::Error>(*decoded).code, t::ErrorCode::FileNotFound);
  const std::vector<std::string> spellings = {"SEP001122334455.cnf.xml",   "sep001122334455.CNF.XML",
                                              "//SEP001122334455.cnf.xml", "/SEP001122334455.cnf.xml",
                                              "./SEP001122334455.cnf.xml", "SEP001122334455.cnf.xml.sgn"};
  for (const auto& name : spellings) {
    EXPECT_EQ(first_answer(attacker, port, rrq(name)), missing) << name;
    EXPECT_EQ(first_answer(attacker, port, rrq(name, {{"blksize", "1428"}, {"tsize", "0"}})), missing) << name;
    EXPECT_EQ(first_answer(unleased, port, rrq(name)), missing) << name << " from an address without a lease";
  }
  // The phone itself gets it.
  UdpClient phone("127.0.0.2");
  auto d = download(phone, port, rrq("SEP001122334455.cnf.xml"));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_EQ(d.content, generated("SEP001122334455.cnf.xml"));
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));

  const auto c = provisioner_->counters();
  // Four spellings name the generated config (.sgn and ./ name files that do not exist), three
  // requests each.
  EXPECT_EQ(c.tftp_config_refused, 4u * 3u);
  EXPECT_NE(provisioner_->metrics().find("voiceedge_provision_config_refused_total{transport=\"tftp\"} 12\n"),
            std::string::npos)
      << provisioner_->metrics();
  // The victim's timeline: one notice (the rest are folded into the next), never the attacker's
  // address, and its only step event is its own download.
  const auto events = sink_.events();
  int notices = 0;
  int own = 0;
  for (const auto& e : events) {
    if (e.mac != kPhone) continue;
    if (e.history_only) {
      ++notices;
      EXPECT_TRUE(e.ip.empty()) << e.detail;
      EXPECT_NE(e.detail.find("refused tftp"), std::string::npos) << e.detail;
      EXPECT_NE(e.detail.find("127.0.0."), std::string::npos) << e.detail;
    } else {
      ++own;
      EXPECT_EQ(e.ip, "127.0.0.2") << e.detail;
      EXPECT_EQ(e.outcome, Outcome::Ok) << e.detail;
    }
  }
  EXPECT_EQ(notices, 1);
  EXPECT_EQ(own, 1);
}

TEST_F(TftpServerTest, ARefusedConfigIsLookedUpOnce) {
  start();
  lease("127.0.0.2", "00:11:22:33:44:55");
  lease("127.0.0.1", "02:00:00:00:00:66");
  UdpClient attacker("127.0.0.1");
  const auto tree = provisioner_->tree();
  auto answer = t::decode(first_answer(attacker, provisioner_->tftp_port(), rrq("SEP001122334455.cnf.xml")));
  ASSERT_TRUE(answer);
  ASSERT_EQ(std::get<t::Error>(*answer).code, t::ErrorCode::FileNotFound);
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_config_refused == 1; }));
  // The refusal is decided from the one lookup the transfer would use: one rendering, none held
  // once the server is done with the request (it may still hold it for a moment after the
  // answer left and the counter moved: the client and the counter do not wait for it).
  EXPECT_EQ(tree->renders(), 1u);
  EXPECT_TRUE(testing::eventually([&] { return tree->live_renderings() == 0u; })) << tree->live_renderings();
}

TEST_F(TftpServerTest, ConcurrentTransfersOfOneConfigShareOneRendering) {
  ProvisionerOptions o;
  o.tftp.retransmit_timeout = 100ms;
  o.tftp.max_retries = 1;
  start(o);
  lease("127.0.0.2", "00:11:22:33:44:55");
  const auto port = provisioner_->tftp_port();
  const auto tree = provisioner_->tree();
  // Three transfers in flight: each sent its first block and waits for an ACK that never comes.
  std::vector<std::unique_ptr<UdpClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<UdpClient>("127.0.0.2"));
    clients.back()->send(port, t::encode(rrq("SEP001122334455.cnf.xml")));
    auto p = clients.back()->receive_packet();
    ASSERT_TRUE(p);
    ASSERT_TRUE(std::holds_alternative<t::Data>(*p));
  }
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 3u);
  EXPECT_EQ(tree->renders(), 1u);
  EXPECT_EQ(tree->live_renderings(), 1u);
  // They time out; the rendering goes with the last of them.
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }));
  ASSERT_TRUE(testing::eventually([&] { return tree->live_renderings() == 0; }));
  UdpClient phone("127.0.0.2");
  auto d = download(phone, port, rrq("SEP001122334455.cnf.xml"));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_EQ(tree->renders(), 2u);
  EXPECT_EQ(d.content, render_phone_config(*site_, site_->phones[0]));
}

TEST_F(TftpServerTest, ConfigRequestWaitsForALeaseThatIsReportedLate) {
  ProvisionerOptions o;
  o.lease_wait = 3s;
  start(o);
  UdpClient phone("127.0.0.2");
  phone.send(provisioner_->tftp_port(), t::encode(rrq("SEP001122334455.cnf.xml")));
  EXPECT_FALSE(phone.receive(300ms)) << "answered before the lease was known";
  phone.send(provisioner_->tftp_port(), t::encode(rrq("SEP001122334455.cnf.xml")));  // a retransmission
  EXPECT_FALSE(phone.receive(200ms));
  lease("127.0.0.2", "00:11:22:33:44:55");  // the lease report (or Kea's lease file) arrives
  std::uint16_t tid = 0;
  auto p = phone.receive_packet(&tid);
  ASSERT_TRUE(p);
  ASSERT_TRUE(std::holds_alternative<t::Data>(*p));
  EXPECT_EQ(std::get<t::Data>(*p).block, 1);
  // One transfer only, not one per retransmitted request.
  EXPECT_FALSE(phone.receive(200ms));
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 1u);
}

TEST_F(TftpServerTest, StaticIpBindingServesThatAddressWithoutALease) {
  edit_site_ = [](config::SiteConfig& site) { site.phones[0].ip = config::Ipv4::parse("127.0.0.2"); };
  ProvisionerOptions o;
  o.lease_wait = 200ms;
  start(o);
  UdpClient phone("127.0.0.2");
  auto d = download(phone, provisioner_->tftp_port(), rrq("SEP001122334455.cnf.xml"));
  ASSERT_FALSE(d.error) << d.error->message;
  EXPECT_EQ(d.content, generated("SEP001122334455.cnf.xml"));
  // The bound address is not a key to every phone's config.
  auto other = download(phone, provisioner_->tftp_port(), rrq("SEP001122334466.cnf.xml"));
  ASSERT_TRUE(other.error);
  EXPECT_EQ(other.error->code, t::ErrorCode::FileNotFound);
  UdpClient stranger("127.0.0.1");
  auto refused = download(stranger, provisioner_->tftp_port(), rrq("SEP001122334455.cnf.xml"));
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->code, t::ErrorCode::FileNotFound);
}

TEST_F(TftpServerTest, OpenSiteServesAnyoneButUnverifiedAddressesAreNotTheirPhonesIp) {
  edit_site_ = [](config::SiteConfig& site) { site.provisioning.config_access = config::ConfigAccess::Open; };
  start();
  UdpClient anyone("127.0.0.1");
  auto d = download(anyone, provisioner_->tftp_port(), rrq("SEP001122334455.cnf.xml"));
  ASSERT_FALSE(d.error) << d.error->message;
  ASSERT_TRUE(testing::eventually([&] { return sink_.events().size() == 1u; }));
  EXPECT_EQ(sink_.events()[0].mac, kPhone);
  EXPECT_TRUE(sink_.events()[0].ip.empty()) << "a file name is no evidence of an address";
}

TEST_F(TftpServerTest, UnusableOptionValuesAreIgnoredNotRefused) {
  start();
  UdpClient client;
  // atftp 0.8 --option "tsize enable" sends the word; main answered error 8 to all of these.
  for (const auto& options : std::vector<std::vector<t::Option>>{{{"tsize", "enable"}},
                                                                 {{"blksize", "7"}},
                                                                 {{"blksize", "12abc"}},
                                                                 {{"timeout", "0"}},
                                                                 {{"windowsize", "0"}},
                                                                 {{"tsize", "enable"}, {"blksize", "1428"}}}) {
    auto d = download(client, provisioner_->tftp_port(), rrq("dialplan.xml", options));
    ASSERT_FALSE(d.error) << options[0].name << " " << options[0].value << ": " << d.error->message;
    EXPECT_EQ(d.content, content_of("dialplan.xml"));
    for (const auto& o : d.oack) EXPECT_EQ(o.name, "blksize") << "acknowledged an unusable " << o.name;
  }
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->counters().tftp_ok == 6u; }));
  EXPECT_EQ(provisioner_->counters().tftp_options_ignored, 6u);
}

TEST_F(TftpServerTest, NeverAcknowledgedTimeout255RequestsDoNotHoldSlots) {
  ProvisionerOptions o;
  o.tftp.max_transfers = 16;
  o.tftp.reserved_for_phones = 0;
  o.tftp.first_ack_timeout = 1s;
  start(o);  // retransmit every 300 ms (fixture), 5 retries
  UdpClient attacker;
  for (int i = 0; i < 16; ++i) {
    attacker.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml", {{"timeout", "255"}, {"tsize", "0"}})));
    auto p = attacker.receive_packet();
    ASSERT_TRUE(p) << i;
    const auto* oack = std::get_if<t::OptionAck>(&*p);
    ASSERT_NE(oack, nullptr) << i;
    for (const auto& opt : oack->options) EXPECT_NE(opt.name, "timeout") << "timeout 255 acknowledged";
  }
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 16u);
  // Never acknowledged: gone after first_ack_timeout (main kept them 6 x 255 s).
  EXPECT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }, 4s));
}

TEST_F(TftpServerTest, MaximumLifetimeEndsATrickleClient) {
  ProvisionerOptions o;
  o.tftp.max_lifetime = 1s;
  start(o);
  UdpClient client;
  client.send(provisioner_->tftp_port(), t::encode(rrq("kern78xx.14-2-1-0001-14.sbn", {{"blksize", "8"}})));
  std::uint16_t tid = 0;
  ASSERT_TRUE(client.receive_packet(&tid));  // OACK
  // One ACK every 200 ms keeps the transfer alive forever on main.
  const auto begin = std::chrono::steady_clock::now();
  std::uint16_t block = 0;
  while (std::chrono::steady_clock::now() - begin < 3s && provisioner_->active_tftp_transfers() > 0) {
    client.send(tid, t::encode(t::Ack{block}));
    auto p = client.receive_packet(nullptr, 200ms);
    if (p && std::holds_alternative<t::Data>(*p)) block = std::get<t::Data>(*p).block;
    std::this_thread::sleep_for(150ms);
  }
  ASSERT_TRUE(testing::eventually([&] { return provisioner_->active_tftp_transfers() == 0; }, 1s));
  ASSERT_TRUE(testing::eventually([&] { return !provisioner_->recent().empty(); }));
  EXPECT_EQ(provisioner_->recent().back().result, "lifetime");
  EXPECT_EQ(provisioner_->counters().tftp_lifetime_exceeded, 1u);
}

TEST_F(TftpServerTest, ReservedSlotsKeepThePhonesServedWhenAHostFillsTheTable) {
  ProvisionerOptions o;
  o.tftp.max_transfers = 8;
  o.tftp.reserved_for_phones = 2;
  o.tftp.retransmit_timeout = 5s;
  start(o);
  lease("127.0.0.1", "02:00:00:00:00:66");  // a host with a lease, but not a phone of the site
  UdpClient attacker;
  int accepted = 0;
  int busy = 0;
  for (int i = 0; i < 8; ++i) {
    attacker.send(provisioner_->tftp_port(), t::encode(rrq("dialplan.xml")));
    auto p = attacker.receive_packet();
    ASSERT_TRUE(p);
    if (std::holds_alternative<t::Data>(*p)) ++accepted;
    if (const auto* e = std::get_if<t::Error>(&*p); e && e->message == "Server busy, try again") ++busy;
  }
  EXPECT_EQ(accepted, 6);
  EXPECT_EQ(busy, 2);
  lease("127.0.0.2", "00:11:22:33:44:55");
  UdpClient phone("127.0.0.2");
  for (const char* file : {"SEP001122334455.cnf.xml", "dialplan.xml"}) {
    auto d = download(phone, provisioner_->tftp_port(), rrq(file));
    ASSERT_FALSE(d.error) << file << ": " << d.error->message;
  }
}

TEST_F(TftpServerTest, NetasciiCopiesAreMadeOncePerFileAndBudgeted) {
  root_.write("load-a.sbn", testing::random_bytes(4 * 1024 * 1024, 11));
  root_.write("load-b.sbn", testing::random_bytes(4 * 1024 * 1024, 12));
  ProvisionerOptions o;
  o.tftp.max_transfers = 400;
  o.tftp.max_per_client = 400;
  o.tftp.retransmit_timeout = 10s;
  o.tftp.netascii_budget = 6 * 1024 * 1024;
  start(o);
  UdpClient client;
  // 160 netascii reads of one 4 MB load (main made 160 private copies: ~700 MB).
  for (int i = 0; i < 160; ++i) {
    client.send(provisioner_->tftp_port(), t::encode(rrq("load-a.sbn", {}, t::Mode::Netascii)));
    auto p = client.receive_packet();
    ASSERT_TRUE(p && std::holds_alternative<t::Data>(*p)) << i;
  }
  EXPECT_EQ(provisioner_->active_tftp_transfers(), 160u);
  EXPECT_EQ(provisioner_->counters().netascii_conversions, 1u);
  const auto held = provisioner_->netascii_bytes();
  EXPECT_GT(held, 4u * 1024 * 1024);
  EXPECT_LT(held, 5u * 1024 * 1024);
  // A second file would not fit in the budget: "Server busy", no copy made.
  client.send(provisioner_->tftp_port(), t::encode(rrq("load-b.sbn", {}, t::Mode::Netascii)));
  auto p = client.receive_packet();
  ASSERT_TRUE(p);
  ASSERT_TRUE(std::holds_alternative<t::Error>(*p));
  EXPECT_EQ(std::get<t::Error>(*p).message, "Server busy, try again");
  EXPECT_EQ(provisioner_->counters().tftp_busy_memory, 1u);
  EXPECT_EQ(provisioner_->netascii_bytes(), held);
  // Octet needs no copy and is never refused for memory.
  auto octet = download(client, provisioner_->tftp_port(), rrq("dialplan.xml"));
  EXPECT_FALSE(octet.error);
}

}  // namespace
}  // namespace ve::provision
