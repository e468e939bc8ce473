#include "provision/tftp_codec.hpp"

#include <algorithm>
#include <charconv>

namespace ve::provision::tftp {

namespace {

std::uint16_t read_u16(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(b[at]) << 8) | std::to_integer<unsigned>(b[at + 1]));
}

void put_u16(std::vector<std::byte>& out, std::uint16_t v) {
  out.push_back(static_cast<std::byte>(v >> 8));
  out.push_back(static_cast<std::byte>(v & 0xff));
}

void put_string(std::vector<std::byte>& out, std::string_view s) {
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  out.push_back(std::byte{0});
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  return out;
}

// Reads NUL-terminated strings from a byte range, never past its end.
class StringReader {
 public:
  explicit StringReader(std::span<const std::byte> bytes) : bytes_(bytes) {}
  bool at_end() const { return pos_ >= bytes_.size(); }
  std::optional<std::string_view> next() {
    const auto* begin = reinterpret_cast<const char*>(bytes_.data()) + pos_;
    for (std::size_t i = pos_; i < bytes_.size(); ++i) {
      if (bytes_[i] == std::byte{0}) {
        std::string_view s(begin, i - pos_);
        pos_ = i + 1;
        return s;
      }
    }
    return std::nullopt;
  }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
};

Result<Packet, DecodeError> decode_request(bool write, std::span<const std::byte> body) {
  StringReader reader(body);
  auto filename = reader.next();
  if (!filename) return unexpected(DecodeError::Unterminated);
  if (filename->empty()) return unexpected(DecodeError::EmptyFilename);
  auto mode_text = reader.next();
  if (!mode_text) return unexpected(DecodeError::Unterminated);
  Request r;
  r.write = write;
  r.filename = std::string(*filename);
  const std::string mode = lower(*mode_text);
  if (mode == "octet")
    r.mode = Mode::Octet;
  else if (mode == "netascii")
    r.mode = Mode::Netascii;
  else if (mode == "mail")
    r.mode = Mode::Mail;
  else
    return unexpected(DecodeError::BadMode);
  std::size_t seen = 0;
  while (!reader.at_end()) {
    auto name = reader.next();
    if (!name) return unexpected(DecodeError::Unterminated);
    auto value = reader.next();
    if (!value) return unexpected(DecodeError::OptionWithoutValue);
    if (++seen > kMaxOptions) return unexpected(DecodeError::TooManyOptions);
    std::string key = lower(*name);
    const bool duplicate =
        std::any_of(r.options.begin(), r.options.end(), [&](const Option& o) { return o.name == key; });
    if (!duplicate) r.options.push_back(Option{std::move(key), std::string(*value)});
  }
  return Packet{std::move(r)};
}

Result<Packet, DecodeError> decode_oack(std::span<const std::byte> body) {
  StringReader reader(body);
  OptionAck o;
  while (!reader.at_end()) {
    auto name = reader.next();
    if (!name) return unexpected(DecodeError::Unterminated);
    auto value = reader.next();
    if (!value) return unexpected(DecodeError::OptionWithoutValue);
    if (o.options.size() >= kMaxOptions) return unexpected(DecodeError::TooManyOptions);
    o.options.push_back(Option{lower(*name), std::string(*value)});
  }
  return Packet{std::move(o)};
}

// Decimal digits only, no sign, no leading spaces; bounded so it cannot overflow.
std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::string_view to_string(DecodeError e) {
  switch (e) {
    case DecodeError::Truncated: return "truncated";
    case DecodeError::UnknownOpcode: return "unknown opcode";
    case DecodeError::Unterminated: return "unterminated string";
    case DecodeError::EmptyFilename: return "empty filename";
    case DecodeError::BadMode: return "bad mode";
    case DecodeError::OptionWithoutValue: return "option without value";
    case DecodeError::TooManyOptions: return "too many options";
    case DecodeError::TrailingBytes: return "trailing bytes";
  }
  return "?";
}

Result<Packet, DecodeError> decode(std::span<const std::byte> datagram) {
  if (datagram.size() < 2) return unexpected(DecodeError::Truncated);
  const std::uint16_t opcode = read_u16(datagram, 0);
  const auto body = datagram.subspan(2);
  switch (opcode) {
    case static_cast<std::uint16_t>(Opcode::Rrq): return decode_request(false, body);
    case static_cast<std::uint16_t>(Opcode::Wrq): return decode_request(true, body);
    case static_cast<std::uint16_t>(Opcode::Data): {
      if (body.size() < 2) return unexpected(DecodeError::Truncated);
      return Packet{Data{read_u16(body, 0), body.subspan(2)}};
    }
    case static_cast<std::uint16_t>(Opcode::Ack): {
      if (body.size() < 2) return unexpected(DecodeError::Truncated);
      if (body.size() > 2) return unexpected(DecodeError::TrailingBytes);
      return Packet{Ack{read_u16(body, 0)}};
    }
    case static_cast<std::uint16_t>(Opcode::Error): {
      if (body.size() < 2) return unexpected(DecodeError::Truncated);
      Error e{static_cast<ErrorCode>(read_u16(body, 0)), {}};
      // Some clients omit the message's NUL; take what is there up to the first NUL.
      const auto text = body.subspan(2);
      const auto* chars = reinterpret_cast<const char*>(text.data());
      std::size_t n = 0;
      while (n < text.size() && chars[n] != '\0') ++n;
      e.message.assign(chars, n);
      return Packet{std::move(e)};
    }
    case static_cast<std::uint16_t>(Opcode::Oack): return decode_oack(body);
    default: return unexpected(DecodeError::UnknownOpcode);
  }
}

