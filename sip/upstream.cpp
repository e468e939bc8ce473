// SRST probe state machine and flow tokens (sip/upstream.hpp).
#include "sip/upstream.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "sip/digest.hpp"
#include "ve/time_format.hpp"

namespace ve::sip {

namespace {

constexpr std::string_view kTokenPrefix = "ob-";
constexpr std::size_t kMacHex = 20;  // 80 bits of HMAC: not guessable from the voice VLAN

std::string to_hex(std::string_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (unsigned char c : data) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

}  // namespace

std::string_view to_string(UpstreamState s) {
  switch (s) {
    case UpstreamState::Unknown: return "unknown";
    case UpstreamState::Up: return "up";
    case UpstreamState::Down: return "down";
  }
  return "?";
}

std::string_view to_string(SipMode m) {
  switch (m) {
    case SipMode::Local: return "local";
    case SipMode::Upstream: return "upstream";
    case SipMode::Survivable: return "survivable";
  }
  return "?";
}

std::string UpstreamStatus::address() const {
  return fmt::format("{}:{}:{}", config.transport, config.host, config.port);
}

Destination UpstreamStatus::destination() const {
  Destination d;
  d.transport = transport;
  d.ip = config.host;
  d.port = config.port;
  d.contact_ip = config.host;
  d.contact_port = config.port;
  return d;
}

UpstreamMonitor::UpstreamMonitor(const config::SipConfig& sip, Time now) { set_config(sip, now); }

void UpstreamMonitor::set_config(const config::SipConfig& sip, Time now) {
  std::vector<UpstreamStatus> next;
  for (const auto& u : sip.upstream) {
    UpstreamStatus s;
    s.config = u;
    s.transport = u.transport == "tcp" ? Transport::Tcp : Transport::Udp;
    s.since = now;
    for (const auto& old : upstreams_) {
      if (old.config.name == u.name && old.address() == s.address()) {
        s = old;
        s.config = u;
      }
    }
    next.push_back(std::move(s));
  }
  upstreams_ = std::move(next);
  survivability_ = sip.survivability;
  if (upstreams_.empty()) {
    if (mode_ != SipMode::Local) {
      const auto old = mode_;
      mode_ = SipMode::Local;
      mode_since_ = now;
      if (on_change_) on_change_(old, mode_, "no sip.upstream configured: the box is the call control");
    }
    return;
  }
  if (mode_ == SipMode::Local) {
    // Until a probe answers the box serves the phones itself.
    mode_ = SipMode::Survivable;
    mode_since_ = now;
  }
  update(now);
}

void UpstreamMonitor::probe_sent(std::size_t i, Time now) {
  if (i < upstreams_.size()) upstreams_[i].last_probe = now;
}

void UpstreamMonitor::answered(std::size_t i, int status, std::chrono::milliseconds rtt, Time now) {
  if (i >= upstreams_.size()) return;
  auto& u = upstreams_[i];
  u.last_answer = now;
  u.last_status = status;
  u.rtt = rtt;
  u.misses = 0;
  if (status >= 500 && status < 600) {
    u.answering_since.reset();
    if (u.state != UpstreamState::Down) {
      u.state = UpstreamState::Down;
      u.since = now;
      fresh_ = false;
    }
  } else {
    if (!u.answering_since) u.answering_since = now;
    if (u.state != UpstreamState::Up) {
      u.state = UpstreamState::Up;
      u.since = now;
    }
  }
  update(now);
}

void UpstreamMonitor::missed(std::size_t i, Time now) {
  if (i >= upstreams_.size()) return;
  auto& u = upstreams_[i];
  ++u.misses;
  u.answering_since.reset();
  if (u.misses >= survivability_.probe_failures && u.state != UpstreamState::Down) {
    u.state = UpstreamState::Down;
    u.since = now;
    fresh_ = false;
  }
  update(now);
}

const UpstreamStatus* UpstreamMonitor::active() const {
  for (const auto& u : upstreams_)
    if (u.usable) return &u;
  return nullptr;
}

std::chrono::milliseconds UpstreamMonitor::probe_timeout() const {
  return std::min<std::chrono::milliseconds>(std::chrono::seconds(survivability_.probe_interval_s),
                                             std::chrono::seconds(5));
}

std::string UpstreamMonitor::unreachable_summary() const {
  std::string down, unknown, rehoming;
  std::optional<Time> since;
  auto add = [](std::string& list, const std::string& name) { list += (list.empty() ? "" : ", ") + name; };
  for (const auto& u : upstreams_) {
    if (u.usable) continue;
    if (u.state == UpstreamState::Down) {
      add(down, u.config.name);
      if (!since || u.since < *since) since = u.since;
    } else if (u.state == UpstreamState::Unknown) {
      add(unknown, u.config.name);
    } else {
      add(rehoming, u.config.name);
    }
  }
  std::string out;
  if (!down.empty()) out = fmt::format("{} unreachable since {}", down, iso_time(*since));
  if (!unknown.empty()) out += (out.empty() ? "" : "; ") + unknown + " not answering yet";
  if (!rehoming.empty())
    out += fmt::format("{}{} answering again, back after {} s without a miss", out.empty() ? "" : "; ", rehoming,
                       survivability_.rehome_after_s);
  return out;
}

void UpstreamMonitor::update(Time now) {
  if (upstreams_.empty()) return;
  const auto rehome = std::chrono::seconds(survivability_.rehome_after_s);
  for (auto& u : upstreams_) {
    // Usable until it is down (a miss or two below probe_failures does not move the phones);
    // usable again only after answering without a miss for rehome_after_s.
    if (u.state != UpstreamState::Up)
      u.usable = false;
    else if (!u.usable && u.answering_since)
      u.usable = fresh_ || now - *u.answering_since >= rehome;
  }
  const SipMode next = active() ? SipMode::Upstream : SipMode::Survivable;
  if (next == mode_) return;
  const auto old = mode_;
  mode_ = next;
  mode_since_ = now;
  std::string why;
  if (next == SipMode::Upstream) {
    const auto* a = active();
    why = a->answering_since && *a->answering_since != now
              ? fmt::format("{} ({}) has answered for {} s", a->config.name, a->address(),
                            std::chrono::duration_cast<std::chrono::seconds>(now - *a->answering_since).count())
              : fmt::format("{} ({}) answers", a->config.name, a->address());
  } else {
    why = unreachable_summary();
  }
  if (on_change_) on_change_(old, next, why);
}

FlowTokens::FlowTokens() {
  std::random_device rd;
  std::string key;
  for (int i = 0; i < 8; ++i) {
    const auto v = rd();
    key.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  key_ = std::move(key);
}

std::string FlowTokens::mac(std::string_view data) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    return {};
  return to_hex(std::string_view(reinterpret_cast<const char*>(out), len)).substr(0, kMacHex);
}

// t|ip|port, hex-encoded (a SIP user part takes hex as it is), then the MAC.
std::string FlowTokens::make(const Destination& flow) const {
  const std::string plain = fmt::format("{}|{}|{}", flow.transport == Transport::Tcp ? 't' : 'u', flow.ip, flow.port);
  const std::string hex = to_hex(plain);
  return fmt::format("{}{}{}", kTokenPrefix, hex, mac(hex));
}

std::optional<Destination> FlowTokens::parse(std::string_view token) const {
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return std::nullopt;
  token.remove_prefix(kTokenPrefix.size());
  if (token.size() <= kMacHex || token.size() > 256) return std::nullopt;
  const auto hex = token.substr(0, token.size() - kMacHex);
  if (!equal_secret(token.substr(hex.size()), mac(hex))) return std::nullopt;
  const auto plain = from_hex(hex);
  if (!plain) return std::nullopt;
  const auto bar1 = plain->find('|');
  const auto bar2 = plain->rfind('|');
  if (bar1 != 1 || bar2 == bar1) return std::nullopt;
  Destination d;
  d.transport = (*plain)[0] == 't' ? Transport::Tcp : Transport::Udp;
  d.ip = plain->substr(2, bar2 - 2);
  const auto port = parse_uint(std::string_view(*plain).substr(bar2 + 1));
  if (!port || *port > 65535 || d.ip.empty()) return std::nullopt;
  d.port = static_cast<std::uint16_t>(*port);
  return d;
}

std::string path_entry(std::string_view token, const std::string& box_address, Transport toward_upstream) {
  return toward_upstream == Transport::Tcp ? fmt::format("<sip:{}@{};transport=tcp;lr;ob>", token, box_address)
                                           : fmt::format("<sip:{}@{};lr;ob>", token, box_address);
}

std::string_view path_token(std::string_view route_entry) {
  auto na = parse_name_addr(route_entry);
  if (!na) return {};
  auto u = parse_uri(na->uri);
  if (!u || u->user.substr(0, kTokenPrefix.size()) != kTokenPrefix) return {};
  return u->user;
}

}  // namespace ve::sip
