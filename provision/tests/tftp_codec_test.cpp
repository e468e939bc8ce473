#include <gtest/gtest.h>

#include "provision/provision.hpp"

namespace ve::provision::tftp {
namespace {

using namespace std::string_literals;

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

// A read request as tftp-hpa and curl put it on the wire.
TEST(TftpCodec, DecodesReadRequestWithOptions) {
  const auto wire = bytes(
      "\x00\x01SEP001122334455.cnf.xml\0octet\0blksize\0"
      "1428\0TSize\0"
      "0\0windowsize\0"
      "16\0"s);
  auto p = decode(wire);
  ASSERT_TRUE(p) << to_string(p.error());
  const auto& r = std::get<Request>(*p);
  EXPECT_FALSE(r.write);
  EXPECT_EQ(r.filename, "SEP001122334455.cnf.xml");
  EXPECT_EQ(r.mode, Mode::Octet);
  ASSERT_EQ(r.options.size(), 3u);
  EXPECT_EQ(r.options[0], (Option{"blksize", "1428"}));
  EXPECT_EQ(r.options[1], (Option{"tsize", "0"}));
  EXPECT_EQ(r.options[2], (Option{"windowsize", "16"}));
}

TEST(TftpCodec, ModeIsCaseInsensitive) {
  auto p =
      decode(bytes(std::string_view("\x00\x02"
                                    "f\0NetASCII\0",
                                    13)));
  ASSERT_TRUE(p);
  EXPECT_TRUE(std::get<Request>(*p).write);
  EXPECT_EQ(std::get<Request>(*p).mode, Mode::Netascii);
}

TEST(TftpCodec, RoundTripsEveryPacketType) {
  Request r{false, "a/b.xml", Mode::Octet, {{"blksize", "512"}}};
  auto rp = decode(encode(r));
  ASSERT_TRUE(rp);
  EXPECT_EQ(std::get<Request>(*rp).filename, "a/b.xml");
  EXPECT_EQ(std::get<Request>(*rp).options, r.options);

  auto ap = decode(encode(Ack{65535}));
  ASSERT_TRUE(ap);
  EXPECT_EQ(std::get<Ack>(*ap).block, 65535);

  auto ep = decode(encode(Error{ErrorCode::FileNotFound, "File not found"}));
  ASSERT_TRUE(ep);
  EXPECT_EQ(std::get<Error>(*ep).code, ErrorCode::FileNotFound);
  EXPECT_EQ(std::get<Error>(*ep).message, "File not found");

  auto op = decode(encode(OptionAck{{{"tsize", "99"}}}));
  ASSERT_TRUE(op);
  EXPECT_EQ(std::get<OptionAck>(*op).options, (std::vector<Option>{{"tsize", "99"}}));

  const auto payload = bytes("hello");
  auto wire = encode(Data{7, payload});
  const auto header = data_header(7);
  EXPECT_TRUE(std::equal(header.begin(), header.end(), wire.begin()));
  auto dp = decode(wire);
  ASSERT_TRUE(dp);
  EXPECT_EQ(std::get<Data>(*dp).block, 7);
  EXPECT_EQ(std::get<Data>(*dp).payload.size(), 5u);
}

TEST(TftpCodec, RejectsEachMalformedShape) {
  EXPECT_EQ(decode(bytes("")).error(), DecodeError::Truncated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00", 1))).error(), DecodeError::Truncated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x09", 2))).error(), DecodeError::UnknownOpcode);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x00", 2))).error(), DecodeError::UnknownOpcode);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x01"
                                          "file",
                                          6)))
                .error(),
            DecodeError::Unterminated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x01"
                                          "file\0octet",
                                          12)))
                .error(),
            DecodeError::Unterminated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x01\0octet\0", 9))).error(), DecodeError::EmptyFilename);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x01"
                                          "f\0binary\0",
                                          11)))
                .error(),
            DecodeError::BadMode);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x01"
                                          "f\0octet\0blksize\0",
                                          18)))
                .error(),
            DecodeError::OptionWithoutValue);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x04\x00", 3))).error(), DecodeError::Truncated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x04\x00\x01\x02", 5))).error(), DecodeError::TrailingBytes);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x03\x00", 3))).error(), DecodeError::Truncated);
  EXPECT_EQ(decode(bytes(std::string_view("\x00\x05\x00", 3))).error(), DecodeError::Truncated);
  std::string many(
      "\x00\x01"
      "f\0octet\0",
      10);
  for (int i = 0; i < 17; ++i) many += "o" + std::to_string(i) + std::string("\0v\0", 3);
  EXPECT_EQ(decode(bytes(many)).error(), DecodeError::TooManyOptions);
}

TEST(TftpCodec, KeepsFirstOfDuplicateOptions) {
  auto p =
      decode(bytes("\x00\x01"
                   "f\0octet\0blksize\0"
                   "600\0BLKSIZE\0"
                   "700\0"s));
  ASSERT_TRUE(p);
  ASSERT_EQ(std::get<Request>(*p).options.size(), 1u);
  EXPECT_EQ(std::get<Request>(*p).options[0].value, "600");
}

