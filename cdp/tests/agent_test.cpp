// Agent behaviour over an in-memory link: fast start, immediate replies, power, neighbours,
// expiry with an injected clock, caps, reconfiguration.
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "cdp/cdp.hpp"
#include "cdp/tests/test_util.hpp"

namespace ve::cdp {
namespace {

using namespace std::chrono_literals;

// What the fake link saw; shared with the test after the link moves into the agent.
struct Wire {
  FrameLink::Receiver receiver;
  std::vector<Bytes> sent;
  bool fail_open = false;
  int failing_sends = 0;  // this many sends fail (interface down) before they work
  bool closed = false;
  MacAddress mac = *MacAddress::parse("02:00:00:00:00:aa");

  std::vector<CdpPdu> cdp() const {
    std::vector<CdpPdu> out;
    for (const auto& f : sent) {
      if (auto d = decode_cdp(f)) out.push_back(d->pdu);
    }
    return out;
  }
  std::vector<LldpPdu> lldp() const {
    std::vector<LldpPdu> out;
    for (const auto& f : sent) {
      if (auto d = decode_lldp(f)) out.push_back(d->pdu);
    }
    return out;
  }
  void deliver(const Bytes& frame) const { receiver(frame); }
};

class FakeLink final : public FrameLink {
 public:
  explicit FakeLink(std::shared_ptr<Wire> wire) : wire_(std::move(wire)) {}
  bool open(Receiver receiver, FailureHandler, std::string& error) override {
    if (wire_->fail_open) {
      error = "no such device";
      return false;
    }
    wire_->receiver = std::move(receiver);
    wire_->closed = false;
    return true;
  }
  bool send(ByteView frame) override {
    if (wire_->failing_sends > 0) {
      --wire_->failing_sends;
      return false;
    }
    wire_->sent.emplace_back(frame.begin(), frame.end());
    return true;
  }
  void close() override { wire_->closed = true; }
  MacAddress mac() const override { return wire_->mac; }

 private:
  std::shared_ptr<Wire> wire_;
};

struct RecordingSink final : EventSink {
  std::vector<PhoneEvent> events;
  void report(PhoneEvent e) override { events.push_back(std::move(e)); }
};

struct ManualClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::time_point{} + 1000h;
};

class AgentTest : public ::testing::Test {
 protected:
  AgentTest() {
    settings.device_id = "branch-01";
    settings.fast_start_count = 1;
    settings.interval_s = 3600;
    settings.holdtime_s = 180;
    port.name = "eth1";
    port.voice_vlan = 100;
    port.data_vlan = 10;
    hooks.events = &sink;
    hooks.steady_now = [this] { return clock.now; };
    hooks.negotiate_power = [this](const std::string& p, std::uint32_t mw) {
      asked.emplace_back(p, mw);
      return grant_mw;
    };
  }

  std::unique_ptr<Agent> make_agent() {
    return std::make_unique<Agent>(io, std::make_unique<FakeLink>(wire), port, settings, hooks);
  }

  static Bytes phone_cdp(const std::string& device_id, const MacAddress& src, std::uint8_t ttl = 180,
                         bool query = true) {
    CdpFrame f;
    f.source = src;
    f.pdu.ttl_s = ttl;
    f.pdu.device_id = device_id;
    f.pdu.platform = "Cisco IP Phone 7960";
    f.pdu.capabilities = capability::kHost | capability::kPhone;
    if (query) f.pdu.voip_vlan_query = test::from_hex("20020001");
    return encode_cdp(f);
  }

  static Bytes med_phone_lldp(std::uint16_t power_dw) {
    LldpFrame f;
    f.source = *MacAddress::parse("00:04:f2:00:00:01");
    f.pdu.chassis_id = LldpId{4, test::from_hex("0004f2000001")};
    f.pdu.port_id = LldpId{3, test::from_hex("0004f2000001")};
    f.pdu.system_name = "polycom-vvx";
    f.pdu.med_capabilities = MedCapabilities{0x33, MedDeviceType::EndpointClass3};
    f.pdu.extended_power = ExtendedPower{1, 1, 3, power_dw};
    f.pdu.inventory.model = "VVX 411";
    return encode_lldp(f);
  }

