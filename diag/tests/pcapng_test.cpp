#include <gtest/gtest.h>

#include <cstring>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

std::uint32_t u32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

// Walks the blocks: every block's two length fields agree and the lengths tile the file.
std::vector<std::uint32_t> block_types(const std::string& file) {
  std::vector<std::uint32_t> types;
  std::size_t at = 0;
  while (at < file.size()) {
    EXPECT_LE(at + 12, file.size());
    const auto len = u32(file, at + 4);
    EXPECT_EQ(len % 4, 0u);
    EXPECT_LE(at + len, file.size());
    EXPECT_EQ(u32(file, at + len - 4), len);
    types.push_back(u32(file, at));
    at += len;
  }
  return types;
}

Packet packet(const std::string& iface, std::size_t n) {
  Packet p;
  p.time = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000) + std::chrono::microseconds(5));
  p.interface = iface;
  p.data.assign(n, 0xab);
  p.original_length = static_cast<std::uint32_t>(n);
  return p;
}

TEST(PcapngTest, InterfaceBlockOncePerInterfaceAndPadding) {
  const auto file = PcapngWriter::file({packet("p1", 61), packet("br", 60), packet("p1", 1)});
  EXPECT_EQ(block_types(file), (std::vector<std::uint32_t>{0x0a0d0d0a, 1, 6, 1, 6, 6}));
  EXPECT_EQ(u32(file, 8), 0x1a2b3c4du);
}

TEST(PcapngTest, RollbackForgetsAnUndeliveredInterface) {
  PcapngWriter w;
  std::string out = w.header();
  (void)w.packet(packet("p1", 60));  // dropped: never delivered
  w.rollback();
  out += w.packet(packet("p1", 60));
  EXPECT_EQ(block_types(out), (std::vector<std::uint32_t>{0x0a0d0d0a, 1, 6}));
}

TEST(PcapngTest, TimestampIsMicroseconds) {
  const auto file = PcapngWriter::file({packet("p1", 60)});
  // SHB, IDB, then EPB: interface id, ts high, ts low.
  std::size_t at = u32(file, 4);
  at += u32(file, at + 4);
  const std::uint64_t ts = (std::uint64_t{u32(file, at + 12)} << 32) | u32(file, at + 16);
  EXPECT_EQ(ts, 1700000000000005ull);
  EXPECT_EQ(u32(file, at + 20), 60u);
}

}  // namespace
}  // namespace ve::diag
