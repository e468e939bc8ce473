// LLDP and LLDP-MED (TIA-1057) on one port: the bridge's advertisement, MED network policies and
// extended power once a MED endpoint is present, and what an endpoint's LLDPDUs say and ask for.
#include <algorithm>

#include "cdp/port_state.hpp"

namespace ve::cdp::detail {
namespace {

class LldpSpeaker final : public Speaker {
 public:
  explicit LldpSpeaker(PortState& state) : s_(state) {}

  Protocol protocol() const override { return Protocol::Lldp; }
  bool enabled() const override { return s_.settings.lldp_enabled; }

  Bytes advertisement(bool shutdown) const override {
    const auto& port = s_.port;
    const auto& settings = s_.settings;
    LldpFrame f;
    f.source = s_.link.mac();
    LldpPdu& p = f.pdu;
    p.chassis_id = LldpId{4, Bytes(f.source.bytes().begin(), f.source.bytes().end())};
    p.port_id = LldpId{5, Bytes(port.name.begin(), port.name.end())};
    p.ttl_s = shutdown ? 0 : static_cast<std::uint16_t>(std::clamp(settings.holdtime_s, 0, 65535));
    if (p.ttl_s == 0) return encode_lldp(f);  // shutdown PDU: the mandatory TLVs only
    p.port_description = port.name;
    p.system_name = settings.device_id;
    p.system_description = settings.platform + " " + settings.software_version;
    p.system_capabilities = 0x0004;  // bridge
    p.enabled_capabilities = 0x0004;
    if (settings.management_ipv4) {
      const auto a = CdpAddress::ipv4(*settings.management_ipv4).address;
      p.management_addresses.push_back(LldpManagementAddress{1, a, 1, 0, {}});
    }
    if (settings.lldp_med && s_.med_endpoint_seen) {
      p.med_capabilities = MedCapabilities{
          static_cast<std::uint16_t>(lldp_med_capability::kCapabilities | lldp_med_capability::kNetworkPolicy |
                                     lldp_med_capability::kPowerPse),
          MedDeviceType::NetworkConnectivity};
      if (valid_vlan(port.voice_vlan)) {
        // TIA-1057 10.2.3.3: tagged with the voice VLAN on a trunked phone uplink; untagged (VLAN ID
        // 0) when voice shares the port's data VLAN. Phones ignore a policy that contradicts it.
        const bool tagged = s_.voice_tagged();
        const auto vid = static_cast<std::uint16_t>(tagged ? port.voice_vlan : 0);
        p.network_policies.push_back(NetworkPolicy{1, false, tagged, vid,
                                                   static_cast<std::uint8_t>(settings.voice_priority & 0x7),
                                                   static_cast<std::uint8_t>(settings.voice_dscp & 0x3f)});
        p.network_policies.push_back(NetworkPolicy{2, false, tagged, vid,
                                                   static_cast<std::uint8_t>(settings.signalling_priority & 0x7),
                                                   static_cast<std::uint8_t>(settings.signalling_dscp & 0x3f)});
      }
      const std::uint32_t mw = granted_mw_.value_or(s_.available_mw());
      p.extended_power = ExtendedPower{0, 1, port.lldp_power_priority,
                                       static_cast<std::uint16_t>(std::min<std::uint32_t>(mw / 100, 0xffff))};
    }
    return encode_lldp(f);
  }

  Answer receive(ByteView frame) override {
    auto decoded = decode_lldp(frame);
    if (!decoded) {
      s_.rejected(Protocol::Lldp, decoded.error());
      return Answer::None;
    }
    ++s_.counters.lldp_received;
    return on_pdu(decoded.value());
  }

  void link_down() override { granted_mw_.reset(); }