  boost::asio::io_context io;
  std::shared_ptr<Wire> wire = std::make_shared<Wire>();
  PortSettings port;
  AgentSettings settings;
  Hooks hooks;
  RecordingSink sink;
  ManualClock clock;
  std::vector<std::pair<std::string, std::uint32_t>> asked;
  std::uint32_t grant_mw = 10250;
};

TEST_F(AgentTest, FastStartSendsCountFramesThenWaitsForInterval) {
  settings.fast_start_count = 3;
  settings.fast_start_spacing = 5ms;
  auto agent = make_agent();
  agent->start();
  io.run_for(500ms);
  EXPECT_EQ(wire->cdp().size(), 3u);
  EXPECT_EQ(wire->lldp().size(), 3u);
  EXPECT_EQ(agent->counters().cdp_sent, 3u);
  EXPECT_EQ(agent->counters().lldp_sent, 3u);
}

TEST_F(AgentTest, FastStartFramesThatFailToSendAreRetried) {
  settings.fast_start_count = 2;
  settings.fast_start_spacing = 5ms;
  wire->failing_sends = 6;  // three ticks' worth of CDP + LLDP
  auto agent = make_agent();
  agent->start();
  io.run_for(500ms);
  EXPECT_EQ(wire->cdp().size(), 2u);
  EXPECT_EQ(agent->counters().send_errors, 6u);
}

TEST_F(AgentTest, AdvertisementCarriesVoiceVlanDeviceIdAndPower) {
  auto agent = make_agent();
  agent->start();
  auto cdp = wire->cdp();
  ASSERT_EQ(cdp.size(), 1u);
  EXPECT_EQ(cdp[0].device_id, "branch-01");
  EXPECT_EQ(cdp[0].port_id, "eth1");
  EXPECT_EQ(cdp[0].ttl_s, 180);
  ASSERT_TRUE(cdp[0].voip_vlan_reply);
  EXPECT_EQ(cdp[0].voip_vlan_reply->vlan, 100);
  EXPECT_EQ(cdp[0].native_vlan, 10);
  // No request yet: request id 0, management id 1, nothing available (as a Catalyst with no phone).
  EXPECT_EQ(cdp[0].power_available, (PowerAvailable{0, 1, 0, 0xffffffff}));
  // LLDP without a MED endpoint carries no MED TLVs (TIA-1057).
  auto lldp = wire->lldp();
  ASSERT_EQ(lldp.size(), 1u);
  EXPECT_FALSE(lldp[0].is_med());
  EXPECT_EQ(lldp[0].system_name, "branch-01");
}

TEST_F(AgentTest, AnswersVoipVlanQueryAtOnce) {
  auto agent = make_agent();
  agent->start();
  wire->sent.clear();
  wire->deliver(phone_cdp("SEP001122334455", *MacAddress::parse("00:11:22:33:44:55")));
  auto cdp = wire->cdp();
  ASSERT_EQ(cdp.size(), 1u);  // sent synchronously, before the io_context runs again
  ASSERT_TRUE(cdp[0].voip_vlan_reply);
  EXPECT_EQ(cdp[0].voip_vlan_reply->vlan, 100);
  EXPECT_EQ(agent->counters().voice_vlan_replies, 1u);
  EXPECT_EQ(agent->counters().cdp_received, 1u);
}

TEST_F(AgentTest, PowerRequestGoesToPoeAndComesBackAsPowerAvailable) {
  auto agent = make_agent();
  agent->start();
  wire->sent.clear();
  wire->deliver(test::phone_7970_frame());
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0], (std::pair<std::string, std::uint32_t>{"eth1", 10250}));
  auto cdp = wire->cdp();
  ASSERT_EQ(cdp.size(), 1u);
  ASSERT_TRUE(cdp[0].power_available);
  EXPECT_EQ(cdp[0].power_available->request_id, 0xd34e);
  EXPECT_EQ(cdp[0].power_available->management_id, 2);
  EXPECT_EQ(cdp[0].power_available->available_mw, 10250u);
  auto n = agent->neighbors();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].power_requested_mw, 10250u);
  EXPECT_EQ(n[0].power_granted_mw, 10250u);

  // The same request again does not change the management id; a different grant does. Replies
  // closer together than the minimum spacing are deferred, so let the io_context run.
  wire->deliver(test::phone_7970_frame());
  io.run_for(400ms);
  EXPECT_EQ(wire->cdp().size(), 2u);
  EXPECT_EQ(wire->cdp().back().power_available->management_id, 2);
  grant_mw = 6300;
  wire->deliver(test::phone_7970_frame());
  io.run_for(400ms);
  EXPECT_EQ(wire->cdp().back().power_available->management_id, 3);
  EXPECT_EQ(wire->cdp().back().power_available->available_mw, 6300u);
}

