// UDP: one datagram is one message; the answer goes back from the same socket and from the
// address the request was sent to. A socket bound to 0.0.0.0 learns that address per datagram
// with IP_PKTINFO (IPV6_PKTINFO), and the reply carries it as its source, so a multihomed box
// answers from the address the phone used and "Registered with" names it.
#include <netinet/in.h>
#include <sys/socket.h>

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

void UdpTransport::send_to(const udp::endpoint& to, const std::string& bytes) {
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
  // A bounded batch per wake-up, so one busy socket cannot starve the other handlers.
  for (int i = 0; i < 64 && socket_.is_open(); ++i) {
    if (!receive_one()) break;
  }
  if (socket_.is_open()) do_receive();
}

bool UdpTransport::receive_one() {
  sockaddr_storage peer{};
  iovec iov{buffer_.data(), buffer_.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo))];
  msghdr msg{};
  msg.msg_name = &peer;
  msg.msg_namelen = sizeof peer;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      ve::logger("sip")->debug("udp receive: {}", std::strerror(errno));  // e.g. ICMP port unreachable
      return errno == ECONNREFUSED;
    }
    return false;
  }
  if (msg.msg_flags & MSG_TRUNC) return true;  // above 64 KiB: not SIP over UDP

  // Where it was sent to, for the Source and for the reply's source address.
  std::optional<asio::ip::address> local_address;
  in_pktinfo v4_info{};
  in6_pktinfo v6_info{};
  bool have_v4 = false, have_v6 = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      std::memcpy(&v4_info, CMSG_DATA(c), sizeof v4_info);
      asio::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &v4_info.ipi_addr, 4);
      local_address = asio::ip::address_v4(b);
      have_v4 = true;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      std::memcpy(&v6_info, CMSG_DATA(c), sizeof v6_info);
      asio::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &v6_info.ipi6_addr, 16);
      local_address = asio::ip::address_v6(b);
      have_v6 = true;
    }
  }

  Source src;
  src.transport = Transport::Udp;
  asio::ip::address remote_address;
  if (peer.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&peer);
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), &sin->sin_addr, 4);
    remote_address = asio::ip::address_v4(b);
    src.port = ntohs(sin->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &sin6->sin6_addr, 16);
    remote_address = asio::ip::address_v6(b, sin6->sin6_scope_id);
    src.port = ntohs(sin6->sin6_port);
  } else {
    return true;
  }
  src.ip = remote_address.to_string();
  src.local = local_address ? fmt::format("{}:{}", local_address->to_string(), local_.port()) : local_text_;
  Reply reply = core_->handle(std::string_view(buffer_.data(), static_cast<std::size_t>(n)), src);
  if (reply.bytes.empty()) return true;

  // The reply: to the source address (port per RFC 3581 / 18.2.2), from the address it came to.
  sockaddr_storage to = peer;
  socklen_t to_len = msg.msg_namelen;
  if (to.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&to)->sin_port = htons(reply.port);
  else
    reinterpret_cast<sockaddr_in6*>(&to)->sin6_port = htons(reply.port);
  iovec out_iov{reply.bytes.data(), reply.bytes.size()};
  alignas(cmsghdr) char out_control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  msghdr out{};
  out.msg_name = &to;
  out.msg_namelen = to_len;
  out.msg_iov = &out_iov;
  out.msg_iovlen = 1;
  if (have_v4) {
    out.msg_control = out_control;
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
    out.msg_control = out_control;
    out.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&out);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    info.ipi6_addr = v6_info.ipi6_addr;
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  }
  // A datagram send does not block short of a full kernel buffer; a failed send is the same as a
  // lost packet and the phone retransmits.
  if (::sendmsg(socket_.native_handle(), &out, MSG_DONTWAIT) < 0) {
    ve::logger("sip")->debug("udp send to {}:{} failed: {}", src.ip, reply.port, std::strerror(errno));
  }
  return true;
}

}  // namespace ve::sip
