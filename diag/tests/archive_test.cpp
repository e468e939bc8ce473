// The archive is read back by GNU tar (a real reader), not by our own code.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ArchiveTest, GnuTarExtractsEveryMember) {
  if (std::system("tar --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "tar not installed";
  const auto dir = std::filesystem::temp_directory_path() / ("ve-archive-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "out");
  TarGz t;
  const std::string binary("\0\1\2pcap\xff", 8);
  const std::string long_dir(120, 'd');
  t.add("SEP001E7A000001-report/README.txt", "hello\n");
  t.add("SEP001E7A000001-report/boot.pcapng", binary);
  t.add("SEP001E7A000001-report/empty.txt", "");
  t.add(long_dir + "/x.txt", std::string(513, 'x'));
  {
    std::ofstream out(dir / "r.tar.gz", std::ios::binary);
    const auto data = t.finish();
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  const auto cmd = "tar -xzf " + (dir / "r.tar.gz").string() + " -C " + (dir / "out").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(slurp(dir / "out/SEP001E7A000001-report/README.txt"), "hello\n");
  EXPECT_EQ(slurp(dir / "out/SEP001E7A000001-report/boot.pcapng"), binary);
  EXPECT_EQ(slurp(dir / "out/SEP001E7A000001-report/empty.txt"), "");
  EXPECT_EQ(slurp(dir / "out" / long_dir / "x.txt"), std::string(513, 'x'));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ve::diag
