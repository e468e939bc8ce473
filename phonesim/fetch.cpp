// A phone's downloads from its own address: HTTP 6970 to the first option-150 server, falling
// back to TFTP for a file when HTTP cannot be reached or answers with a server error, and to the
// next option-150 server when one does not answer at all.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include "phonesim/internal.hpp"
#include "provision/tftp_codec.hpp"

namespace ve::phonesim::detail {

namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr std::size_t kTftpBlockSize = 1428;  // fits a 1500-byte MTU with IP/UDP/TFTP headers
constexpr auto kTftpRetransmit = std::chrono::seconds(1);
constexpr int kTftpMaxRetries = 5;

asio::ip::address_v4 addr(std::uint32_t host_order) { return asio::ip::address_v4(host_order); }

}  // namespace

FileClient::FileClient(asio::any_io_executor ex, std::uint32_t local_ip, std::vector<std::uint32_t> servers,
                       FetchSettings settings)
    : ex_(std::move(ex)), local_ip_(local_ip), servers_(std::move(servers)), settings_(std::move(settings)) {}

FileClient::~FileClient() {
  if (http_) {
    error_code ignored;
    http_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    http_->close();
  }
}

asio::awaitable<FetchResult> FileClient::fetch(std::string name) {
  FetchResult last;
  last.detail = "no TFTP server";
  for (std::size_t tried = 0; tried < servers_.size(); ++tried) {
    const std::size_t index = (current_ + tried) % servers_.size();
    const std::uint32_t server = servers_[index];
    std::string why;
    if (settings_.transport != FetchTransport::Tftp && !http_dead_[server]) {
      FetchResult r = co_await http_get(server, name);
      if (r.status == FetchStatus::Ok || r.status == FetchStatus::NotFound) {
        current_ = index;
        co_return r;
      }
      if (settings_.transport == FetchTransport::Http) {
        last = std::move(r);
        continue;
      }
      why = r.via + ": " + r.detail + "; ";
    }
    if (settings_.transport != FetchTransport::Http) {
      FetchResult r = co_await tftp_get(server, name);
      if (r.status != FetchStatus::Unreachable) current_ = index;
      r.detail = why + r.detail;
      if (r.status != FetchStatus::Unreachable) co_return r;
      last = std::move(r);
    }
  }
  co_return last;
}

asio::awaitable<FetchResult> FileClient::http_get(std::uint32_t server, std::string const& name) {
  FetchResult result;
  result.via = fmt::format("http {}:{}", ipv4_to_string(server), settings_.http_port);
  const bool reused = http_ && http_server_ == server && http_->socket().is_open();
  for (int attempt = 0; attempt < 2; ++attempt) {
    error_code ec;
    if (!http_ || http_server_ != server || !http_->socket().is_open()) {
      http_.emplace(ex_);
      http_server_ = server;
      http_->socket().open(tcp::v4(), ec);
      if (!ec) http_->socket().bind(tcp::endpoint(addr(local_ip_), 0), ec);
      if (ec) {
        result.status = FetchStatus::Error;
        result.detail = "cannot bind " + ipv4_to_string(local_ip_) + ": " + ec.message();
        http_.reset();
        co_return result;
      }
      http_->expires_after(settings_.timeout);
      co_await http_->async_connect(tcp::endpoint(addr(server), settings_.http_port), token(ec));
      if (ec) {
        http_dead_[server] = true;
        http_.reset();
        result.status = FetchStatus::Unreachable;
        result.detail = ec == beast::error::timeout ? "connect timed out" : "connect: " + ec.message();
        co_return result;
      }
    }
    http::request<http::empty_body> req{http::verb::get, "/" + name, 11};
    req.set(http::field::host, fmt::format("{}:{}", ipv4_to_string(server), settings_.http_port));
    req.set(http::field::user_agent, settings_.user_agent);
    req.keep_alive(true);
    http_->expires_after(settings_.timeout);
    co_await http::async_write(*http_, req, token(ec));
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(settings_.max_bytes);
    if (!ec) co_await http::async_read(*http_, buffer, parser, token(ec));
    if (ec) {
      http_.reset();
      // A kept-alive connection the server closed meanwhile: one fresh try.
      if (attempt == 0 && reused && ec != beast::error::timeout) continue;
      result.status = FetchStatus::Unreachable;
      result.detail = ec == beast::error::timeout ? "no answer in time" : ec.message();
      co_return result;
    }
    auto res = parser.release();
    if (!res.keep_alive()) http_.reset();
    const unsigned code = res.result_int();
    if (code == 200) {
      result.status = FetchStatus::Ok;
      result.body = std::move(res.body());
    } else if (code == 404 || code == 410) {
      result.status = FetchStatus::NotFound;
      result.detail = fmt::format("HTTP {}", code);
    } else {
      result.status = FetchStatus::Error;
      result.detail = fmt::format("HTTP {} {}", code, std::string(res.reason()));
    }
    co_return result;
  }
  co_return result;
}

