// pcapng blocks. Written in host byte order: the section header's byte-order magic tells readers.
#include <cstring>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

void put32(std::string& s, std::uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void put16(std::string& s, std::uint16_t v) { s.append(reinterpret_cast<const char*>(&v), 2); }
void pad4(std::string& s) {
  while (s.size() % 4 != 0) s.push_back('\0');
}

// A block: type, total length, body, total length again.
std::string block(std::uint32_t type, const std::string& body) {
  std::string b;
  const auto total = static_cast<std::uint32_t>(12 + body.size());
  put32(b, type);
  put32(b, total);
  b += body;
  put32(b, total);
  return b;
}

void option(std::string& body, std::uint16_t code, std::string_view value) {
  put16(body, code);
  put16(body, static_cast<std::uint16_t>(value.size()));
  body.append(value);
  pad4(body);
}

}  // namespace

std::string PcapngWriter::header() const {
  std::string body;
  put32(body, 0x1a2b3c4d);  // byte-order magic
  put16(body, 1);           // version 1.0
  put16(body, 0);
  const std::uint64_t unknown_length = ~std::uint64_t{0};
  body.append(reinterpret_cast<const char*>(&unknown_length), 8);
  option(body, 4, "voiceedged " VE_VERSION);  // shb_userappl
  put32(body, 0);                             // opt_endofopt
  return block(0x0a0d0d0a, body);
}

std::string PcapngWriter::packet(const Packet& p) {
  std::string out;
  last_added_.reset();
  auto it = interfaces_.find(p.interface);
  if (it == interfaces_.end()) {
    std::string body;
    put16(body, 1);  // LINKTYPE_ETHERNET
    put16(body, 0);
    put32(body, kSnapLength);
    option(body, 2, p.interface);  // if_name
    const std::string tsresol(1, '\x06');
    option(body, 9, tsresol);  // if_tsresol: microseconds
    put32(body, 0);
    out += block(0x00000001, body);
    it = interfaces_.emplace(p.interface, static_cast<std::uint32_t>(interfaces_.size())).first;
    last_added_ = p.interface;
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(p.time.time_since_epoch()).count();
  const auto ts = static_cast<std::uint64_t>(us);
  std::string body;
  put32(body, it->second);
  put32(body, static_cast<std::uint32_t>(ts >> 32));
  put32(body, static_cast<std::uint32_t>(ts & 0xffffffffu));
  put32(body, static_cast<std::uint32_t>(p.data.size()));
  put32(body, std::max<std::uint32_t>(p.original_length, static_cast<std::uint32_t>(p.data.size())));
  body.append(reinterpret_cast<const char*>(p.data.data()), p.data.size());
  pad4(body);
  out += block(0x00000006, body);
  return out;
}

void PcapngWriter::rollback() {
  if (last_added_) interfaces_.erase(*last_added_);
  last_added_.reset();
}

std::string PcapngWriter::file(const std::vector<Packet>& packets) {
  PcapngWriter w;
  std::string out = w.header();
  for (const auto& p : packets) out += w.packet(p);
  return out;
}

}  // namespace ve::diag