 private:
  Answer on_pdu(const LldpFrame& f) {
    const LldpPdu& p = f.pdu;
    const auto& port = s_.port.name;
    s_.log->debug("{}: lldp from {} ({}), ttl {}{}", port, f.source.to_string(), p.system_name.value_or("?"), p.ttl_s,
                  p.is_med() ? ", med" : "");
    if (p.ttl_s == 0) {
      s_.forget(Protocol::Lldp, f.source, "sent lldp shutdown");
      return Answer::None;
    }
    bool is_new = false;
    Neighbor* n = s_.upsert(Protocol::Lldp, f.source, is_new);
    if (n != nullptr) {
      n->device_id = p.system_name.value_or(p.chassis_id.to_string(true));
      if (auto sep = mac_from_sep_name(n->device_id)) {
        n->phone_mac = *sep;
      } else if (p.chassis_id.subtype == 4 && p.chassis_id.value.size() == 6) {
        n->phone_mac = MacAddress::parse(p.chassis_id.to_string(true)).value_or(f.source);
      } else {
        n->phone_mac = f.source;
      }
      n->platform = p.inventory.model.value_or(p.system_description.value_or(""));
      n->port_id = p.port_description.value_or(p.port_id.to_string(false));
      n->software_version = p.inventory.software_revision.value_or("");
      n->capabilities = p.enabled_capabilities.value_or(0);
      n->available_capabilities = p.system_capabilities.value_or(0);
      n->med_endpoint = p.is_med();
      n->addresses.clear();
      for (const auto& a : p.management_addresses) n->addresses.push_back(a.to_string());
      n->policies = p.network_policies;
      check_policies(*n);
      s_.touch(*n, p.ttl_s);
    }
    // A phone says so: LLDP-MED class III (communication device) or the telephone capability
    // enabled. A class I endpoint (ladvd on a PC, say) is a host, never the port's phone.
    const bool med_phone = p.med_capabilities && p.med_capabilities->device_type == MedDeviceType::EndpointClass3;
    const bool looks_like_phone = med_phone || (p.enabled_capabilities.value_or(0) & lldp_capability::kTelephone) != 0;
    const bool port_phone_frame = n != nullptr && s_.claim_port_phone(*n, looks_like_phone);
    if (port_phone_frame && is_new && s_.hooks.device_seen) s_.hooks.device_seen(port, n->phone_mac);
    bool reply = false;
    if (p.is_med() && !s_.med_endpoint_seen && s_.settings.lldp_med) {
      s_.med_endpoint_seen = true;  // from now on our LLDPDUs carry MED TLVs, starting with a fast start
      reply = true;
    }
    if (p.extended_power && p.extended_power->power_type == 1 && s_.settings.lldp_med) {
      const std::uint32_t requested = p.extended_power->power_mw();
      if (!port_phone_frame) {
        s_.refuse_power(n, requested);
      } else {
        const std::uint32_t granted = s_.negotiate(requested);
        if (granted_mw_ != granted) reply = true;
        granted_mw_ = granted;
        ++s_.counters.power_replies;
        if (n != nullptr) {
          n->power_requested_mw = requested;
          n->power_granted_mw = granted;
        }
      }
    }
    if (n != nullptr && is_new) s_.report_new(*n, p.is_med());
    if (!reply) return Answer::None;
    return s_.med_endpoint_seen ? Answer::FastStart : Answer::Reply;
  }

  // An endpoint's own voice policy (what it will use) against the port: a mismatch means the
  // phone sends voice where the port does not carry it. Logged once per change, shown in --detail.
  void check_policies(Neighbor& n) const {
    const auto& port = s_.port;
    std::string warning;
    for (const auto& pol : n.policies) {
      if (pol.application != 1 || pol.unknown || !valid_vlan(port.voice_vlan)) continue;
      const bool tagged = s_.voice_tagged();
      if (pol.tagged != tagged) {
        warning =
            tagged
                ? "voice policy is untagged, the port carries voice tagged on vlan " + std::to_string(port.voice_vlan)
                : "voice policy is tagged (vlan " + std::to_string(pol.vlan) + "), the port carries voice untagged";
      } else if (tagged && pol.vlan != port.voice_vlan) {
        warning = "voice policy vlan " + std::to_string(pol.vlan) + ", the port's voice vlan is " +
                  std::to_string(port.voice_vlan);
      }
    }
    if (warning != n.policy_warning && !warning.empty()) s_.log->warn("{}: {} {}", port.name, n.device_id, warning);
    n.policy_warning = std::move(warning);
  }

  PortState& s_;
  std::optional<std::uint32_t> granted_mw_;  // the last LLDP-MED power grant to the port's phone
};

}  // namespace

std::unique_ptr<Speaker> make_lldp_speaker(PortState& state) { return std::make_unique<LldpSpeaker>(state); }

}  // namespace ve::cdp::detail
