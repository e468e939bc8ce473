// The Core: one received message to the proxy or the registrar, and the proxy's Wire over the
// server's UDP sockets and TCP listeners.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "sip/transport.hpp"

namespace ve::sip {

namespace asio = boost::asio;

Reply Core::handle(std::string_view bytes, const Source& src) {
  // REGISTER is most of the traffic: straight to the registrar, which parses it once. In
  // upstream mode (SRST) the proxy relays it to the cluster instead.
  if (bytes.substr(0, 9) == "REGISTER ") {
    if (upstream.mode() != SipMode::Upstream) return registrar.handle(bytes, src);
    auto parsed = parse_message(bytes, options.limits);
    if (!parsed || request_defect(*parsed) || !proxy.relays_register(*parsed)) return registrar.handle(bytes, src);
    ++registrar.counters().received;
    proxy.handle(*parsed, src);
    return {};
  }
  auto parsed = parse_message(bytes, options.limits);
  // Answers to requests the box sent itself (phone control) end there, not in the proxy.
  if (parsed && !parsed->is_request && uac.on_response(*parsed, src)) {
    ++registrar.counters().received;
    return {};
  }
  if (parsed && !parsed->is_request && prober->on_response(*parsed, src)) return {};
  if (!parsed || !proxy.wants(*parsed)) return registrar.handle(bytes, src);
  const Message& m = *parsed;
  if (m.is_request && request_defect(m)) return registrar.handle(bytes, src);  // it answers the 400
  for (auto t : {HeaderType::Via, HeaderType::From, HeaderType::To, HeaderType::CallId, HeaderType::CSeq}) {
    if (!m.find(t)) return registrar.handle(bytes, src);  // the registrar answers 400 or drops it
  }
  ++registrar.counters().received;
  proxy.handle(m, src);
  return {};
}

void Core::send(const Destination& to, const std::string& bytes) {
  boost::system::error_code ec;
  if (to.transport == Transport::Tcp) {
    for (const auto& weak : tcp) {
      if (auto t = weak.lock()) {
        t->send(to, bytes);
        return;
      }
    }
    return;
  }
  const auto address = asio::ip::make_address(to.ip, ec);
  if (ec) return;
  for (const auto& weak : udp) {
    if (auto u = weak.lock(); u && u->local().address().is_v4() == address.is_v4()) {
      u->send_to(asio::ip::udp::endpoint(address, to.port), bytes);
      return;
    }
  }
}

namespace {
// The local address the kernel would use towards `peer`: a connected UDP socket sends nothing.
// Plain system calls, called per forwarded request on a wildcard listener, so no io_context.
std::string route_source(const std::string& peer) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(peer, ec);
  if (ec) return {};
  sockaddr_storage to{};
  socklen_t to_len = 0;
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&to);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    const auto b = address.to_v4().to_bytes();
    std::memcpy(&sin->sin_addr, b.data(), b.size());
    to_len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&to);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(9);
    const auto b = address.to_v6().to_bytes();
    std::memcpy(&sin6->sin6_addr, b.data(), b.size());
    sin6->sin6_scope_id = address.to_v6().scope_id();
    to_len = sizeof(sockaddr_in6);
  }
  const int fd = ::socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), to_len) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0;
  ::close(fd);
  if (!ok) return {};
  char text[INET6_ADDRSTRLEN] = {};
  const void* where = local.ss_family == AF_INET
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&local)->sin_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr);
  return ::inet_ntop(local.ss_family, where, text, sizeof text) ? std::string(text) : std::string();
}

std::string host_port(const asio::ip::address& a, std::uint16_t port) {
  return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), port) : fmt::format("{}:{}", a.to_string(), port);
}
}  // namespace

std::string Core::local_address(Transport t, const std::string& peer_ip) const {
  auto pick = [&](const asio::ip::address& a, std::uint16_t port) {
    if (!a.is_unspecified()) return host_port(a, port);
    const auto via = route_source(peer_ip);
    boost::system::error_code ec;
    const auto resolved = asio::ip::make_address(via, ec);
    return ec ? host_port(a, port) : host_port(resolved, port);
  };
  if (t == Transport::Tcp) {
    for (const auto& weak : tcp)
      if (auto l = weak.lock()) return pick(l->local().address(), l->local().port());
  }
  for (const auto& weak : udp)
    if (auto u = weak.lock()) return pick(u->local().address(), u->local().port());
  return "0.0.0.0:5060";
}

bool Core::is_local(std::string_view host, std::uint16_t port) const {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  auto matches = [&](const asio::ip::address& bound, std::uint16_t bound_port) {
    if (bound_port != port) return false;
    // A wildcard listener: any address literal with our port is taken for us. Safe: the proxy
    // only ever routes to registered lines and known dialogs, never to a Request-URI host.
    if (bound.is_unspecified()) return !ec;
    return !ec && bound == address;
  };
  for (const auto& weak : udp)
    if (auto u = weak.lock(); u && matches(u->local().address(), u->local().port())) return true;
  for (const auto& weak : tcp)
    if (auto l = weak.lock(); l && matches(l->local().address(), l->local().port())) return true;
  return false;
}

}  // namespace ve::sip