TEST_F(AgentTest, DeviceIsNamedToPoeBeforeItsPowerRequest) {
  std::vector<std::string> calls;
  hooks.device_seen = [&](const std::string& p, const MacAddress& mac) { calls.push_back(p + " " + mac.to_string()); };
  hooks.negotiate_power = [&](const std::string&, std::uint32_t mw) -> std::optional<std::uint32_t> {
    calls.push_back("negotiate " + std::to_string(mw));
    return mw;
  };
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  wire->deliver(test::phone_7970_frame());
  EXPECT_EQ(calls, (std::vector<std::string>{"eth1 00:12:da:db:d3:4e", "negotiate 10250", "negotiate 10250"}));
}

TEST_F(AgentTest, QueryFloodIsAnsweredWithCoalescedReplies) {
  auto agent = make_agent();
  agent->start();
  wire->sent.clear();
  for (int i = 0; i < 100; ++i) wire->deliver(phone_cdp("SEP001122334455", *MacAddress::parse("00:11:22:33:44:55")));
  EXPECT_EQ(wire->cdp().size(), 1u);  // the first at once
  io.run_for(500ms);
  EXPECT_EQ(wire->cdp().size(), 2u);  // one more for everything that came within the spacing
  EXPECT_EQ(agent->counters().voice_vlan_replies, 100u);
}

TEST_F(AgentTest, WithoutPoeManagerGrantsUpToPortMaximum) {
  hooks.negotiate_power = nullptr;
  port.max_power_mw = 7000;
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  EXPECT_EQ(wire->cdp().back().power_available->available_mw, 7000u);
}

TEST_F(AgentTest, NewPhoneIsReportedAsVoiceVlanStepKeyedBySepMac) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  ASSERT_EQ(sink.events.size(), 1u);
  const PhoneEvent& e = sink.events[0];
  EXPECT_EQ(e.mac.to_string(), "00:12:da:db:d3:4e");
  EXPECT_EQ(e.step, Step::VoiceVlan);
  EXPECT_EQ(e.outcome, Outcome::Ok);
  EXPECT_EQ(e.port, "eth1");
  EXPECT_EQ(e.ip, "10.10.33.65");
  EXPECT_NE(e.detail.find("voice vlan 100"), std::string::npos);
  // Seeing it again is not a new event.
  wire->deliver(test::phone_7970_frame());
  EXPECT_EQ(sink.events.size(), 1u);
}

TEST_F(AgentTest, PhoneOnPortWithoutVoiceVlanIsAFailedStep) {
  port.voice_vlan = 0;
  auto agent = make_agent();
  agent->start();
  EXPECT_FALSE(wire->cdp().back().voip_vlan_reply);
  wire->deliver(test::phone_7970_frame());
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].outcome, Outcome::Failed);
}

