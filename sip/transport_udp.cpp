// UDP: one datagram is one message; the answer goes back from the same socket and from the
// address the request was sent to. A socket bound to 0.0.0.0 learns that address per datagram
// with IP_PKTINFO (IPV6_PKTINFO), and the reply carries it as its source, so a multihomed box
// answers from the address the phone used and "Registered with" names it.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "sip/transport.hpp"
#include "ve/log.hpp"

namespace ve::sip {

namespace asio = boost::asio;
using asio::ip::udp;

Result<void, std::string> UdpTransport::open(const udp::endpoint& at) {
  boost::system::error_code ec;
  socket_.open(at.protocol(), ec);
  if (!ec) socket_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) socket_.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
  ec.clear();  // a smaller receive buffer is not fatal
  socket_.bind(at, ec);
  if (ec) return unexpected(fmt::format("udp {}:{}: {}", at.address().to_string(), at.port(), ec.message()));
  const int on = 1;
  const int fd = socket_.native_handle();
  if (at.address().is_v4()) {
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  } else {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  }
  socket_.non_blocking(true, ec);
  local_ = socket_.local_endpoint(ec);
  local_text_ = fmt::format("{}:{}", local_.address().to_string(), local_.port());
  return {};
}

void UdpTransport::close() {
  boost::system::error_code ec;
  socket_.close(ec);
}

struct UdpTransport::Batch {
  // Room for IP_PKTINFO or IPV6_PKTINFO (whichever the socket's family delivers).
  static constexpr std::size_t kControl = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo));
  std::array<mmsghdr, kBatch> in{};
  std::array<iovec, kBatch> in_iov{};
  std::array<sockaddr_storage, kBatch> peer{};
  std::array<std::array<char, kControl>, kBatch> in_control{};
  // The answers of the batch, sent together.
  std::size_t replies = 0;
  std::array<mmsghdr, kBatch> out{};
  std::array<iovec, kBatch> out_iov{};
  std::array<sockaddr_storage, kBatch> to{};
  std::array<std::array<char, kControl>, kBatch> out_control{};
  std::array<std::string, kBatch> bytes;
  std::array<std::string, kBatch> peer_text;  // for the log line of a failed send
};

UdpTransport::UdpTransport(asio::io_context& io, std::shared_ptr<Core> core)
    : socket_(io), core_(std::move(core)), batch_(std::make_unique<Batch>()) {}

UdpTransport::~UdpTransport() = default;

void UdpTransport::send_to(const udp::endpoint& to, const std::string& bytes) {
  flush_replies();  // the batch's earlier answers leave first, as they would have unbatched
  boost::system::error_code ec;
  // As for answers: a full kernel buffer is a lost datagram, which the transaction layer retransmits.
  socket_.send_to(asio::buffer(bytes), to, 0, ec);
  if (ec) ve::logger("sip")->debug("udp send to {}:{} failed: {}", to.address().to_string(), to.port(), ec.message());
}

void UdpTransport::do_receive() {
  socket_.async_wait(udp::socket::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) { self->on_readable(ec); });
}

void UdpTransport::on_readable(const boost::system::error_code& ec) {
  if (ec == asio::error::operation_aborted || !socket_.is_open()) return;
  // A bounded number of datagrams per wake-up, so one busy socket cannot starve the other
  // handlers; a short batch means the socket is drained.
  for (std::size_t total = 0; total < 64 && socket_.is_open();) {
    const std::size_t n = receive_batch();
    total += n;
    if (n < kBatch) break;
  }
  if (socket_.is_open()) do_receive();
}

std::size_t UdpTransport::receive_batch() {
  Batch& b = *batch_;
  for (std::size_t i = 0; i < kBatch; ++i) {
    b.in_iov[i] = iovec{buffers_.get() + i * kSlotBytes, kSlotBytes};
    msghdr& msg = b.in[i].msg_hdr;
    msg = msghdr{};
    msg.msg_name = &b.peer[i];
    msg.msg_namelen = sizeof b.peer[i];
    msg.msg_iov = &b.in_iov[i];
    msg.msg_iovlen = 1;
    msg.msg_control = b.in_control[i].data();
    msg.msg_controllen = Batch::kControl;
    b.in[i].msg_len = 0;
  }
  int got = 0;
  for (int errors = 0;; ++errors) {
    got = ::recvmmsg(socket_.native_handle(), b.in.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got >= 0) break;
    // ICMP port unreachable from an earlier send is reported once; the next call reads on.
    if ((errno == EINTR || errno == ECONNREFUSED) && errors < 8) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) ve::logger("sip")->debug("udp receive: {}", std::strerror(errno));
    return 0;
  }
  const auto n = static_cast<std::size_t>(got);
  for (std::size_t i = 0; i < n && socket_.is_open(); ++i) handle_slot(i, b.in[i].msg_len);
  flush_replies();
  return n;
}

