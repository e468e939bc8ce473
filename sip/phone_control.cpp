// The service-control NOTIFY: builder, and Core::service_control over the phone's registration.
#include "sip/phone_control.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "sip/transport.hpp"
#include "ve/log.hpp"

namespace ve::sip {

std::string_view to_string(ServiceAction a) { return a == ServiceAction::Reset ? "reset" : "restart"; }

std::string service_control_body(ServiceAction action, std::string_view register_call_id,
                                 std::string_view config_version) {
  return fmt::format(
      "action={}\r\nRegisterCallId={{{}}}\r\nConfigVersionStamp={{{}}}\r\nDialplanVersionStamp={{}}\r\n"
      "SoftkeyVersionStamp={{}}\r\nFeatureControlVersionStamp={{}}\r\n",
      to_string(action), register_call_id, config_version);
}

std::string build_service_control_notify(const ServiceControlNotify& n) {
  const std::string body = service_control_body(n.action, n.register_call_id, n.config_version);
  const std::string_view transport = n.transport == Transport::Tcp ? "TCP" : "UDP";
  const std::string contact_params = n.transport == Transport::Tcp ? ";transport=tcp" : "";
  std::string out;
  out.reserve(512 + body.size());
  out += fmt::format("NOTIFY {} SIP/2.0\r\n", n.request_uri);
  out += fmt::format("Via: SIP/2.0/{} {};branch={};rport\r\n", transport, n.local, n.branch);
  out += "Max-Forwards: 70\r\n";
  out += fmt::format("From: <sip:voiceedge@{}>;tag={}\r\n", n.local, n.from_tag);
  out += fmt::format("To: <{}>\r\n", n.to);
  out += fmt::format("Call-ID: {}\r\n", n.call_id);
  out += fmt::format("CSeq: {} NOTIFY\r\n", n.cseq);
  out += fmt::format("Contact: <sip:voiceedge@{}{}>\r\n", n.local, contact_params);
  // Unsolicited: no SUBSCRIBE came first, but the phones want the subscription said active.
  out += "Event: service-control\r\n";
  out += "Subscription-State: active\r\n";
  out += "User-Agent: voiceedge\r\n";
  out += "Content-Type: text/plain\r\n";
  out += fmt::format("Content-Length: {}\r\n\r\n", body.size());
  out += body;
  return out;
}

namespace {

std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

// Where to send to reach a binding: over TCP its flow (the connection's remote end, with the
// Contact as the fallback to connect to); over UDP the address the REGISTER came from, which is
// where the phone listens and what NAT keeps open.
Destination destination_of(const BindingInfo& b) {
  Destination d;
  d.transport = b.transport;
  const auto colon = b.source.rfind(':');
  d.ip = std::string(strip_brackets(std::string_view(b.source).substr(0, colon)));
  if (colon != std::string::npos) {
    if (auto p = parse_uint(std::string_view(b.source).substr(colon + 1)); p && *p <= 65535)
      d.port = static_cast<std::uint16_t>(*p);
  }
  if (auto u = parse_uri(b.contact)) {
    d.contact_ip = std::string(strip_brackets(u->host));
    d.contact_port = u->port.value_or(5060);
  }
  return d;
}

std::string random_hex(std::size_t chars) {
  // The branch's random tail is good enough for Call-ID and tag too.
  const auto b = ClientTransactions::new_branch();
  return b.substr(b.size() - std::min(chars, std::size_t{16}));
}

}  // namespace

Result<ServiceControlSent, std::string> Core::service_control(const ServiceControlRequest& req,
                                                              std::function<void(const ServiceControlResult&)> done) {
  std::optional<BindingInfo> pick;
  for (const auto& b : store.all()) {
    if (!b.mac || *b.mac != req.mac) continue;
    const bool preferred = !req.line_user.empty() && b.user == req.line_user;
    const bool pick_preferred = pick && !req.line_user.empty() && pick->user == req.line_user;
    if (!pick || (preferred && !pick_preferred) ||
        (preferred == pick_preferred && b.registered_at > pick->registered_at))
      pick = b;
  }
  if (!pick) return unexpected(fmt::format("{} is not registered", req.mac.sep_name()));
  const auto to = destination_of(*pick);
  if (to.ip.empty() || to.port == 0)
    return unexpected(fmt::format("{}: its registration has no usable source", pick->aor));
  ServiceControlNotify n;
  n.action = req.action;
  n.transport = to.transport;
  n.request_uri = pick->contact;
  n.to = pick->aor;
  n.local = local_address(to.transport, to.ip);
  n.branch = ClientTransactions::new_branch();
  n.call_id = random_hex(16) + "@voiceedge";
  n.from_tag = random_hex(8);
  n.cseq = 101;
  n.register_call_id = pick->call_id;
  n.config_version = req.config_version;
  ServiceControlSent sent;
  sent.binding = *pick;
  sent.destination = fmt::format("{} {}:{}", to.transport == Transport::Tcp ? "tcp" : "udp", to.ip, to.port);
  sent.call_id = n.call_id;
  sent.body = service_control_body(n.action, n.register_call_id, n.config_version);
  ve::logger("sip")->info("service-control NOTIFY ({}) to {} over {} (registration {})", to_string(req.action),
                          req.mac.sep_name(), sent.destination, pick->call_id);
  uac.start(n.branch, "NOTIFY", to, build_service_control_notify(n),
            [sent, done = std::move(done)](const ClientOutcome& o) {
              if (done) done(ServiceControlResult{sent, o});
            });
  return sent;
}

}  // namespace ve::sip