TEST_F(AgentTest, NeighborExpiresAfterHoldtime) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(phone_cdp("SEP001122334455", *MacAddress::parse("00:11:22:33:44:55"), 30));
  ASSERT_EQ(agent->neighbors().size(), 1u);
  clock.now += 29s;
  EXPECT_EQ(agent->expire_neighbors(), 0u);
  clock.now += 2s;
  EXPECT_EQ(agent->expire_neighbors(), 1u);
  EXPECT_TRUE(agent->neighbors().empty());
  ASSERT_EQ(sink.events.size(), 2u);
  EXPECT_EQ(sink.events[1].outcome, Outcome::Info);
  EXPECT_EQ(sink.events[1].mac.to_string(), "00:11:22:33:44:55");
  EXPECT_NE(sink.events[1].detail.find("expired"), std::string::npos);
}

TEST_F(AgentTest, TtlZeroRemovesNeighborAtOnce) {
  auto agent = make_agent();
  agent->start();
  const auto mac = *MacAddress::parse("00:11:22:33:44:55");
  wire->deliver(phone_cdp("SEP001122334455", mac));
  wire->deliver(phone_cdp("SEP001122334455", mac, 0, false));
  EXPECT_TRUE(agent->neighbors().empty());
}

TEST_F(AgentTest, MalformedFramesAreCountedAndDropped) {
  auto agent = make_agent();
  agent->start();
  Bytes bad = test::phone_7970_frame();
  bad[30] ^= 0xff;
  wire->deliver(bad);
  Bytes short_lldp = med_phone_lldp(120);
  short_lldp.resize(20);
  wire->deliver(short_lldp);
  Bytes dtp = test::phone_7970_frame();
  dtp[21] = 0x04;
  wire->deliver(dtp);
  EXPECT_EQ(agent->counters().malformed, 2u);
  EXPECT_EQ(agent->counters().ignored, 1u);
  EXPECT_TRUE(agent->neighbors().empty());
  EXPECT_TRUE(asked.empty());
}

TEST_F(AgentTest, NeighborTableIsCappedPerPort) {
  settings.max_neighbors_per_port = 4;
  auto agent = make_agent();
  agent->start();
  for (std::uint8_t i = 0; i < 50; ++i) {
    MacAddress src(std::array<std::uint8_t, 6>{0x00, 0x11, 0x22, 0x33, 0x44, i});
    wire->deliver(phone_cdp("SEP0011223344" + std::to_string(10 + i).substr(0, 2), src));
  }
  EXPECT_EQ(agent->neighbors().size(), 4u);
  // None of them is the port's phone (their SEP names are not their MACs): the newest stay.
  EXPECT_EQ(agent->counters().neighbors_evicted, 46u);
  EXPECT_EQ(agent->counters().neighbors_dropped, 0u);
  EXPECT_EQ(agent->counters().cdp_received, 50u);
}

// Issue 12: one CDP frame from any MAC asking for 0.1 W must not reach PoE.
TEST_F(AgentTest, PowerRequestFromAnotherDeviceThanThePortsPhoneIsRefusedAndCounted) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());  // the phone: SEP0012DADBD34E from 00:12:da:db:d3:4e
  ASSERT_EQ(asked.size(), 1u);
  const auto before = wire->cdp().back().power_available;
  ASSERT_TRUE(before);

  CdpFrame spoof;
  spoof.source = *MacAddress::parse("02:66:66:66:66:66");
  spoof.pdu.device_id = "SEP026666666666";
  spoof.pdu.capabilities = capability::kHost | capability::kPhone;
  spoof.pdu.power_requested = PowerRequested{0x0101, 0, {100}};
  wire->deliver(encode_cdp(spoof));
  io.run_for(400ms);
  EXPECT_EQ(asked.size(), 1u) << "the spoofed request never reached PoE";
  EXPECT_EQ(agent->counters().power_refused, 1u);
  const auto after = wire->cdp().back().power_available;
  EXPECT_EQ(after->available_mw, before->available_mw);
  EXPECT_EQ(after->request_id, before->request_id) << "no answer to the spoofed request id";
  bool listed_refused = false;
  for (const auto& n : agent->neighbors()) {
    if (n.source == spoof.source) listed_refused = n.power_requested_mw == 100u && !n.power_granted_mw && !n.verified;
  }
  EXPECT_TRUE(listed_refused);
}

