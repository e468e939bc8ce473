// UDP: one datagram is one message; the answer goes back from the same socket.
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
  socket_.async_receive_from(
      asio::buffer(buffer_), remote_,
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) { self->on_receive(ec, n); });
}

void UdpTransport::on_receive(const boost::system::error_code& ec, std::size_t n) {
  if (ec == asio::error::operation_aborted || !socket_.is_open()) return;
  if (!ec) {
    Source src;
    src.transport = Transport::Udp;
    src.ip = remote_.address().to_string();
    src.port = remote_.port();
    src.local = local_text_;
    Reply reply = core_->handle(std::string_view(buffer_.data(), n), src);
    if (!reply.bytes.empty()) {
      boost::system::error_code send_ec;
      // A datagram send does not block on a UDP socket short of a full kernel buffer; a failed
      // send is the same as a lost packet and the phone retransmits.
      socket_.send_to(asio::buffer(reply.bytes), udp::endpoint(remote_.address(), reply.port), 0, send_ec);
      if (send_ec) ve::logger("sip")->debug("udp send to {}:{} failed: {}", src.ip, reply.port, send_ec.message());
    }
  } else {
    ve::logger("sip")->debug("udp receive: {}", ec.message());  // e.g. ICMP port unreachable
  }
  do_receive();
}

}  // namespace ve::sip