std::vector<std::byte> encode(const Request& r) {
  std::vector<std::byte> out;
  put_u16(out, static_cast<std::uint16_t>(r.write ? Opcode::Wrq : Opcode::Rrq));
  put_string(out, r.filename);
  switch (r.mode) {
    case Mode::Octet: put_string(out, "octet"); break;
    case Mode::Netascii: put_string(out, "netascii"); break;
    case Mode::Mail: put_string(out, "mail"); break;
  }
  for (const auto& o : r.options) {
    put_string(out, o.name);
    put_string(out, o.value);
  }
  return out;
}

std::vector<std::byte> encode(const Ack& a) {
  std::vector<std::byte> out;
  put_u16(out, static_cast<std::uint16_t>(Opcode::Ack));
  put_u16(out, a.block);
  return out;
}

std::vector<std::byte> encode(const Error& e) {
  std::vector<std::byte> out;
  put_u16(out, static_cast<std::uint16_t>(Opcode::Error));
  put_u16(out, static_cast<std::uint16_t>(e.code));
  put_string(out, e.message);
  return out;
}

std::vector<std::byte> encode(const OptionAck& o) {
  std::vector<std::byte> out;
  put_u16(out, static_cast<std::uint16_t>(Opcode::Oack));
  for (const auto& opt : o.options) {
    put_string(out, opt.name);
    put_string(out, opt.value);
  }
  return out;
}

std::vector<std::byte> encode(const Data& d) {
  // Sized once (GCC 12 warns falsely about push_back followed by insert here).
  std::vector<std::byte> out(4 + d.payload.size());
  const auto header = data_header(d.block);
  std::copy(header.begin(), header.end(), out.begin());
  std::copy(d.payload.begin(), d.payload.end(), out.begin() + 4);
  return out;
}

std::array<std::byte, 4> data_header(std::uint16_t block) {
  return {std::byte{0}, std::byte{3}, static_cast<std::byte>(block >> 8), static_cast<std::byte>(block & 0xff)};
}

Negotiated negotiate(const std::vector<Option>& options, std::uint64_t file_size, const NegotiationLimits& limits) {
  Negotiated n;
  auto ignore = [&](const Option& o, std::string_view why) {
    // The value is the client's: bounded so a log line stays short.
    n.ignored.push_back(o.name + " '" + o.value.substr(0, 32) + "': " + std::string(why));
  };
  for (const auto& o : options) {
    if (o.name == "blksize") {
      auto v = parse_decimal(o.value);
      if (!v || *v < 8 || *v > 65464) {
        ignore(o, "not in 8-65464");
        continue;
      }
      n.blksize = static_cast<std::size_t>(std::min<std::uint64_t>(*v, limits.max_blksize));
      n.oack.push_back(Option{o.name, std::to_string(n.blksize)});
    } else if (o.name == "timeout") {
      auto v = parse_decimal(o.value);
      if (!v || *v < 1 || *v > 255) {
        ignore(o, "not in 1-255");
        continue;
      }
      if (*v > static_cast<std::uint64_t>(limits.max_timeout_s)) {
        ignore(o, "above this server's limit of " + std::to_string(limits.max_timeout_s) + " s");
        continue;
      }
      n.timeout_s = static_cast<int>(*v);
      n.oack.push_back(Option{o.name, std::to_string(*v)});
    } else if (o.name == "tsize") {
      // A read request carries 0; atftp 0.8 sends whatever follows "tsize" (e.g. "enable"). Either
      // way the client wants the size, and answering it is harmless.
      if (!parse_decimal(o.value)) {
        ignore(o, "not a number");
        continue;
      }
      n.oack.push_back(Option{o.name, std::to_string(file_size)});
    } else if (o.name == "windowsize") {
      auto v = parse_decimal(o.value);
      if (!v || *v < 1 || *v > 65535) {
        ignore(o, "not in 1-65535");
        continue;
      }
      n.windowsize = static_cast<std::uint16_t>(std::min<std::uint64_t>(*v, limits.max_windowsize));
      n.oack.push_back(Option{o.name, std::to_string(n.windowsize)});
    } else {
      // multicast, utimeout, rollover…: not acknowledged, the client falls back.
      ignore(o, "not supported");
    }
  }
  return n;
}

std::vector<std::byte> to_netascii(std::span<const std::byte> bytes) {
  std::vector<std::byte> out;
  out.reserve(bytes.size() + bytes.size() / 32);
  for (std::byte b : bytes) {
    if (b == std::byte{'\n'}) {
      out.push_back(std::byte{'\r'});
      out.push_back(std::byte{'\n'});
    } else if (b == std::byte{'\r'}) {
      out.push_back(std::byte{'\r'});
      out.push_back(std::byte{0});
    } else {
      out.push_back(b);
    }
  }
  return out;
}

}  // namespace ve::provision::tftp