TEST_F(AgentTest, WithSitePhonesOnlyTheyNegotiatePower) {
  port.phones = {*MacAddress::parse("00:11:22:33:44:55")};
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());  // a phone, but not the site file's one for this port
  EXPECT_TRUE(asked.empty());
  EXPECT_EQ(agent->counters().power_refused, 1u);
  CdpFrame f;
  f.source = *MacAddress::parse("00:11:22:33:44:55");
  f.pdu.device_id = "SEP001122334455";
  f.pdu.capabilities = capability::kHost | capability::kPhone;
  f.pdu.power_requested = PowerRequested{7, 0, {12900}};
  wire->deliver(encode_cdp(f));
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].second, 12900u);
  for (const auto& n : agent->neighbors()) EXPECT_EQ(n.verified, n.source == f.source) << n.device_id;
}

TEST_F(AgentTest, OnlyThePortsPhoneIsNamedToPoe) {
  std::vector<std::string> named;
  hooks.device_seen = [&](const std::string&, const MacAddress& mac) { named.push_back(mac.to_string()); };
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  wire->deliver(phone_cdp("SEP026666666666", *MacAddress::parse("02:66:66:66:66:66")));
  EXPECT_EQ(named, (std::vector<std::string>{"00:12:da:db:d3:4e"}));
}

TEST_F(AgentTest, FloodCannotPushOutTheSitePhoneAndALatePhoneStillGetsItsTimeline) {
  settings.max_neighbors_per_port = 8;
  port.phones = {*MacAddress::parse("00:12:da:db:d3:4e")};
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  for (std::uint8_t i = 0; i < 100; ++i) {
    MacAddress src(std::array<std::uint8_t, 6>{0x02, 0x00, 0x00, 0x00, 0x01, i});
    wire->deliver(phone_cdp(
        "SEP0200000001" + std::string(1, "0123456789abcdef"[i >> 4]) + std::string(1, "0123456789abcdef"[i & 15]),
        src));
    clock.now += 1s;
  }
  auto listed = [&](const std::string& mac) {
    for (const auto& n : agent->neighbors()) {
      if (n.source.to_string() == mac) return true;
    }
    return false;
  };
  EXPECT_TRUE(listed("00:12:da:db:d3:4e")) << "the verified phone stays";
  EXPECT_EQ(agent->neighbors().size(), 8u);
  EXPECT_EQ(agent->counters().neighbors_evicted, 100u - 7u);
  // A real phone arriving after the flood is listed and gets its step-3 event.
  sink.events.clear();
  wire->deliver(phone_cdp("SEP00AABBCCDDEE", *MacAddress::parse("00:aa:bb:cc:dd:ee")));
  EXPECT_TRUE(listed("00:aa:bb:cc:dd:ee"));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].mac.to_string(), "00:aa:bb:cc:dd:ee");
}

TEST_F(AgentTest, VoicePolicyIsUntaggedWhenVoiceSharesTheDataVlan) {
  port.data_vlan = 100;
  auto agent = make_agent();
  agent->start();
  wire->deliver(med_phone_lldp(120));
  const LldpPdu reply = wire->lldp().back();
  ASSERT_EQ(reply.network_policies.size(), 2u);
  EXPECT_EQ(reply.network_policies[0], (NetworkPolicy{1, false, false, 0, 5, 46}));
  EXPECT_EQ(reply.network_policies[1], (NetworkPolicy{2, false, false, 0, 3, 24}));
}

