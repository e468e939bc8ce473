#include <gtest/gtest.h>

#include <cstdio>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

MacAddress mac(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "00:1e:7a:00:%02x:%02x", (i >> 8) & 0xff, i & 0xff);
  return *MacAddress::parse(buf);
}

Packet packet(std::size_t n, std::uint8_t tag = 0) {
  Packet p;
  p.time = std::chrono::system_clock::now();
  p.interface = "p1";
  p.data.assign(n, tag);
  return p;
}

const auto kNow = std::chrono::system_clock::now();

TEST(BootRecorderTest, OnlyBootsInProgressRecord) {
  BootRecorder r({});
  r.add(mac(1), packet(100));
  EXPECT_EQ(r.find(mac(1)), nullptr);
  r.begin_boot(mac(1), kNow);
  r.add(mac(1), packet(100));
  r.registered(mac(1), kNow);
  auto late = packet(100);
  late.time = kNow + std::chrono::seconds(5);
  r.add(mac(1), late);  // captured after registration: not part of the boot
  ASSERT_NE(r.find(mac(1)), nullptr);
  EXPECT_EQ(r.find(mac(1))->packets.size(), 1u);
  EXPECT_EQ(r.find(mac(1))->state, BootState::Registered);
}

// The capture ring hands frames over a block at a time: the registration's frames may be read
// after the event that ended the boot, and still belong to it.
TEST(BootRecorderTest, FramesCapturedBeforeRegistrationButReadAfterAreKept) {
  BootRecorder r({});
  r.begin_boot(mac(1), kNow);
  r.registered(mac(1), kNow + std::chrono::seconds(2));
  auto before = packet(100, 1);
  before.time = kNow + std::chrono::seconds(1);
  auto reply = packet(100, 2);  // the 200 OK, sent just after the event
  reply.time = kNow + std::chrono::seconds(2) + std::chrono::milliseconds(5);
  auto after = packet(100, 3);
  after.time = kNow + std::chrono::seconds(3);
  r.add(mac(1), before);
  r.add(mac(1), reply);
  r.add(mac(1), after);
  ASSERT_EQ(r.find(mac(1))->packets.size(), 2u);
  EXPECT_EQ(r.find(mac(1))->packets[0].data[0], 1);
  EXPECT_EQ(r.find(mac(1))->packets[1].data[0], 2);
}

// A text-like frame (SIP, HTTP, DHCP's zeros compress; the tag keeps frames apart).
Packet text_packet(std::size_t n, std::uint8_t tag) {
  Packet p = packet(n, tag);
  for (std::size_t i = 0; i < n; ++i) p.data[i] = static_cast<std::uint8_t>("REGISTER sip:"[i % 13]);
  p.data[0] = tag;
  p.original_length = static_cast<std::uint32_t>(n + tag);
  return p;
}

TEST(BootRecorderTest, SettledRegisteredBootsArePackedAndComeBackWhole) {
  BootRecorder r({});
  r.begin_boot(mac(1), kNow);
  r.begin_boot(mac(2), kNow);
  std::vector<Packet> sent;
  for (int i = 0; i < 40; ++i) {
    auto p = text_packet(300 + i, static_cast<std::uint8_t>(i));
    p.interface = i % 2 ? "eth0.100" : "p1";
    p.time = kNow + std::chrono::milliseconds(i);
    sent.push_back(p);
    r.add(mac(1), p);
    r.add(mac(2), p);
  }
  r.registered(mac(1), kNow + std::chrono::seconds(1));
  const auto before = r.total_bytes();
  // Not before the late frames' grace has passed, and never a boot still booting.
  EXPECT_EQ(r.pack_settled(kNow + std::chrono::seconds(1)), 0u);
  EXPECT_EQ(r.pack_settled(kNow + std::chrono::seconds(5)), 1u);
  const auto* rec = r.find(mac(1));
  ASSERT_TRUE(rec->is_packed());
  EXPECT_TRUE(rec->packets.empty());
  EXPECT_EQ(rec->packet_count(), 40u);
  EXPECT_FALSE(r.find(mac(2))->is_packed());
  EXPECT_LT(r.total_bytes(), before - rec->bytes);  // the packed boot holds less than half
  EXPECT_EQ(r.total_bytes(), rec->bytes + r.find(mac(2))->bytes);
  const auto back = rec->all_packets();
  ASSERT_EQ(back.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(back[i].data, sent[i].data);
    EXPECT_EQ(back[i].time, sent[i].time);
    EXPECT_EQ(back[i].interface, sent[i].interface);
    EXPECT_EQ(back[i].original_length, sent[i].original_length);
  }
  EXPECT_EQ(r.pack_settled(kNow + std::chrono::seconds(9)), 0u);  // once
}

