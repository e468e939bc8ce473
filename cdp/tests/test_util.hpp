#pragma once
// Test helpers: hex text (spaces ignored) to bytes.
#include <cctype>
#include <stdexcept>
#include <string_view>

#include "cdp/cdp.hpp"

namespace ve::cdp::test {

inline Bytes from_hex(std::string_view text) {
  Bytes out;
  int high = -1;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10;
    if (v < 0 || v > 15) throw std::invalid_argument("bad hex");
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  if (high >= 0) throw std::invalid_argument("odd hex");
  return out;
}

// A real Cisco 7970 phone CDP frame (odd-length PDU, checksum 0x1e74). Source: the captured frame
// recorded in voiceedge's shared/docs/protocol-notes.md ("Real frame, a Cisco 7970 phone"), whose
// checksum rule agrees with Wireshark's packet-cdp.c.
inline Bytes phone_7970_frame() {
  return from_hex(
      "01000ccccccc0012dadbd34e008baaaa0300000c2000 02b41e74"
      "0001001353455030303132444144424433344500020011000000010101cc00040a0a2141"
      "0003000a506f727420310004000800000490 0005001053495037302e382d352d3353"
      "00060017436973636f2049502050686f6e652037393730 001c0007000200"
      "00190010d34e00000000280a0000189c 000b000501 00100006189c");
}

// A real LLDP frame with LLDP-MED inventory TLVs, captured from lldpd on a NEC PowerMate and
// published as test data in lldpd's tests/check_lldp.c (test_recv_lldpd).
inline Bytes lldpd_med_inventory_frame() {
  return from_hex(
      "0180c200000e0016172fa1b688cc020704 0016172fa1b6040703 0016172fa1b6 06020078"
      "0a1a6e617275746f2e58585858585858585858585858585858585858"
      "0c3f4c696e757820322e362e32392d322d616d64363420233120534d502053756e204d61792031"
      "372031373a31353a3437205554432032303039207838365f3634"
      "0e04001c0014 100c05010aee504b020000000300 080465746830"
      "fe0900120f0301000000 00 fe0900120f01036c030010 fe0600120f0405dc"
      "fe070012bb01000000 fe0f0012bb054e44393931373839373032"
      "fe0b0012bb0630383030313220 fe120012bb07322e362e32392d322d616d643634"
      "fe100012bb08313035383230383530303039 fe150012bb094e454320436f6d70757465727320534153"
      "fe130012bb0a504f5745524d41544520564c333530 fe0d0012bb0b313030323037313230 0000");
}

}  // namespace ve::cdp::test