TEST_F(AgentTest, PhonePolicyThatContradictsThePortIsFlagged) {
  auto agent = make_agent();
  agent->start();
  LldpFrame f = *decode_lldp(med_phone_lldp(120));
  f.pdu.network_policies.push_back(NetworkPolicy{1, false, false, 0, 5, 46});  // untagged voice
  wire->deliver(encode_lldp(f));
  ASSERT_EQ(agent->neighbors().size(), 1u);
  EXPECT_NE(agent->neighbors()[0].policy_warning.find("untagged"), std::string::npos)
      << agent->neighbors()[0].policy_warning;
  f.pdu.network_policies = {NetworkPolicy{1, false, true, 100, 5, 46}};
  wire->deliver(encode_lldp(f));
  EXPECT_EQ(agent->neighbors()[0].policy_warning, "");
  f.pdu.network_policies = {NetworkPolicy{1, false, true, 200, 5, 46}};
  wire->deliver(encode_lldp(f));
  EXPECT_NE(agent->neighbors()[0].policy_warning.find("vlan 200"), std::string::npos);
}

TEST_F(AgentTest, MedEndpointGetsNetworkPolicyAndExtendedPower) {
  grant_mw = 12000;
  auto agent = make_agent();
  agent->start();
  wire->sent.clear();
  wire->deliver(med_phone_lldp(120));  // asks for 12.0 W
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].second, 12000u);
  auto lldp = wire->lldp();
  ASSERT_GE(lldp.size(), 1u);
  const LldpPdu& reply = lldp[0];
  ASSERT_TRUE(reply.med_capabilities);
  EXPECT_EQ(reply.med_capabilities->device_type, MedDeviceType::NetworkConnectivity);
  ASSERT_EQ(reply.network_policies.size(), 2u);
  EXPECT_EQ(reply.network_policies[0], (NetworkPolicy{1, false, true, 100, 5, 46}));
  EXPECT_EQ(reply.network_policies[1], (NetworkPolicy{2, false, true, 100, 3, 24})) << "voice signalling";
  ASSERT_TRUE(reply.extended_power);
  EXPECT_EQ(reply.extended_power->power_type, 0);  // PSE
  EXPECT_EQ(reply.extended_power->power_dw, 120);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].mac.to_string(), "00:04:f2:00:00:01");
  EXPECT_EQ(sink.events[0].outcome, Outcome::Ok);
}

TEST_F(AgentTest, MedTlvsStopWhenTheLastMedEndpointExpires) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(med_phone_lldp(120));
  EXPECT_TRUE(wire->lldp().back().is_med());
  ASSERT_EQ(agent->neighbors().size(), 1u);
  EXPECT_TRUE(agent->neighbors()[0].med_endpoint);
  clock.now += 200s;  // past the phone's TTL (120 s)
  EXPECT_EQ(agent->expire_neighbors(), 1u);
  LldpPdu after;
  ASSERT_TRUE(decode_lldp(agent->build_lldp_advertisement()));
  after = decode_lldp(agent->build_lldp_advertisement())->pdu;
  EXPECT_FALSE(after.is_med());
}

TEST_F(AgentTest, LinkDownClearsNeighborsAndRestartsPowerNegotiation) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(test::phone_7970_frame());
  ASSERT_EQ(agent->neighbors().size(), 1u);
  agent->link_changed(false);
  EXPECT_TRUE(agent->neighbors().empty());
  wire->sent.clear();
  agent->link_changed(true);
  auto cdp = wire->cdp();
  ASSERT_EQ(cdp.size(), 1u);
  EXPECT_EQ(cdp[0].power_available->request_id, 0);
  EXPECT_EQ(cdp[0].power_available->management_id, 3);  // 1 -> 2 on the request -> 3 on link down
}

