// One port's neighbour table, its phone and its power grants (see port_state.hpp).
#include "cdp/port_state.hpp"

#include <algorithm>

#include "ve/log.hpp"

namespace ve::cdp::detail {

using std::chrono::steady_clock;
using std::chrono::system_clock;

std::optional<MacAddress> mac_from_sep_name(std::string_view name) {
  if (name.size() != 15) return std::nullopt;
  if (name.substr(0, 3) != "SEP" && name.substr(0, 3) != "sep") return std::nullopt;
  return MacAddress::parse(name);
}

PortState::PortState(FrameLink& link_in, PortSettings port_in, AgentSettings settings_in, Hooks hooks_in)
    : link(link_in),
      port(std::move(port_in)),
      settings(std::move(settings_in)),
      hooks(std::move(hooks_in)),
      log(logger("cdp")) {
  if (!hooks.steady_now) hooks.steady_now = [] { return steady_clock::now(); };
  if (!hooks.wall_now) hooks.wall_now = [] { return system_clock::now(); };
}

bool PortState::voice_tagged() const { return valid_vlan(port.voice_vlan) && port.voice_vlan != port.data_vlan; }

bool PortState::is_site_phone(const MacAddress& mac) const {
  return std::find(port.phones.begin(), port.phones.end(), mac) != port.phones.end();
}

// A frame from such a source comes from a neighbour that others must never evict.
bool PortState::protected_source(const MacAddress& source) const {
  return is_site_phone(source) || (port_phone_ && *port_phone_ == source);
}

bool PortState::claim_port_phone(Neighbor& n, bool looks_like_phone) {
  if (!port.phones.empty()) {
    n.verified = n.phone_mac == n.source && is_site_phone(n.source);
    return n.verified;
  }
  if (port_phone_) {
    n.verified = *port_phone_ == n.source;
    return n.verified;
  }
  if (looks_like_phone && n.phone_mac == n.source) {
    port_phone_ = n.source;
    n.verified = true;
    log->info("{}: {} is the port's phone", port.name, n.device_id);
    return true;
  }
  return false;
}

// The port's phone left (holdtime, TTL 0, eviction): the next phone may claim it.
void PortState::refresh_port_phone() {
  if (!port_phone_) return;
  const bool present =
      std::any_of(table.begin(), table.end(), [this](const auto& e) { return e.second.source == *port_phone_; });
  if (!present) {
    log->info("{}: the port's phone {} left", port.name, port_phone_->to_string());
    port_phone_.reset();
  }
}

void PortState::refuse_power(Neighbor* n, std::uint32_t requested_mw) {
  ++counters.power_refused;
  if (n != nullptr) {
    n->power_requested_mw = requested_mw;
    n->power_granted_mw.reset();
  }
  const auto now = hooks.steady_now();
  if (now - last_refusal_warn_ >= kUntrustedWarnEvery) {
    last_refusal_warn_ = now;
    log->warn("{}: power request {} mW from {} refused: not the port's phone ({} refused so far)", port.name,
              requested_mw, n != nullptr ? n->source.to_string() : std::string("a device not in the table"),
              counters.power_refused);
  }
}

std::uint32_t PortState::negotiate(std::uint32_t requested_mw) const {
  if (hooks.negotiate_power) {
    if (auto granted = hooks.negotiate_power(port.name, requested_mw)) return *granted;
  }
  return std::min(requested_mw, port.max_power_mw);
}

std::uint32_t PortState::available_mw() const {
  if (cdp_granted_mw) return *cdp_granted_mw;
  if (hooks.available_power) return hooks.available_power(port.name);
  return 0;
}

void PortState::rejected(Protocol protocol, DecodeError error) {
  if (error == DecodeError::WrongProtocol) {
    ++counters.ignored;  // VTP, DTP, PVST... share the CDP address
    return;
  }
  ++counters.malformed;
  const auto now = hooks.steady_now();
  if (now - last_malformed_warn_ >= kUntrustedWarnEvery) {
    last_malformed_warn_ = now;
    log->warn("{}: malformed {} frame dropped ({}), {} so far", port.name, to_string(protocol), to_string(error),
              counters.malformed);
  }
}

Neighbor* PortState::upsert(Protocol protocol, const MacAddress& source, bool& is_new) {
  NeighborKey key{protocol, source};
  auto it = table.find(key);
  is_new = it == table.end();
  if (!is_new) return &it->second;
  if (table.size() >= settings.max_neighbors_per_port) {
    auto victim = table.end();
    for (auto v = table.begin(); v != table.end(); ++v) {
      if (v->second.verified || protected_source(v->second.source)) continue;
      if (victim == table.end() || v->second.expires - std::chrono::seconds(v->second.holdtime_s) <
                                       victim->second.expires - std::chrono::seconds(victim->second.holdtime_s)) {
        victim = v;
      }
    }
    if (victim == table.end()) {
      ++counters.neighbors_dropped;
      return nullptr;
    }
    ++counters.neighbors_evicted;
    log->debug("{}: table full, evicting unverified {} neighbour {}", port.name, to_string(victim->second.protocol),
               victim->second.device_id);
    table.erase(victim);
    refresh_med();
  }
  Neighbor n;
  n.protocol = protocol;
  n.port = port.name;
  n.source = source;
  n.first_seen = hooks.wall_now();
  return &table.emplace(key, std::move(n)).first->second;
}

void PortState::touch(Neighbor& n, std::uint16_t ttl_s) {
  n.holdtime_s = ttl_s;
  n.last_seen = hooks.wall_now();
  n.expires = hooks.steady_now() + std::chrono::seconds(ttl_s);
}

void PortState::forget(Protocol protocol, const MacAddress& source, std::string_view why) {
  auto it = table.find(NeighborKey{protocol, source});
  if (it == table.end()) return;
  report_gone(it->second, why);
  table.erase(it);
  refresh_med();
  refresh_port_phone();
}

void PortState::refresh_med() {
  med_endpoint_seen =
      std::any_of(table.begin(), table.end(), [](const auto& entry) { return entry.second.med_endpoint; });
}

std::size_t PortState::expire() {
  const auto now = hooks.steady_now();
  std::size_t removed = 0;
  for (auto it = table.begin(); it != table.end();) {
    if (it->second.expires <= now) {
      report_gone(it->second, "holdtime expired");
      it = table.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  if (removed > 0) {
    refresh_med();
    refresh_port_phone();
  }
  return removed;
}

void PortState::drop_all_neighbors(bool report) {
  if (report) {
    for (const auto& [key, n] : table) report_gone(n, "link down");
  }
  table.clear();
  med_endpoint_seen = false;
  port_phone_.reset();
}

void PortState::report_new(const Neighbor& n, bool is_phone) {
  std::string detail = std::string(to_string(n.protocol)) + " neighbour " + n.device_id + " on " + port.name;
  Outcome outcome = Outcome::Info;
  if (is_phone) {
    if (valid_vlan(port.voice_vlan)) {
      outcome = Outcome::Ok;
      detail += ": voice vlan " + std::to_string(port.voice_vlan);
    } else {
      outcome = Outcome::Failed;
      detail += ": port has no voice vlan";
    }
  }
  log->info("{}: {} neighbour {} ({}) appeared", port.name, to_string(n.protocol), n.device_id, n.platform);
  PhoneEvent e;
  e.mac = n.phone_mac;
  e.step = Step::VoiceVlan;
  e.outcome = outcome;
  e.detail = std::move(detail);
  e.time = hooks.wall_now();
  e.port = port.name;
  if (!n.addresses.empty()) e.ip = n.addresses.front();
  if (valid_vlan(port.voice_vlan)) e.attributes.emplace_back(Fact::Vlan, std::to_string(port.voice_vlan));
  if (!n.platform.empty()) e.attributes.emplace_back(Fact::Model, n.platform);
  e.attributes.emplace_back(Fact::DeviceName, n.device_id);
  emit(std::move(e));
}

void PortState::report_gone(const Neighbor& n, std::string_view why) {
  log->info("{}: {} neighbour {} gone ({})", port.name, to_string(n.protocol), n.device_id, why);
  PhoneEvent e;
  e.mac = n.phone_mac;
  e.step = Step::VoiceVlan;
  e.outcome = Outcome::Info;
  e.detail =
      std::string(to_string(n.protocol)) + " neighbour " + n.device_id + " on " + port.name + ": " + std::string(why);
  e.time = hooks.wall_now();
  e.port = port.name;
  emit(std::move(e));
}

void PortState::emit(PhoneEvent e) {
  if (hooks.events != nullptr) hooks.events->report(std::move(e));
}

}  // namespace ve::cdp::detail