asio::awaitable<FetchResult> FileClient::tftp_get(std::uint32_t server, std::string const& name) {
  namespace tftp = provision::tftp;
  FetchResult result;
  result.via = "tftp " + ipv4_to_string(server);
  error_code ec;
  udp::socket socket(ex_);
  socket.open(udp::v4(), ec);
  if (!ec) socket.bind(udp::endpoint(addr(local_ip_), 0), ec);
  if (ec) {
    result.status = FetchStatus::Error;
    result.detail = "cannot bind " + ipv4_to_string(local_ip_) + ": " + ec.message();
    co_return result;
  }
  tftp::Request rrq;
  rrq.filename = name;
  rrq.mode = tftp::Mode::Octet;
  rrq.options = {{"blksize", std::to_string(kTftpBlockSize)}};
  if (settings_.tftp_windowsize > 1) rrq.options.push_back({"windowsize", std::to_string(settings_.tftp_windowsize)});
  std::size_t window = 1;     // what the server's OACK granted (RFC 7440); 1 without one
  std::size_t in_window = 0;  // in-order blocks since our last ACK
  bool gap_acked = false;     // already told the server where a gap began
  std::vector<std::byte> last_sent = tftp::encode(rrq);
  udp::endpoint destination(addr(server), settings_.tftp_port);
  std::optional<udp::endpoint> peer;  // the server's transfer port, fixed by its first answer
  std::size_t block_size = 512;
  std::uint16_t expected_block = 1;
  std::string body;
  std::vector<std::byte> datagram(tftp::kMaxPacket);
  const auto deadline = Clock::now() + settings_.timeout;
  int retries = 0;

  auto send = [&]() -> asio::awaitable<bool> {
    error_code sec;
    co_await socket.async_send_to(asio::buffer(last_sent), peer ? *peer : destination, token(sec));
    co_return !sec;
  };
  if (!co_await send()) {
    result.status = FetchStatus::Unreachable;
    result.detail = "send failed";
    co_return result;
  }
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) {
      result.status = FetchStatus::Unreachable;
      result.detail = peer ? "transfer timed out" : "no answer";
      co_return result;
    }
    udp::endpoint sender;
    std::size_t n = 0;
    {
      Watchdog wd(ex_, std::min<Clock::duration>(kTftpRetransmit, deadline - now), [&socket] {
        error_code ignored;
        socket.cancel(ignored);
      });
      n = co_await socket.async_receive_from(asio::buffer(datagram), sender, token(ec));
    }
    if (ec == asio::error::operation_aborted) {
      if (++retries > kTftpMaxRetries) {
        result.status = FetchStatus::Unreachable;
        result.detail = peer ? "transfer stalled" : "no answer";
        co_return result;
      }
      (void)co_await send();
      continue;
    }
    if (ec) {
      // ICMP port unreachable surfaces here as connection_refused on Linux.
      result.status = FetchStatus::Unreachable;
      result.detail = ec.message();
      co_return result;
    }
    if (sender.address() != destination.address()) continue;
    if (peer && sender != *peer) continue;  // another transfer's port: not ours (RFC 1350 TID)
    auto packet = tftp::decode(std::span<const std::byte>(datagram.data(), n));
    if (!packet) continue;  // malformed: dropped, the retransmit timer runs on
    if (!peer) peer = sender;
    if (auto* error = std::get_if<tftp::Error>(&*packet)) {
      result.status = error->code == tftp::ErrorCode::FileNotFound ? FetchStatus::NotFound : FetchStatus::Error;
      result.detail = fmt::format("TFTP error {} {}", static_cast<int>(error->code), error->message);
      co_return result;
    }
    if (auto* oack = std::get_if<tftp::OptionAck>(&*packet)) {
      for (const auto& o : oack->options) {
        if (o.name == "blksize") block_size = static_cast<std::size_t>(std::strtoul(o.value.c_str(), nullptr, 10));
        if (o.name == "windowsize") window = static_cast<std::size_t>(std::strtoul(o.value.c_str(), nullptr, 10));
      }
      if (block_size < 8 || block_size > 65464) block_size = 512;
      if (window < 1 || window > settings_.tftp_windowsize) window = 1;
      last_sent = tftp::encode(tftp::Ack{0});
      retries = 0;
      (void)co_await send();
      continue;
    }
    if (auto* data = std::get_if<tftp::Data>(&*packet)) {
      if (data->block != expected_block) {
        if (window == 1) {
          // A duplicate of the previous block: our ACK was lost, say it again.
          if (data->block == static_cast<std::uint16_t>(expected_block - 1)) (void)co_await send();
        } else if (!gap_acked) {
          // RFC 7440: a gap or a repeated window; ACK the last block in order, once, and the
          // server goes on from there.
          last_sent = tftp::encode(tftp::Ack{static_cast<std::uint16_t>(expected_block - 1)});
          gap_acked = true;
          in_window = 0;
          (void)co_await send();
        }
        continue;
      }
      gap_acked = false;
      if (body.size() + data->payload.size() > settings_.max_bytes) {
        last_sent = tftp::encode(tftp::Error{tftp::ErrorCode::DiskFull, "too large"});
        (void)co_await send();
        result.status = FetchStatus::Error;
        result.detail = "file larger than the limit";
        co_return result;
      }
      body.append(reinterpret_cast<const char*>(data->payload.data()), data->payload.size());
      const bool last = data->payload.size() < block_size;
      retries = 0;
      ++expected_block;
      if (++in_window >= window || last) {
        last_sent = tftp::encode(tftp::Ack{data->block});
        in_window = 0;
        (void)co_await send();
      }
      if (last) {
        result.status = FetchStatus::Ok;
        result.body = std::move(body);
        co_return result;
      }
    }
  }
}

}  // namespace ve::phonesim::detail
