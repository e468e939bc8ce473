#pragma once
// Private to cdp/: bounds-checked big-endian reading and writing shared by both codecs.
#include <cstdint>
#include <optional>
#include <string>

#include "cdp/cdp.hpp"

namespace ve::cdp::wire {

// Reads forward through a span; every read checks what is left and fails instead of overrunning.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  std::size_t remaining() const { return data_.size() - pos_; }
  std::size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  std::optional<std::uint8_t> u8() {
    if (remaining() < 1) return std::nullopt;
    return data_[pos_++];
  }
  std::optional<std::uint16_t> u16() {
    if (remaining() < 2) return std::nullopt;
    auto v = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  std::optional<std::uint32_t> u32() {
    if (remaining() < 4) return std::nullopt;
    std::uint32_t v = (std::uint32_t{data_[pos_]} << 24) | (std::uint32_t{data_[pos_ + 1]} << 16) |
                      (std::uint32_t{data_[pos_ + 2]} << 8) | std::uint32_t{data_[pos_ + 3]};
    pos_ += 4;
    return v;
  }
  std::optional<ByteView> bytes(std::size_t n) {
    if (remaining() < n) return std::nullopt;
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  ByteView rest() {
    ByteView v = data_.subspan(pos_);
    pos_ = data_.size();
    return v;
  }

 private:
  ByteView data_;
  std::size_t pos_ = 0;
};

inline void put_u8(Bytes& out, std::uint8_t v) { out.push_back(v); }
inline void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
inline void put_u32(Bytes& out, std::uint32_t v) {
  put_u16(out, static_cast<std::uint16_t>(v >> 16));
  put_u16(out, static_cast<std::uint16_t>(v));
}
inline void put_bytes(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }
inline void put_string(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }
inline void put_mac(Bytes& out, const MacAddress& m) { out.insert(out.end(), m.bytes().begin(), m.bytes().end()); }

// A text TLV as UTF-8. The bytes come from any host on the port: each byte that starts no
// well-formed UTF-8 sequence becomes '?' here, once, so that no JSON writer downstream (control
// socket, timeline store, status page) fails on a neighbour's name. One byte for one byte, not
// U+FFFD (three): the text then still fits the TLV it came from (LLDP's are at most 511 bytes),
// so what we decode re-encodes to itself (the fuzzers check that).
inline std::string to_text(ByteView v) {
  std::string out;
  out.reserve(v.size());
  std::size_t i = 0;
  while (i < v.size()) {
    const std::uint8_t b = v[i];
    std::size_t extra = 0;
    std::uint8_t low = 0x80, high = 0xbf;  // bounds of the first continuation byte
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    if (b >= 0xc2 && b <= 0xdf) {
      extra = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      extra = 2;
      if (b == 0xe0) low = 0xa0;   // no overlong forms
      if (b == 0xed) high = 0x9f;  // no UTF-16 surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      extra = 3;
      if (b == 0xf0) low = 0x90;
      if (b == 0xf4) high = 0x8f;  // nothing above U+10FFFF
    }
    bool ok = extra > 0;
    for (std::size_t k = 1; ok && k <= extra; ++k) {
      if (i + k >= v.size()) {
        ok = false;
        break;
      }
      const std::uint8_t c = v[i + k];
      ok = k == 1 ? c >= low && c <= high : c >= 0x80 && c <= 0xbf;
    }
    if (ok) {
      out.append(reinterpret_cast<const char*>(v.data() + i), extra + 1);
      i += extra + 1;
    } else {
      out += '?';  // for the one byte that starts no valid sequence
      ++i;
    }
  }
  return out;
}

inline MacAddress mac_at(ByteView v) {
  std::array<std::uint8_t, 6> b{};
  for (std::size_t i = 0; i < 6; ++i) b[i] = v[i];
  return MacAddress(b);
}

// Ethernet header, optional 802.1Q tag. Returns the offset of what follows the type/length field.
struct EthernetHeader {
  MacAddress destination;
  MacAddress source;
  std::optional<std::uint16_t> vlan_tag;
  std::uint16_t type_or_length = 0;
  std::size_t payload_offset = 0;
};

inline std::optional<EthernetHeader> parse_ethernet(ByteView frame) {
  Reader r(frame);
  auto dst = r.bytes(6);
  auto src = r.bytes(6);
  auto type = r.u16();
  if (!dst || !src || !type) return std::nullopt;
  EthernetHeader h;
  h.destination = mac_at(*dst);
  h.source = mac_at(*src);
  if (*type == 0x8100 || *type == 0x88a8) {
    auto tci = r.u16();
    auto inner = r.u16();
    if (!tci || !inner) return std::nullopt;
    h.vlan_tag = static_cast<std::uint16_t>(*tci & 0x0fff);
    type = inner;
  }
  h.type_or_length = *type;
  h.payload_offset = r.position();
  return h;
}

// Pads a frame to the 60-byte Ethernet minimum (the NIC adds the FCS).
inline void pad_frame(Bytes& frame) {
  if (frame.size() < 60) frame.resize(60, 0);
}

}  // namespace ve::cdp::wire