TEST_F(AgentTest, OpenFailureIsReportedNotFatal) {
  wire->fail_open = true;
  auto agent = make_agent();
  agent->start();
  EXPECT_FALSE(agent->link_open());
  EXPECT_EQ(agent->last_error(), "no such device");
  EXPECT_TRUE(wire->sent.empty());
}

TEST_F(AgentTest, StopSendsTtlZero) {
  auto agent = make_agent();
  agent->start();
  wire->sent.clear();
  agent->stop();
  auto cdp = wire->cdp();
  auto lldp = wire->lldp();
  ASSERT_EQ(cdp.size(), 1u);
  EXPECT_EQ(cdp[0].ttl_s, 0);
  ASSERT_EQ(lldp.size(), 1u);
  EXPECT_EQ(lldp[0].ttl_s, 0);
  EXPECT_TRUE(wire->closed);
}

// Any setting that changes what neighbours hear is advertised at once (the agent compares the
// frames, not a list of fields: the platform and the signalling policy were once missed); a
// setting they cannot hear waits for the next interval.
TEST_F(AgentTest, ReconfigureAdvertisesAtOnceWhateverChangesTheFrames) {
  auto agent = make_agent();
  agent->start();
  wire->deliver(med_phone_lldp(90));  // MED endpoint: our LLDPDUs carry the network policies
  wire->sent.clear();

  AgentSettings changed = settings;
  changed.signalling_dscp = 26;
  agent->reconfigure(port, changed);
  auto lldp = wire->lldp();
  ASSERT_FALSE(lldp.empty());
  ASSERT_EQ(lldp.back().network_policies.size(), 2u);
  EXPECT_EQ(lldp.back().network_policies[1].dscp, 26);

  wire->sent.clear();
  changed.platform = "voiceedge-2";
  agent->reconfigure(port, changed);
  auto cdp = wire->cdp();
  ASSERT_FALSE(cdp.empty());
  EXPECT_EQ(cdp.back().platform, "voiceedge-2");

  wire->sent.clear();
  changed.interval_s = 1800;  // nothing on the wire changes
  agent->reconfigure(port, changed);
  EXPECT_TRUE(wire->sent.empty());
  agent->reconfigure(port, changed);  // the same settings again: nothing at all
  EXPECT_TRUE(wire->sent.empty());
}

TEST(AgentSetTest, ReconfigureChangesVlanAndRemovesPortsWithoutRestart) {
  boost::asio::io_context io;
  std::map<std::string, std::shared_ptr<Wire>> wires;
  AgentSet set(
      io,
      [&](const std::string& name) {
        auto w = std::make_shared<Wire>();
        wires[name] = w;
        return std::make_unique<FakeLink>(w);
      },
      Hooks{});
  AgentSettings settings;
  settings.fast_start_count = 1;
  set.apply({PortSettings{"eth1", 100, 10}, PortSettings{"eth2", 100, 10}}, settings);
  ASSERT_EQ(set.agents().size(), 2u);
  auto eth1 = wires["eth1"];
  EXPECT_EQ(eth1->cdp().back().voip_vlan_reply->vlan, 100);

  set.apply({PortSettings{"eth1", 200, 10}}, settings);
  EXPECT_EQ(wires["eth1"], eth1);  // same agent, same link: not restarted
  EXPECT_EQ(eth1->cdp().back().voip_vlan_reply->vlan, 200);
  ASSERT_EQ(set.agents().size(), 1u);
  EXPECT_EQ(wires["eth2"]->cdp().back().ttl_s, 0);  // eth2 left the config: said goodbye
  EXPECT_TRUE(wires["eth2"]->closed);

  settings.cdp_enabled = false;
  settings.lldp_enabled = false;
  set.apply({PortSettings{"eth1", 200, 10}}, settings);
  EXPECT_TRUE(set.agents().empty());
}

}  // namespace
}  // namespace ve::cdp
