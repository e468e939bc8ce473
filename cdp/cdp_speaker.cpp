// CDP on one port: the switch's advertisement (voice VLAN in every frame, power available) and
// what a phone's frames ask for (VoIP VLAN Query, power request; protocol-notes.md).
#include <algorithm>

#include "cdp/port_state.hpp"

namespace ve::cdp::detail {
namespace {

class CdpSpeaker final : public Speaker {
 public:
  explicit CdpSpeaker(PortState& state) : s_(state) {}

  Protocol protocol() const override { return Protocol::Cdp; }
  bool enabled() const override { return s_.settings.cdp_enabled; }

  Bytes advertisement(bool shutdown) const override {
    CdpFrame f;
    f.source = s_.link.mac();
    CdpPdu& p = f.pdu;
    p.ttl_s = shutdown ? 0 : static_cast<std::uint8_t>(std::clamp(s_.settings.holdtime_s, 1, 255));
    p.device_id = s_.settings.device_id;
    if (s_.settings.management_ipv4) {
      p.addresses = std::vector<CdpAddress>{CdpAddress::ipv4(*s_.settings.management_ipv4)};
    }
    p.port_id = s_.port.name;
    p.capabilities = capability::kSwitch | capability::kIgmp;
    p.software_version = s_.settings.software_version;
    p.platform = s_.settings.platform;
    if (valid_vlan(s_.port.data_vlan)) p.native_vlan = static_cast<std::uint16_t>(s_.port.data_vlan);
    p.full_duplex = true;
    // Switches put the appliance VLAN in every advertisement, not only in replies.
    if (valid_vlan(s_.port.voice_vlan)) {
      p.voip_vlan_reply = ApplianceVlan{1, static_cast<std::uint16_t>(s_.port.voice_vlan)};
    }
    p.trust_bitmap = 0;
    p.untrusted_cos = 0;
    if (s_.settings.management_ipv4) {
      p.management_addresses = std::vector<CdpAddress>{CdpAddress::ipv4(*s_.settings.management_ipv4)};
    }
    p.power_available = PowerAvailable{last_request_id_, management_id_, s_.available_mw(), 0xffffffff};
    return encode_cdp(f);
  }

  Answer receive(ByteView frame) override {
    auto decoded = decode_cdp(frame);
    if (!decoded) {
      s_.rejected(Protocol::Cdp, decoded.error());
      return Answer::None;
    }
    ++s_.counters.cdp_received;
    return on_pdu(decoded.value());
  }

  void link_down() override {
    last_request_id_ = 0;
    s_.cdp_granted_mw.reset();
    bump_management_id();
  }

 private:
  Answer on_pdu(const CdpFrame& f) {
    const CdpPdu& p = f.pdu;
    const auto& port = s_.port.name;
    s_.log->debug("{}: cdp from {} ({}), ttl {}{}{}", port, f.source.to_string(), p.device_id.value_or("?"), p.ttl_s,
                  p.voip_vlan_query ? ", voice vlan query" : "", p.power_requested ? ", power request" : "");
    if (p.ttl_s == 0) {
      s_.forget(Protocol::Cdp, f.source, "sent cdp ttl 0");
      return Answer::None;
    }
    bool is_new = false;
    Neighbor* n = s_.upsert(Protocol::Cdp, f.source, is_new);
    if (n != nullptr) {
      n->device_id = p.device_id.value_or(f.source.to_string());
      n->phone_mac = mac_from_sep_name(n->device_id).value_or(f.source);
      n->platform = p.platform.value_or("");
      n->port_id = p.port_id.value_or("");
      n->software_version = p.software_version.value_or("");
      n->capabilities = p.capabilities.value_or(0);
      n->addresses.clear();
      if (p.addresses) {
        for (const auto& a : *p.addresses) n->addresses.push_back(a.to_string());
      }
      if (p.native_vlan) n->native_vlan = *p.native_vlan;
      if (p.voip_vlan_query) n->asked_voice_vlan = true;
      s_.touch(*n, p.ttl_s);
    }
    const bool looks_like_phone =
        (p.capabilities.value_or(0) & capability::kPhone) != 0 || mac_from_sep_name(p.device_id.value_or(""));
    const bool port_phone_frame = n != nullptr && s_.claim_port_phone(*n, looks_like_phone);
    if (port_phone_frame && is_new && s_.hooks.device_seen) s_.hooks.device_seen(port, n->phone_mac);

    bool reply = false;
    if (p.power_requested && !p.power_requested->levels_mw.empty()) {
      const auto& levels = p.power_requested->levels_mw;
      const std::uint32_t requested = *std::max_element(levels.begin(), levels.end());
      if (!port_phone_frame) {
        s_.refuse_power(n, requested);
      } else {
        const std::uint32_t granted = s_.negotiate(requested);
        // A new request or a new grant gets a new management id, so the phone sees a fresh answer.
        if (!s_.cdp_granted_mw || p.power_requested->request_id != last_request_id_ || granted != *s_.cdp_granted_mw) {
          bump_management_id();
        }
        last_request_id_ = p.power_requested->request_id;
        s_.cdp_granted_mw = granted;
        ++s_.counters.power_replies;
        reply = true;
        if (n != nullptr) {
          n->power_requested_mw = requested;
          n->power_granted_mw = granted;
        }
      }
    }
    if (p.voip_vlan_query) {
      ++s_.counters.voice_vlan_replies;
      reply = true;
    }
    if (n != nullptr && is_new) {
      s_.report_new(*n, (n->capabilities & capability::kPhone) != 0 || mac_from_sep_name(n->device_id));
    }
    // Answer at once: a phone waits for the voice VLAN and its power grant.
    return reply ? Answer::Reply : Answer::None;
  }

  void bump_management_id() {
    ++management_id_;
    if (management_id_ == 0) management_id_ = 1;  // 0 is never sent
  }

  PortState& s_;
  // Power negotiation (protocol-notes.md): the phone's request id is echoed, and the management
  // id changes whenever the answer does.
  std::uint16_t last_request_id_ = 0;
  std::uint16_t management_id_ = 1;
};

}  // namespace

std::unique_ptr<Speaker> make_cdp_speaker(PortState& state) { return std::make_unique<CdpSpeaker>(state); }

}  // namespace ve::cdp::detail
