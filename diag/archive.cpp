// POSIX ustar members and gzip (zlib deflate with a gzip wrapper).
#include <zlib.h>

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

constexpr std::size_t kBlock = 512;

void octal(char* field, std::size_t width, std::uint64_t value) {
  // width includes the terminating NUL
  const std::string s = fmt::format("{:0{}o}", value, width - 1);
  std::memcpy(field, s.data(), std::min(s.size(), width - 1));
  field[width - 1] = '\0';
}

std::string tar_header(const std::string& name, std::size_t size, std::int64_t mtime) {
  std::string h(kBlock, '\0');
  std::string base = name;
  std::string prefix;
  if (base.size() > 100) {  // ustar: split at a '/' into prefix (155) and name (100)
    const auto slash = base.rfind('/', 155);
    if (slash == std::string::npos || base.size() - slash - 1 > 100) throw std::invalid_argument("name too long");
    prefix = base.substr(0, slash);
    base = base.substr(slash + 1);
  }
  std::memcpy(h.data(), base.data(), base.size());
  octal(h.data() + 100, 8, 0644);
  octal(h.data() + 108, 8, 0);
  octal(h.data() + 116, 8, 0);
  octal(h.data() + 124, 12, size);
  octal(h.data() + 136, 12, static_cast<std::uint64_t>(std::max<std::int64_t>(0, mtime)));
  std::memset(h.data() + 148, ' ', 8);
  h[156] = '0';
  std::memcpy(h.data() + 257, "ustar", 6);
  std::memcpy(h.data() + 263, "00", 2);
  std::memcpy(h.data() + 265, "root", 4);
  std::memcpy(h.data() + 297, "root", 4);
  std::memcpy(h.data() + 345, prefix.data(), prefix.size());
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  const std::string chk = fmt::format("{:06o}", sum);
  std::memcpy(h.data() + 148, chk.data(), 6);
  h[154] = '\0';
  h[155] = ' ';
  return h;
}

std::string gzip(const std::string& in) {
  z_stream z{};
  // 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const auto produced = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(produced);
  return out;
}

}  // namespace

void TarGz::add(const std::string& name, std::string_view content, std::chrono::system_clock::time_point mtime) {
  members_.emplace_back(name, std::string(content));
  mtimes_.push_back(std::chrono::duration_cast<std::chrono::seconds>(mtime.time_since_epoch()).count());
}

std::string TarGz::finish() const {
  std::string tar;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const auto& [name, content] = members_[i];
    tar += tar_header(name, content.size(), mtimes_[i]);
    tar += content;
    tar.append((kBlock - content.size() % kBlock) % kBlock, '\0');
  }
  tar.append(2 * kBlock, '\0');  // end of archive
  return gzip(tar);
}

}  // namespace ve::diag
