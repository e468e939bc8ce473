// Small value types of the site file and lookups on a loaded SiteConfig.
#include "config/config.hpp"

#include <fmt/format.h>

#include "ve/ipv4.hpp"

namespace ve::config {

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  if (auto a = parse_ipv4(text)) return Ipv4{*a};
  return std::nullopt;
}

std::string Ipv4::to_string() const { return format_ipv4(value); }

bool Ipv4Prefix::contains(Ipv4 a) const { return (a.value & mask()) == (network.value & mask()); }

std::string Ipv4Prefix::to_string() const { return fmt::format("{}/{}", network.to_string(), length); }

std::string Endpoint::to_string() const {
  return transport.empty() ? fmt::format("{}:{}", host, port) : fmt::format("{}:{}:{}", transport, host, port);
}

std::string ConfigError::to_string() const {
  if (line == 0) return fmt::format("{}: {}", file, message);
  return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

const Phone* SiteConfig::find_phone(const MacAddress& mac) const {
  for (const auto& p : phones)
    if (p.mac == mac) return &p;
  return nullptr;
}

const Port* SiteConfig::find_port(const std::string& port_name) const {
  for (const auto& p : ports)
    if (p.name == port_name) return &p;
  return nullptr;
}

std::pair<const Phone*, const Line*> SiteConfig::find_line(const std::string& user) const {
  for (const auto& p : phones)
    for (const auto& l : p.lines)
      if (l.auth_user == user) return {&p, &l};
  for (const auto& p : phones)
    for (const auto& l : p.lines)
      if (l.extension == user) return {&p, &l};
  return {nullptr, nullptr};
}

std::string_view to_string(PoeMode m) {
  switch (m) {
    case PoeMode::Auto: return "auto";
    case PoeMode::Off: return "off";
    case PoeMode::Static: return "static";
  }
  return "?";
}

std::string_view to_string(PoePriority p) {
  switch (p) {
    case PoePriority::Critical: return "critical";
    case PoePriority::High: return "high";
    case PoePriority::Low: return "low";
  }
  return "?";
}

std::string_view to_string(NetMode m) {
  switch (m) {
    case NetMode::None: return "none";
    case NetMode::Bridge: return "bridge";
    case NetMode::Subinterface: return "subinterface";
  }
  return "?";
}

std::string_view to_string(ConfigAccess a) {
  switch (a) {
    case ConfigAccess::Lease: return "lease";
    case ConfigAccess::Open: return "open";
  }
  return "?";
}

}  // namespace ve::config
