#pragma once
// TFTP packets (RFC 1350) with options (RFC 2347 OACK, 2348 blksize, 2349 timeout/tsize,
// 7440 windowsize). Pure: bytes in, values out; no sockets, clocks or logging.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ve/result.hpp"

namespace ve::provision::tftp {

enum class Opcode : std::uint16_t { Rrq = 1, Wrq = 2, Data = 3, Ack = 4, Error = 5, Oack = 6 };

enum class ErrorCode : std::uint16_t {
  NotDefined = 0,
  FileNotFound = 1,
  AccessViolation = 2,
  DiskFull = 3,
  IllegalOperation = 4,
  UnknownTransferId = 5,
  FileExists = 6,
  NoSuchUser = 7,
  OptionRefused = 8,
};

enum class Mode { Netascii, Octet, Mail };

struct Option {
  std::string name;   // lower case
  std::string value;  // as sent
  friend bool operator==(const Option&, const Option&) = default;
};

// RRQ or WRQ.
struct Request {
  bool write = false;
  std::string filename;
  Mode mode = Mode::Octet;
  std::vector<Option> options;  // in request order, first of duplicate names kept
};

// A view into the datagram it was decoded from.
struct Data {
  std::uint16_t block = 0;
  std::span<const std::byte> payload;
};

struct Ack {
  std::uint16_t block = 0;
};

struct Error {
  ErrorCode code = ErrorCode::NotDefined;
  std::string message;
};

struct OptionAck {
  std::vector<Option> options;
};

using Packet = std::variant<Request, Data, Ack, Error, OptionAck>;

enum class DecodeError {
  Truncated,  // shorter than its opcode needs
  UnknownOpcode,
  Unterminated,  // a string without its NUL
  EmptyFilename,
  BadMode,  // not netascii, octet or mail
  OptionWithoutValue,
  TooManyOptions,
  TrailingBytes,  // bytes after an ACK
};
std::string_view to_string(DecodeError e);

inline constexpr std::size_t kMaxOptions = 16;
inline constexpr std::size_t kMaxPacket = 65468;  // 65464 blksize + 4 header bytes

Result<Packet, DecodeError> decode(std::span<const std::byte> datagram);

std::vector<std::byte> encode(const Request& r);
std::vector<std::byte> encode(const Ack& a);
std::vector<std::byte> encode(const Error& e);
std::vector<std::byte> encode(const OptionAck& o);
std::vector<std::byte> encode(const Data& d);
// The 4-byte DATA header; the server sends it gathered with a view of the file.
std::array<std::byte, 4> data_header(std::uint16_t block);

// Option negotiation for a read request.
struct NegotiationLimits {
  std::size_t max_blksize = 65464;
  std::uint16_t max_windowsize = 64;
  // A longer retransmit timeout is not acknowledged (RFC 2349 lets the server decline the option;
  // it must not change the value): a never-acknowledged `timeout 255` would hold a slot for minutes.
  int max_timeout_s = 10;
};

struct Negotiated {
  std::size_t blksize = 512;
  std::uint16_t windowsize = 1;
  std::optional<int> timeout_s;      // client asked for this retransmit timeout
  std::vector<Option> oack;          // empty: no OACK, start with DATA 1
  std::vector<std::string> ignored;  // "tsize 'enable': not a number", for the debug log
};

// Never fails (RFC 2347: the server ignores options it does not accept, and the client falls
// back to the RFC 1350 default for each). blksize and windowsize above the limit are lowered; a
// malformed or out-of-range value, a timeout above max_timeout_s and unknown options are left out
// of the OACK and listed in `ignored`.
Negotiated negotiate(const std::vector<Option>& options, std::uint64_t file_size, const NegotiationLimits& limits);

// RFC 764 netascii: LF -> CR LF, CR -> CR NUL.
std::vector<std::byte> to_netascii(std::span<const std::byte> bytes);

}  // namespace ve::provision::tftp