namespace {
// Dotted quad without inet_ntop's sprintf: once per datagram.
std::string ipv4_text(const in_addr& a) {
  const auto* p = reinterpret_cast<const unsigned char*>(&a);
  char buf[16];
  char* out = buf;
  for (int i = 0; i < 4; ++i) {
    if (i) *out++ = '.';
    const unsigned v = p[i];
    if (v >= 100) *out++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *out++ = static_cast<char>('0' + v / 10 % 10);
    *out++ = static_cast<char>('0' + v % 10);
  }
  return std::string(buf, static_cast<std::size_t>(out - buf));
}
}  // namespace

const std::string& UdpTransport::local_text_for(const std::optional<asio::ip::address>& a) {
  if (!a) return local_text_;
  if (last_local_text_.empty() || *a != last_local_) {
    last_local_ = *a;
    last_local_text_ = fmt::format("{}:{}", a->to_string(), local_.port());
  }
  return last_local_text_;
}

void UdpTransport::handle_slot(std::size_t i, std::size_t n) {
  Batch& b = *batch_;
  msghdr& msg = b.in[i].msg_hdr;
  if (msg.msg_flags & MSG_TRUNC) return;  // above 64 KiB: not SIP over UDP

  // Where it was sent to, for the Source and for the reply's source address.
  std::optional<asio::ip::address> local_address;
  in_pktinfo v4_info{};
  in6_pktinfo v6_info{};
  bool have_v4 = false, have_v6 = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      std::memcpy(&v4_info, CMSG_DATA(c), sizeof v4_info);
      asio::ip::address_v4::bytes_type a;
      std::memcpy(a.data(), &v4_info.ipi_addr, 4);
      local_address = asio::ip::address_v4(a);
      have_v4 = true;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      std::memcpy(&v6_info, CMSG_DATA(c), sizeof v6_info);
      asio::ip::address_v6::bytes_type a;
      std::memcpy(a.data(), &v6_info.ipi6_addr, 16);
      local_address = asio::ip::address_v6(a);
      have_v6 = true;
    }
  }

  const sockaddr_storage& peer = b.peer[i];
  Source src;
  src.transport = Transport::Udp;
  if (peer.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&peer);
    src.ip = ipv4_text(sin->sin_addr);
    src.port = ntohs(sin->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    asio::ip::address_v6::bytes_type a;
    std::memcpy(a.data(), &sin6->sin6_addr, 16);
    src.ip = asio::ip::address_v6(a, sin6->sin6_scope_id).to_string();
    src.port = ntohs(sin6->sin6_port);
  } else {
    return;
  }
  src.local = local_text_for(local_address);
  Reply reply = core_->handle(std::string_view(buffers_.get() + i * kSlotBytes, n), src);
  if (reply.bytes.empty() || !socket_.is_open()) return;

  // The reply: to the source address (port per RFC 3581 / 18.2.2), from the address it came to.
  const std::size_t k = b.replies++;
  sockaddr_storage& to = b.to[k];
  to = peer;
  if (to.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&to)->sin_port = htons(reply.port);
  else
    reinterpret_cast<sockaddr_in6*>(&to)->sin6_port = htons(reply.port);
  b.bytes[k] = std::move(reply.bytes);
  b.out_iov[k] = iovec{b.bytes[k].data(), b.bytes[k].size()};
  msghdr& out = b.out[k].msg_hdr;
  out = msghdr{};
  out.msg_name = &to;
  out.msg_namelen = msg.msg_namelen;
  out.msg_iov = &b.out_iov[k];
  out.msg_iovlen = 1;
  auto& out_control = b.out_control[k];
  out_control.fill(0);
  if (have_v4) {
    out.msg_control = out_control.data();
    out.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&out);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};
    // The local address the datagram was for (for unicast the header's destination; for a
    // broadcast the interface's address); routing picks the interface.
    info.ipi_spec_dst = v4_info.ipi_spec_dst;
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  } else if (have_v6) {
    out.msg_control = out_control.data();
    out.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&out);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    info.ipi6_addr = v6_info.ipi6_addr;
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  }
  b.peer_text[k] = src.ip;
}

void UdpTransport::flush_replies() {
  Batch& b = *batch_;
  std::size_t sent = 0;
  // A datagram send does not block short of a full kernel buffer; a failed send is the same as a
  // lost packet and the phone retransmits. sendmmsg stops at the first failure: skip that one.
  while (sent < b.replies && socket_.is_open()) {
    const int r =
        ::sendmmsg(socket_.native_handle(), b.out.data() + sent, static_cast<unsigned>(b.replies - sent), MSG_DONTWAIT);
    if (r > 0) {
      sent += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    const auto port =
        ntohs(b.to[sent].ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&b.to[sent])->sin_port
                                              : reinterpret_cast<const sockaddr_in6*>(&b.to[sent])->sin6_port);
    ve::logger("sip")->debug("udp send to {}:{} failed: {}", b.peer_text[sent], port, std::strerror(errno));
    ++sent;
  }
  for (std::size_t k = 0; k < b.replies; ++k) b.bytes[k].clear();
  b.replies = 0;
}

}  // namespace ve::sip