// A phone missing its dial plan (a failed step) that registers anyway: its boot stays Failed
// (kept, written to the state dir), ends at the registration and is packed like any other.
TEST(BootRecorderTest, AFailedBootThatRegistersEndsThereAndIsPacked) {
  BootRecorder r({});
  r.begin_boot(mac(1), kNow);
  for (int i = 0; i < 20; ++i) r.add(mac(1), text_packet(400, static_cast<std::uint8_t>(i)));
  r.failed(mac(1), "step 9 (dial-rules): dialplan.xml not-found", kNow);
  r.registered(mac(1), kNow + std::chrono::seconds(1));
  EXPECT_EQ(r.find(mac(1))->state, BootState::Failed);
  auto late = packet(100);
  late.time = kNow + std::chrono::seconds(30);  // a re-REGISTER much later: not the boot
  r.add(mac(1), late);
  EXPECT_EQ(r.find(mac(1))->packet_count(), 20u);
  EXPECT_EQ(r.pack_settled(kNow + std::chrono::seconds(5)), 1u);
  EXPECT_EQ(r.find(mac(1))->state, BootState::Failed);
  EXPECT_EQ(r.find(mac(1))->all_packets().size(), 20u);
  EXPECT_EQ(r.failed_unpersisted(), std::vector<MacAddress>{mac(1)});
}

TEST(BootRecorderTest, PackedBootsAreStillCutFirstOldestFirst) {
  RecorderLimits l;
  l.per_phone_bytes = 64 * 1024;
  l.total_bytes = 256 * 1024;
  BootRecorder r(l);
  r.begin_boot(mac(0), kNow);
  for (int i = 0; i < 50; ++i) r.add(mac(0), text_packet(1000, static_cast<std::uint8_t>(i)));
  r.registered(mac(0), kNow + std::chrono::seconds(1));
  ASSERT_EQ(r.pack_settled(kNow + std::chrono::seconds(5)), 1u);
  for (int p = 1; p <= 40; ++p) {
    r.begin_boot(mac(p), kNow);
    for (int i = 0; i < 10; ++i) r.add(mac(p), packet(900));
    ASSERT_LE(r.total_bytes(), l.total_bytes);
  }
  const auto* rec = r.find(mac(0));
  ASSERT_GT(rec->cut, 0u);
  const auto left = rec->all_packets();
  ASSERT_EQ(left.size(), 50u - rec->cut);
  if (!left.empty()) {
    EXPECT_EQ(left.front().data[0], rec->cut);  // the oldest went first
  }
  std::size_t sum = 0;
  for (int p = 0; p <= 40; ++p) sum += r.find(mac(p))->bytes;
  EXPECT_EQ(sum, r.total_bytes());
}

TEST(BootRecorderTest, PerPhoneBoundCutsTheOldestFirst) {
  RecorderLimits l;
  l.per_phone_bytes = 10 * stored_size(packet(100));
  BootRecorder r(l);
  r.begin_boot(mac(1), kNow);
  for (int i = 0; i < 25; ++i) r.add(mac(1), packet(100, static_cast<std::uint8_t>(i)));
  const auto* rec = r.find(mac(1));
  ASSERT_NE(rec, nullptr);
  EXPECT_EQ(rec->packets.size(), 10u);
  EXPECT_EQ(rec->packets.front().data[0], 15);  // 0..14 cut
  EXPECT_EQ(rec->cut, 15u);
  EXPECT_LE(r.total_bytes(), l.per_phone_bytes);
}