TEST(TftpCodec, ErrorWithoutTerminatorKeepsMessage) {
  auto p = decode(bytes(std::string_view("\x00\x05\x00\x01nope", 8)));
  ASSERT_TRUE(p);
  EXPECT_EQ(std::get<Error>(*p).message, "nope");
}

TEST(TftpNegotiation, AnswersKnownOptionsInRequestOrder) {
  auto n = negotiate({{"tsize", "0"}, {"blksize", "1428"}, {"multicast", ""}, {"windowsize", "16"}, {"timeout", "3"}},
                     12345, NegotiationLimits{});
  EXPECT_EQ(n.blksize, 1428u);
  EXPECT_EQ(n.windowsize, 16);
  EXPECT_EQ(n.timeout_s, 3);
  EXPECT_EQ(n.oack,
            (std::vector<Option>{{"tsize", "12345"}, {"blksize", "1428"}, {"windowsize", "16"}, {"timeout", "3"}}));
  ASSERT_EQ(n.ignored.size(), 1u);
  EXPECT_EQ(n.ignored[0], "multicast '': not supported");
}

TEST(TftpNegotiation, LowersBlksizeAndWindowsizeToLimits) {
  NegotiationLimits limits;
  limits.max_blksize = 1468;
  limits.max_windowsize = 8;
  auto n = negotiate({{"blksize", "65464"}, {"windowsize", "64"}}, 0, limits);
  EXPECT_EQ(n.blksize, 1468u);
  EXPECT_EQ(n.windowsize, 8);
  EXPECT_EQ(n.oack[0].value, "1468");
  EXPECT_EQ(n.oack[1].value, "8");
}

TEST(TftpNegotiation, NoOptionsMeansNoOack) {
  auto n = negotiate({}, 100, NegotiationLimits{});
  EXPECT_TRUE(n.oack.empty());
  EXPECT_EQ(n.blksize, 512u);
  EXPECT_EQ(n.windowsize, 1);
}

// RFC 2347: an option the server cannot use is left out of the OACK; the transfer goes on with
// the RFC 1350 default for it. Main refused the whole transfer with error 8 for each of these.
TEST(TftpNegotiation, IgnoresValuesItCannotUseInsteadOfFailing) {
  const NegotiationLimits l;
  for (const Option& o : std::vector<Option>{{"blksize", "7"},
                                             {"blksize", "65465"},
                                             {"blksize", "-1"},
                                             {"blksize", "99999999999999999999999"},
                                             {"blksize", ""},
                                             {"timeout", "0"},
                                             {"timeout", "256"},
                                             {"timeout", "3s"},
                                             {"tsize", "enable"},  // atftp 0.8 --option "tsize enable"
                                             {"tsize", "x"},
                                             {"tsize", "-5"},
                                             {"windowsize", "0"},
                                             {"windowsize", "65536"},
                                             {"windowsize", "lots"},
                                             {"rollover", "1"}}) {
    // A usable option next to it is still answered.
    const Option other = o.name == "tsize" ? Option{"windowsize", "4"} : Option{"tsize", "0"};
    const auto n = negotiate({o, other}, 4096, l);
    EXPECT_EQ(n.blksize, 512u) << o.name << " " << o.value;
    EXPECT_EQ(n.windowsize, o.name == "tsize" ? 4 : 1) << o.value;
    EXPECT_FALSE(n.timeout_s) << o.value;
    ASSERT_EQ(n.oack.size(), 1u) << o.name << " " << o.value;
    EXPECT_EQ(n.oack[0], o.name == "tsize" ? (Option{"windowsize", "4"}) : (Option{"tsize", "4096"}));
    ASSERT_EQ(n.ignored.size(), 1u);
    EXPECT_TRUE(n.ignored[0].starts_with(o.name + " '")) << n.ignored[0];
  }
}

TEST(TftpNegotiation, TimeoutAboveTheLimitIsNotAcknowledged) {
  NegotiationLimits l;
  l.max_timeout_s = 10;
  EXPECT_EQ(negotiate({{"timeout", "10"}}, 0, l).timeout_s, 10);
  const auto n = negotiate({{"timeout", "255"}, {"tsize", "0"}}, 7, l);
  EXPECT_FALSE(n.timeout_s);
  EXPECT_EQ(n.oack, (std::vector<Option>{{"tsize", "7"}}));
  ASSERT_EQ(n.ignored.size(), 1u);
  EXPECT_NE(n.ignored[0].find("limit of 10 s"), std::string::npos) << n.ignored[0];
}

TEST(TftpNegotiation, IgnoredValueInTheLogIsBounded) {
  const auto n = negotiate({{"tsize", std::string(500, 'z')}}, 0, NegotiationLimits{});
  ASSERT_EQ(n.ignored.size(), 1u);
  EXPECT_LT(n.ignored[0].size(), 64u);
}

TEST(TftpCodec, NetasciiExpandsLineEnds) {
  auto out = to_netascii(bytes("a\nb\rc"));
  EXPECT_EQ(out, bytes(std::string_view("a\r\nb\r\0c", 7)));
}

}  // namespace
}  // namespace ve::provision::tftp