TEST(BootRecorderTest, TotalBoundHoldsAcrossManyPhonesAndRegisteredGoFirst) {
  RecorderLimits l;
  l.per_phone_bytes = 64 * 1024;
  l.total_bytes = 1024 * 1024;
  BootRecorder r(l);
  r.begin_boot(mac(0), kNow);
  for (int i = 0; i < 50; ++i) r.add(mac(0), packet(1000));
  r.registered(mac(0), kNow);
  const auto registered_before = r.find(mac(0))->packets.size();
  for (int p = 1; p <= 200; ++p) {
    r.begin_boot(mac(p), kNow);
    for (int i = 0; i < 20; ++i) r.add(mac(p), packet(900));
    ASSERT_LE(r.total_bytes(), l.total_bytes);
  }
  EXPECT_LT(r.find(mac(0))->packets.size(), registered_before);
  // The total is shared fairly: the booting phones still have packets.
  EXPECT_GT(r.find(mac(200))->packets.size(), 0u);
  EXPECT_GT(r.find(mac(1))->packets.size(), 0u);
  std::size_t sum = 0;
  for (int p = 0; p <= 200; ++p) sum += r.find(mac(p))->bytes;
  EXPECT_EQ(sum, r.total_bytes());
}

TEST(BootRecorderTest, FailureKeepsRecordingAndIsPersistedOnce) {
  BootRecorder r({});
  r.begin_boot(mac(1), kNow);
  r.add(mac(1), packet(60));
  r.failed(mac(1), "step 7 (config): not found", kNow);
  EXPECT_EQ(r.failed_unpersisted(), std::vector<MacAddress>{mac(1)});
  r.mark_persisted(mac(1));
  EXPECT_TRUE(r.failed_unpersisted().empty());
  r.add(mac(1), packet(60));  // the phone goes on: still its boot, file is stale again
  EXPECT_EQ(r.find(mac(1))->packets.size(), 2u);
  EXPECT_EQ(r.failed_unpersisted(), std::vector<MacAddress>{mac(1)});
  EXPECT_EQ(r.find(mac(1))->failure, "step 7 (config): not found");
  EXPECT_FALSE(r.booting(mac(1)));
}

TEST(BootRecorderTest, TimeoutGivesUp) {
  RecorderLimits l;
  l.boot_timeout = std::chrono::seconds(30);
  BootRecorder r(l);
  r.begin_boot(mac(1), kNow);
  r.begin_boot(mac(2), kNow);
  r.registered(mac(2), kNow);
  EXPECT_TRUE(r.expire(std::chrono::steady_clock::now()).empty());
  const auto later = std::chrono::steady_clock::now() + std::chrono::seconds(31);
  EXPECT_EQ(r.expire(later), std::vector<MacAddress>{mac(1)});
  EXPECT_EQ(r.find(mac(1))->state, BootState::Failed);
  EXPECT_EQ(r.find(mac(2))->state, BootState::Registered);
}

TEST(BootRecorderTest, NewBootReplacesTheOldAndShrinkingLimitsApplyAtOnce) {
  BootRecorder r({});
  r.begin_boot(mac(1), kNow);
  for (int i = 0; i < 100; ++i) r.add(mac(1), packet(1000));
  const auto before = r.total_bytes();
  r.begin_boot(mac(1), kNow);
  EXPECT_EQ(r.find(mac(1))->packets.size(), 0u);
  EXPECT_EQ(r.total_bytes(), 0u);
  for (int i = 0; i < 100; ++i) r.add(mac(1), packet(1000));
  EXPECT_EQ(r.total_bytes(), before);
  RecorderLimits small;
  small.per_phone_bytes = 16 * 1024;
  r.set_limits(small);
  EXPECT_LE(r.total_bytes(), small.per_phone_bytes);
}

}  // namespace
}  // namespace ve::diag
