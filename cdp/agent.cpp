// The per-port CDP/LLDP-MED agent and its libpcap link: the only file in cdp/ that touches
// sockets or timers. Everything runs on one io_context; handlers hold weak references so an
// agent can be destroyed while operations are pending.
#include <linux/if_packet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cdp/cdp.hpp"
#include "ve/log.hpp"

namespace ve::cdp {

namespace asio = boost::asio;
using std::chrono::steady_clock;
using std::chrono::system_clock;

std::string_view to_string(Protocol p) {
  switch (p) {
    case Protocol::Cdp: return "cdp";
    case Protocol::Lldp: return "lldp";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// libpcap link

namespace {

constexpr const char* kFilter = "ether dst 01:00:0c:cc:cc:cc or ether dst 01:80:c2:00:00:0e";
constexpr int kSnapLength = 2048;
constexpr int kMaxFramesPerWake = 64;  // bounds the work done per readiness event

std::optional<MacAddress> read_interface_mac(const std::string& interface) {
  std::ifstream in("/sys/class/net/" + interface + "/address");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  return MacAddress::parse(text);
}

class PcapLink final : public FrameLink {
 public:
  PcapLink(asio::io_context& io, std::string interface) : state_(std::make_shared<State>(io, std::move(interface))) {}
  ~PcapLink() override { close(); }

  bool open(Receiver receiver, FailureHandler on_failure, std::string& error) override {
    close();
    State& s = *state_;
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_create(s.interface.c_str(), errbuf);
    if (p == nullptr) {
      error = errbuf;
      return false;
    }
    s.pcap = p;
    pcap_set_snaplen(p, kSnapLength);
    pcap_set_promisc(p, 0);  // multicast membership below is enough
    pcap_set_immediate_mode(p, 1);
    if (int rc = pcap_activate(p); rc < 0) {
      error = std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p);
      close();
      return false;
    }
    if (pcap_datalink(p) != DLT_EN10MB) {
      error = "not an Ethernet interface";
      close();
      return false;
    }
    // Only what arrives: our own transmissions would otherwise loop back as "neighbours".
    pcap_setdirection(p, PCAP_D_IN);
    bpf_program program{};
    if (pcap_compile(p, &program, kFilter, 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(p, &program) != 0) {
      error = std::string("BPF filter: ") + pcap_geterr(p);
      pcap_freecode(&program);
      close();
      return false;
    }
    pcap_freecode(&program);
    if (pcap_setnonblock(p, 1, errbuf) != 0) {
      error = errbuf;
      close();
      return false;
    }
    const int fd = pcap_get_selectable_fd(p);
    if (fd < 0) {
      error = "no selectable fd";
      close();
      return false;
    }
    join_multicast(fd);
    s.mac = read_interface_mac(s.interface).value_or(MacAddress{});
    s.receiver = std::move(receiver);
    s.on_failure = std::move(on_failure);
    s.descriptor.assign(fd);
    s.open = true;
    wait(state_);
    return true;
  }

  bool send(ByteView frame) override {
    State& s = *state_;
    if (!s.open) return false;
    return pcap_inject(s.pcap, frame.data(), frame.size()) == static_cast<int>(frame.size());
  }

  void close() override {
    State& s = *state_;
    s.open = false;
    if (s.descriptor.is_open()) {
      boost::system::error_code ignored;
      s.descriptor.cancel(ignored);
      (void)s.descriptor.release();  // pcap owns the fd and closes it
    }
    if (s.pcap != nullptr) {
      pcap_close(s.pcap);
      s.pcap = nullptr;
    }
  }

  MacAddress mac() const override { return state_->mac; }

 private:
  struct State {
    State(asio::io_context& io, std::string name) : descriptor(io), interface(std::move(name)) {}
    asio::posix::stream_descriptor descriptor;
    std::string interface;
    pcap_t* pcap = nullptr;
    bool open = false;
    MacAddress mac;
    Receiver receiver;
    FailureHandler on_failure;
  };

  void join_multicast(int fd) {
    const unsigned index = if_nametoindex(state_->interface.c_str());
    for (const auto& group : {kCdpMulticast, kLldpMulticast}) {
      packet_mreq mreq{};
      mreq.mr_ifindex = static_cast<int>(index);
      mreq.mr_type = PACKET_MR_MULTICAST;
      mreq.mr_alen = 6;
      std::copy(group.begin(), group.end(), mreq.mr_address);
      if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        logger("cdp")->warn("{}: cannot join multicast group: {}", state_->interface, std::strerror(errno));
      }
    }
  }

  static void wait(const std::shared_ptr<State>& state) {
    std::weak_ptr<State> weak = state;
    state->descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                 [weak](const boost::system::error_code& ec) {
                                   auto s = weak.lock();
                                   if (!s || ec == asio::error::operation_aborted || !s->open) return;
                                   on_readable(s, ec);
                                 });
  }

  static void on_readable(const std::shared_ptr<State>& s, const boost::system::error_code& ec) {
    if (ec) {
      fail(s, ec.message());
      return;
    }
    // Copy frames out first: the receiver may send (pcap_inject) and must not run inside dispatch.
    std::vector<Bytes> frames;
    auto collect = [](u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
      auto* out = reinterpret_cast<std::vector<Bytes>*>(user);
      out->emplace_back(bytes, bytes + header->caplen);
    };
    const int n = pcap_dispatch(s->pcap, kMaxFramesPerWake, collect, reinterpret_cast<u_char*>(&frames));
    if (n < 0) {
      fail(s, pcap_geterr(s->pcap));
      return;
    }
    auto receiver = s->receiver;  // the receiver may close this link
    for (const auto& f : frames) {
      if (!s->open) return;
      receiver(f);
    }
    if (s->open) wait(s);
  }

  static void fail(const std::shared_ptr<State>& s, const std::string& why) {
    auto on_failure = s->on_failure;
    if (on_failure) on_failure(why);
  }

  std::shared_ptr<State> state_;
};

}  // namespace

std::unique_ptr<FrameLink> make_pcap_link(asio::io_context& io, const std::string& interface) {
  return std::make_unique<PcapLink>(io, interface);
}

// ---------------------------------------------------------------------------------------------
// Agent

namespace {

constexpr auto kReopenDelay = std::chrono::seconds(3);
constexpr auto kExpiryPeriod = std::chrono::seconds(1);
constexpr auto kMalformedWarnEvery = std::chrono::seconds(10);
// Immediate replies to queries/power requests: at most one per this interval per port; requests
// inside it share one deferred reply, so a flood of queries cannot turn into a flood of frames.
constexpr auto kMinReplySpacing = std::chrono::milliseconds(200);

struct NeighborKey {
  Protocol protocol;
  MacAddress source;
  friend auto operator<=>(const NeighborKey&, const NeighborKey&) = default;
};

std::optional<MacAddress> mac_from_sep_name(std::string_view name) {
  if (name.size() != 15) return std::nullopt;
  if (name.substr(0, 3) != "SEP" && name.substr(0, 3) != "sep") return std::nullopt;
  return MacAddress::parse(name);
}

bool valid_vlan(int v) { return v >= 1 && v <= 4094; }

}  // namespace

struct Agent::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_in, std::unique_ptr<FrameLink> link_in, PortSettings port_in, AgentSettings settings_in,
       Hooks hooks_in)
      : io(io_in),
        link(std::move(link_in)),
        port(std::move(port_in)),
        settings(std::move(settings_in)),
        hooks(std::move(hooks_in)),
        advert_timer(io_in),
        expiry_timer(io_in),
        reopen_timer(io_in),
        reply_timer(io_in),
        log(logger("cdp")) {
    if (!hooks.steady_now) hooks.steady_now = [] { return steady_clock::now(); };
    if (!hooks.wall_now) hooks.wall_now = [] { return system_clock::now(); };
  }

  asio::io_context& io;
  std::unique_ptr<FrameLink> link;
  PortSettings port;
  AgentSettings settings;
  Hooks hooks;
  asio::steady_timer advert_timer;
  asio::steady_timer expiry_timer;
  asio::steady_timer reopen_timer;
  asio::steady_timer reply_timer;  // coalesces immediate CDP replies
  std::shared_ptr<spdlog::logger> log;

  bool running = false;
  bool link_is_open = false;
  bool link_up = true;
  std::string last_error;
  int fast_start_remaining = 0;
  std::map<NeighborKey, Neighbor> table;
  Counters counters;
  steady_clock::time_point last_malformed_warn{};

  // CDP power negotiation state (protocol-notes.md: request id echo, management id).
  std::uint16_t last_request_id = 0;
  std::uint16_t management_id = 1;
  std::uint32_t cdp_granted_mw = 0;
  bool have_cdp_request = false;
  // LLDP-MED: MED TLVs are sent only once a MED endpoint has been seen (TIA-1057).
  bool med_endpoint_seen = false;
  std::optional<std::uint32_t> lldp_granted_mw;
  std::optional<steady_clock::time_point> last_reply;
  bool reply_pending = false;
  // The port's phone (frame source MAC) when the site file names none for this port: the first
  // phone after link-up, until it leaves. Only it negotiates power.
  std::optional<MacAddress> port_phone;
  steady_clock::time_point last_refusal_warn{};

  // The voice VLAN is tagged on the phone's uplink unless it is the port's data VLAN as well.
  bool voice_tagged() const { return valid_vlan(port.voice_vlan) && port.voice_vlan != port.data_vlan; }

  bool is_site_phone(const MacAddress& mac) const {
    return std::find(port.phones.begin(), port.phones.end(), mac) != port.phones.end();
  }

  // Whether a frame from `source` comes from a neighbour that must never be evicted by others.
  bool protected_source(const MacAddress& source) const {
    return is_site_phone(source) || (port_phone && *port_phone == source);
  }

  // Decides whether `n` is the port's phone: a site-file phone for this port (its frames come from
  // its own MAC), or, with none in the site file, the first phone after link-up. Only the port's
  // phone negotiates power and names the port's device to PoE.
  bool claim_port_phone(Neighbor& n, bool looks_like_phone) {
    if (!port.phones.empty()) {
      n.verified = n.phone_mac == n.source && is_site_phone(n.source);
      return n.verified;
    }
    if (port_phone) {
      n.verified = *port_phone == n.source;
      return n.verified;
    }
    if (looks_like_phone && n.phone_mac == n.source) {
      port_phone = n.source;
      n.verified = true;
      log->info("{}: {} is the port's phone", port.name, n.device_id);
      return true;
    }
    return false;
  }

  // The port's phone left (holdtime, TTL 0, link down, eviction): the next phone may claim it.
  void refresh_port_phone() {
    if (!port_phone) return;
    const bool present =
        std::any_of(table.begin(), table.end(), [this](const auto& e) { return e.second.source == *port_phone; });
    if (!present) {
      log->info("{}: the port's phone {} left", port.name, port_phone->to_string());
      port_phone.reset();
    }
  }

  void refuse_power(Neighbor* n, std::uint32_t requested) {
    ++counters.power_refused;
    if (n != nullptr) {
      n->power_requested_mw = requested;
      n->power_granted_mw.reset();
    }
    const auto now = hooks.steady_now();
    if (now - last_refusal_warn >= kMalformedWarnEvery) {  // untrusted input: rate-limited
      last_refusal_warn = now;
      log->warn("{}: power request {} mW from {} refused: not the port's phone ({} refused so far)", port.name,
                requested, n != nullptr ? n->source.to_string() : std::string("a device not in the table"),
                counters.power_refused);
    }
  }

  // --- lifecycle -------------------------------------------------------------------------

  void start() {
    running = true;
    open_link();
    schedule_expiry();
  }

  void open_link() {
    if (!running) return;
    std::weak_ptr<Impl> weak = weak_from_this();
    std::string error;
    const bool ok = link->open(
        [weak](ByteView frame) {
          if (auto self = weak.lock()) self->on_frame(frame);
        },
        [weak](const std::string& why) {
          if (auto self = weak.lock()) self->on_link_failure(why);
        },
        error);
    if (!ok) {
      if (error != last_error) log->error("{}: cannot capture: {}", port.name, error);
      last_error = error;
      link_is_open = false;
      schedule_reopen();
      return;
    }
    if (!last_error.empty()) log->info("{}: capturing again", port.name);
    last_error.clear();
    link_is_open = true;
    begin_fast_start();
  }

  void on_link_failure(const std::string& why) {
    log->error("{}: capture failed: {}", port.name, why);
    last_error = why;
    link->close();
    link_is_open = false;
    drop_all_neighbors(true);
    advert_timer.cancel();
    schedule_reopen();
  }

  void schedule_reopen() {
    reopen_timer.expires_after(kReopenDelay);
    std::weak_ptr<Impl> weak = weak_from_this();
    reopen_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      self->open_link();
    });
  }

  void stop() {
    if (!running) return;
    running = false;
    if (link_is_open) {
      // TTL 0 tells neighbours to forget us now instead of at holdtime.
      if (settings.cdp_enabled) send_cdp(0);
      if (settings.lldp_enabled) send_lldp(0);
    }
    advert_timer.cancel();
    expiry_timer.cancel();
    reopen_timer.cancel();
    reply_timer.cancel();
    link->close();
    link_is_open = false;
    table.clear();
  }

  void reconfigure(const PortSettings& new_port, const AgentSettings& new_settings) {
    const bool vlans_changed = new_port.voice_vlan != port.voice_vlan || new_port.data_vlan != port.data_vlan;
    const bool identity_changed =
        new_settings.device_id != settings.device_id || new_settings.cdp_enabled != settings.cdp_enabled ||
        new_settings.lldp_enabled != settings.lldp_enabled || new_settings.lldp_med != settings.lldp_med ||
        new_settings.voice_priority != settings.voice_priority || new_settings.voice_dscp != settings.voice_dscp;
    const bool timers_changed =
        new_settings.interval_s != settings.interval_s || new_settings.holdtime_s != settings.holdtime_s;
    port = new_port;
    settings = new_settings;
    if (!running || !link_is_open) return;
    if (vlans_changed || identity_changed) {
      log->info("{}: configuration changed (voice vlan {}), fast start", port.name, port.voice_vlan);
      begin_fast_start();
    } else if (timers_changed && fast_start_remaining == 0) {
      schedule_advert(std::chrono::seconds(std::max(1, settings.interval_s)));
    }
  }

  void link_changed(bool up) {
    if (up == link_up) return;
    link_up = up;
    if (!up) {
      // Power negotiation restarts on the next link (protocol-notes.md): new management id.
      drop_all_neighbors(true);
      last_request_id = 0;
      have_cdp_request = false;
      cdp_granted_mw = 0;
      bump_management_id();
      med_endpoint_seen = false;
      lldp_granted_mw.reset();
      port_phone.reset();
      advert_timer.cancel();
      return;
    }
    if (running && link_is_open) begin_fast_start();
  }

  // --- advertising -----------------------------------------------------------------------

  void begin_fast_start() {
    fast_start_remaining = std::max(1, settings.fast_start_count);
    advert_tick();
  }

  void advert_tick() {
    if (!running || !link_is_open || !link_up) return;
    if (!send_advertisements()) {
      // Not on the wire (interface not up yet): a fast-start frame that was never sent does not
      // count, so try again soon instead of waiting a whole interval.
      schedule_advert(settings.fast_start_spacing);
      return;
    }
    if (fast_start_remaining > 0) --fast_start_remaining;
    if (fast_start_remaining > 0) {
      schedule_advert(settings.fast_start_spacing);
    } else {
      schedule_advert(std::chrono::seconds(std::max(1, settings.interval_s)));
    }
  }

  template <typename Duration>
  void schedule_advert(Duration after) {
    advert_timer.expires_after(after);
    std::weak_ptr<Impl> weak = weak_from_this();
    advert_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      self->advert_tick();
    });
  }

  // True when every enabled protocol's frame went out.
  bool send_advertisements() {
    bool ok = true;
    if (settings.cdp_enabled) ok = send_cdp(holdtime()) && ok;
    if (settings.lldp_enabled)
      ok = send_lldp(static_cast<std::uint16_t>(std::clamp(settings.holdtime_s, 0, 65535))) && ok;
    return ok;
  }

  std::uint8_t holdtime() const { return static_cast<std::uint8_t>(std::clamp(settings.holdtime_s, 1, 255)); }

  bool send_cdp(std::uint8_t ttl) {
    if (link->send(cdp_frame(ttl))) {
      ++counters.cdp_sent;
      return true;
    }
    ++counters.send_errors;
    return false;
  }

  bool send_lldp(std::uint16_t ttl) {
    if (link->send(lldp_frame(ttl))) {
      ++counters.lldp_sent;
      return true;
    }
    ++counters.send_errors;
    return false;
  }

  std::uint32_t current_available_mw() const {
    if (have_cdp_request) return cdp_granted_mw;
    if (hooks.available_power) return hooks.available_power(port.name);
    return 0;
  }

  Bytes cdp_frame(std::uint8_t ttl) const {
    CdpFrame f;
    f.source = link->mac();
    CdpPdu& p = f.pdu;
    p.ttl_s = ttl;
    p.device_id = settings.device_id;
    if (settings.management_ipv4) p.addresses = std::vector<CdpAddress>{CdpAddress::ipv4(*settings.management_ipv4)};
    p.port_id = port.name;
    p.capabilities = capability::kSwitch | capability::kIgmp;
    p.software_version = settings.software_version;
    p.platform = settings.platform;
    if (valid_vlan(port.data_vlan)) p.native_vlan = static_cast<std::uint16_t>(port.data_vlan);
    p.full_duplex = true;
    // Switches put the appliance VLAN in every advertisement, not only in replies.
    if (valid_vlan(port.voice_vlan)) p.voip_vlan_reply = ApplianceVlan{1, static_cast<std::uint16_t>(port.voice_vlan)};
    p.trust_bitmap = 0;
    p.untrusted_cos = 0;
    if (settings.management_ipv4) {
      p.management_addresses = std::vector<CdpAddress>{CdpAddress::ipv4(*settings.management_ipv4)};
    }
    p.power_available = PowerAvailable{last_request_id, management_id, current_available_mw(), 0xffffffff};
    return encode_cdp(f);
  }

  Bytes lldp_frame(std::uint16_t ttl) const {
    LldpFrame f;
    f.source = link->mac();
    LldpPdu& p = f.pdu;
    p.chassis_id = LldpId{4, Bytes(f.source.bytes().begin(), f.source.bytes().end())};
    p.port_id = LldpId{5, Bytes(port.name.begin(), port.name.end())};
    p.ttl_s = ttl;
    if (ttl == 0) return encode_lldp(f);  // shutdown PDU: the mandatory TLVs only
    p.port_description = port.name;
    p.system_name = settings.device_id;
    p.system_description = settings.platform + " " + settings.software_version;
    p.system_capabilities = 0x0004;  // bridge
    p.enabled_capabilities = 0x0004;
    if (settings.management_ipv4) {
      const auto a = CdpAddress::ipv4(*settings.management_ipv4).address;
      p.management_addresses.push_back(LldpManagementAddress{1, a, 1, 0, {}});
    }
    if (settings.lldp_med && med_endpoint_seen) {
      p.med_capabilities = MedCapabilities{
          static_cast<std::uint16_t>(lldp_med_capability::kCapabilities | lldp_med_capability::kNetworkPolicy |
                                     lldp_med_capability::kPowerPse),
          MedDeviceType::NetworkConnectivity};
      if (valid_vlan(port.voice_vlan)) {
        // TIA-1057 10.2.3.3: tagged with the voice VLAN on a trunked phone uplink; untagged (VLAN ID
        // 0) when voice shares the port's data VLAN. Phones ignore a policy that contradicts it.
        const bool tagged = voice_tagged();
        const auto vid = static_cast<std::uint16_t>(tagged ? port.voice_vlan : 0);
        p.network_policies.push_back(NetworkPolicy{1, false, tagged, vid,
                                                   static_cast<std::uint8_t>(settings.voice_priority & 0x7),
                                                   static_cast<std::uint8_t>(settings.voice_dscp & 0x3f)});
        p.network_policies.push_back(NetworkPolicy{2, false, tagged, vid,
                                                   static_cast<std::uint8_t>(settings.signalling_priority & 0x7),
                                                   static_cast<std::uint8_t>(settings.signalling_dscp & 0x3f)});
      }
      const std::uint32_t mw = lldp_granted_mw.value_or(current_available_mw());
      p.extended_power = ExtendedPower{0, 1, port.lldp_power_priority,
                                       static_cast<std::uint16_t>(std::min<std::uint32_t>(mw / 100, 0xffff))};
    }
    return encode_lldp(f);
  }

  // --- receiving -------------------------------------------------------------------------

  void on_frame(ByteView frame) {
    if (frame.size() >= 12 && link->mac() != MacAddress{} &&
        std::equal(frame.begin() + 6, frame.begin() + 12, link->mac().bytes().begin())) {
      ++counters.ignored;  // our own frame, if the kernel did not honour the direction filter
      return;
    }
    if (frame.size() >= 6 && std::equal(kCdpMulticast.begin(), kCdpMulticast.end(), frame.begin())) {
      auto decoded = decode_cdp(frame);
      if (!decoded) return rejected(Protocol::Cdp, decoded.error());
      ++counters.cdp_received;
      on_cdp(decoded.value());
      return;
    }
    auto decoded = decode_lldp(frame);
    if (!decoded) return rejected(Protocol::Lldp, decoded.error());
    ++counters.lldp_received;
    on_lldp(decoded.value());
  }

  void rejected(Protocol protocol, DecodeError error) {
    if (error == DecodeError::WrongProtocol) {
      ++counters.ignored;  // VTP, DTP, PVST... share the CDP address
      return;
    }
    ++counters.malformed;
    const auto now = hooks.steady_now();
    if (now - last_malformed_warn >= kMalformedWarnEvery) {  // untrusted input: rate-limited
      last_malformed_warn = now;
      log->warn("{}: malformed {} frame dropped ({}), {} so far", port.name, to_string(protocol), to_string(error),
                counters.malformed);
    }
  }

  // Finds or inserts a neighbour. A full table (flood) makes room by evicting the unverified
  // neighbour seen longest ago; nullptr when every entry is verified.
  Neighbor* upsert(Protocol protocol, const MacAddress& source, bool& is_new) {
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

  void forget(Protocol protocol, const MacAddress& source, std::string_view why) {
    auto it = table.find(NeighborKey{protocol, source});
    if (it == table.end()) return;
    report_gone(it->second, why);
    table.erase(it);
    refresh_med();
    refresh_port_phone();
  }

  // MED TLVs go out only while a MED endpoint is a neighbour (TIA-1057).
  void refresh_med() {
    med_endpoint_seen =
        std::any_of(table.begin(), table.end(), [](const auto& entry) { return entry.second.med_endpoint; });
  }

  void on_cdp(const CdpFrame& f) {
    const CdpPdu& p = f.pdu;
    log->debug("{}: cdp from {} ({}), ttl {}{}{}", port.name, f.source.to_string(), p.device_id.value_or("?"), p.ttl_s,
               p.voip_vlan_query ? ", voice vlan query" : "", p.power_requested ? ", power request" : "");
    if (p.ttl_s == 0) {
      forget(Protocol::Cdp, f.source, "sent cdp ttl 0");
      return;
    }
    bool is_new = false;
    Neighbor* n = upsert(Protocol::Cdp, f.source, is_new);
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
      touch(*n, p.ttl_s);
    }
    const bool looks_like_phone =
        (p.capabilities.value_or(0) & capability::kPhone) != 0 || mac_from_sep_name(p.device_id.value_or(""));
    const bool port_phone_frame = n != nullptr && claim_port_phone(*n, looks_like_phone);
    if (port_phone_frame && is_new && hooks.device_seen) hooks.device_seen(port.name, n->phone_mac);

    bool reply = false;
    if (p.power_requested && !p.power_requested->levels_mw.empty() && !port_phone_frame) {
      const auto& levels = p.power_requested->levels_mw;
      refuse_power(n, *std::max_element(levels.begin(), levels.end()));
    } else if (p.power_requested && !p.power_requested->levels_mw.empty()) {
      const auto& levels = p.power_requested->levels_mw;
      const std::uint32_t requested = *std::max_element(levels.begin(), levels.end());
      const std::uint32_t granted = negotiate(requested);
      if (!have_cdp_request || p.power_requested->request_id != last_request_id || granted != cdp_granted_mw) {
        bump_management_id();
      }
      have_cdp_request = true;
      last_request_id = p.power_requested->request_id;
      cdp_granted_mw = granted;
      ++counters.power_replies;
      reply = true;
      if (n != nullptr) {
        n->power_requested_mw = requested;
        n->power_granted_mw = granted;
      }
    }
    if (p.voip_vlan_query) {
      ++counters.voice_vlan_replies;
      reply = true;
    }
    if (n != nullptr && is_new) {
      report_new(*n, (n->capabilities & capability::kPhone) != 0 || mac_from_sep_name(n->device_id));
    }
    // Answer at once: a phone waits for the voice VLAN and its power grant.
    if (reply && running && link_is_open && settings.cdp_enabled) reply_cdp();
  }

  void reply_cdp() {
    if (reply_pending) return;  // the deferred reply will carry the latest state
    const auto now = hooks.steady_now();
    if (!last_reply || now - *last_reply >= kMinReplySpacing) {
      last_reply = now;
      send_cdp(holdtime());
      return;
    }
    reply_pending = true;
    reply_timer.expires_after(kMinReplySpacing);
    std::weak_ptr<Impl> weak = weak_from_this();
    reply_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->reply_pending = false;
      if (ec || !self->running || !self->link_is_open || !self->settings.cdp_enabled) return;
      self->last_reply = self->hooks.steady_now();
      self->send_cdp(self->holdtime());
    });
  }

  void on_lldp(const LldpFrame& f) {
    const LldpPdu& p = f.pdu;
    log->debug("{}: lldp from {} ({}), ttl {}{}", port.name, f.source.to_string(), p.system_name.value_or("?"), p.ttl_s,
               p.is_med() ? ", med" : "");
    if (p.ttl_s == 0) {
      forget(Protocol::Lldp, f.source, "sent lldp shutdown");
      return;
    }
    bool is_new = false;
    Neighbor* n = upsert(Protocol::Lldp, f.source, is_new);
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
      check_policies(*n, is_new);
      touch(*n, p.ttl_s);
    }
    // A phone says so: LLDP-MED class III (communication device) or the telephone capability
    // enabled. A class I endpoint (ladvd on a PC, say) is a host, never the port's phone.
    const bool med_phone = p.med_capabilities && p.med_capabilities->device_type == MedDeviceType::EndpointClass3;
    const bool looks_like_phone = med_phone || (p.enabled_capabilities.value_or(0) & lldp_capability::kTelephone) != 0;
    const bool port_phone_frame = n != nullptr && claim_port_phone(*n, looks_like_phone);
    if (port_phone_frame && is_new && hooks.device_seen) hooks.device_seen(port.name, n->phone_mac);
    bool reply = false;
    if (p.is_med() && !med_endpoint_seen && settings.lldp_med) {
      med_endpoint_seen = true;  // from now on our LLDPDUs carry MED TLVs, starting with a fast start
      reply = true;
    }
    if (p.extended_power && p.extended_power->power_type == 1 && settings.lldp_med && !port_phone_frame) {
      refuse_power(n, p.extended_power->power_mw());
    } else if (p.extended_power && p.extended_power->power_type == 1 && settings.lldp_med) {
      const std::uint32_t requested = p.extended_power->power_mw();
      const std::uint32_t granted = negotiate(requested);
      if (lldp_granted_mw != granted) reply = true;
      lldp_granted_mw = granted;
      ++counters.power_replies;
      if (n != nullptr) {
        n->power_requested_mw = requested;
        n->power_granted_mw = granted;
      }
    }
    if (n != nullptr && is_new) report_new(*n, p.is_med());
    if (reply && running && link_is_open && settings.lldp_enabled) {
      if (med_endpoint_seen) fast_start_remaining = std::max(fast_start_remaining, settings.med_fast_start_count - 1);
      send_lldp(static_cast<std::uint16_t>(std::clamp(settings.holdtime_s, 0, 65535)));
      if (fast_start_remaining > 0) schedule_advert(settings.fast_start_spacing);
    }
  }

  // An endpoint's own voice policy (what it will use) against the port: a mismatch means the
  // phone sends voice where the port does not carry it. Logged once per change, shown in --detail.
  void check_policies(Neighbor& n, bool is_new) {
    std::string warning;
    for (const auto& pol : n.policies) {
      if (pol.application != 1 || pol.unknown || !valid_vlan(port.voice_vlan)) continue;
      const bool tagged = voice_tagged();
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
    if (warning != n.policy_warning && !warning.empty()) {
      log->warn("{}: {} {}", port.name, n.device_id, warning);
    }
    (void)is_new;
    n.policy_warning = std::move(warning);
  }

  std::uint32_t negotiate(std::uint32_t requested_mw) {
    if (hooks.negotiate_power) {
      if (auto granted = hooks.negotiate_power(port.name, requested_mw)) return *granted;
    }
    return std::min(requested_mw, port.max_power_mw);
  }

  void bump_management_id() {
    ++management_id;
    if (management_id == 0) management_id = 1;  // 0 is never sent
  }

  void touch(Neighbor& n, std::uint16_t ttl) {
    n.holdtime_s = ttl;
    n.last_seen = hooks.wall_now();
    n.expires = hooks.steady_now() + std::chrono::seconds(ttl);
  }

  // --- neighbour lifetime ----------------------------------------------------------------

  void schedule_expiry() {
    expiry_timer.expires_after(kExpiryPeriod);
    std::weak_ptr<Impl> weak = weak_from_this();
    expiry_timer.async_wait([weak](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec || !self->running) return;
      self->expire();
      self->schedule_expiry();
    });
  }

  std::size_t expire() {
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

  void drop_all_neighbors(bool report) {
    if (report) {
      for (const auto& [key, n] : table) report_gone(n, "link down");
    }
    table.clear();
    med_endpoint_seen = false;
    port_phone.reset();
  }

  void report_new(const Neighbor& n, bool is_phone) {
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
    if (valid_vlan(port.voice_vlan)) e.attributes.emplace_back("vlan", std::to_string(port.voice_vlan));
    if (!n.platform.empty()) e.attributes.emplace_back("model", n.platform);
    e.attributes.emplace_back("device_name", n.device_id);
    emit(std::move(e));
  }

  void report_gone(const Neighbor& n, std::string_view why) {
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

  void emit(PhoneEvent e) {
    if (hooks.events != nullptr) hooks.events->report(std::move(e));
  }
};

Agent::Agent(asio::io_context& io, std::unique_ptr<FrameLink> link, PortSettings port, AgentSettings settings,
             Hooks hooks)
    : impl_(std::make_shared<Impl>(io, std::move(link), std::move(port), std::move(settings), std::move(hooks))) {}

Agent::~Agent() {
  impl_->advert_timer.cancel();
  impl_->expiry_timer.cancel();
  impl_->reopen_timer.cancel();
  impl_->reply_timer.cancel();
  impl_->link->close();
}

void Agent::start() { impl_->start(); }
void Agent::stop() { impl_->stop(); }
void Agent::reconfigure(const PortSettings& port, const AgentSettings& settings) { impl_->reconfigure(port, settings); }
void Agent::link_changed(bool up) { impl_->link_changed(up); }
std::size_t Agent::expire_neighbors() { return impl_->expire(); }
const std::string& Agent::port_name() const { return impl_->port.name; }
const PortSettings& Agent::port() const { return impl_->port; }
Counters Agent::counters() const { return impl_->counters; }
bool Agent::link_open() const { return impl_->link_is_open; }
std::string Agent::last_error() const { return impl_->last_error; }
Bytes Agent::build_cdp_advertisement() const { return impl_->cdp_frame(impl_->holdtime()); }
Bytes Agent::build_lldp_advertisement() const {
  return impl_->lldp_frame(static_cast<std::uint16_t>(std::clamp(impl_->settings.holdtime_s, 0, 65535)));
}

std::vector<Neighbor> Agent::neighbors() const {
  std::vector<Neighbor> out;
  out.reserve(impl_->table.size());
  for (const auto& [key, n] : impl_->table) out.push_back(n);
  return out;
}

// ---------------------------------------------------------------------------------------------
// AgentSet

AgentSet::AgentSet(asio::io_context& io, LinkFactory links, Hooks hooks)
    : io_(io), links_(std::move(links)), hooks_(std::move(hooks)) {}

AgentSet::~AgentSet() = default;

void AgentSet::apply(const std::vector<PortSettings>& ports, const AgentSettings& settings) {
  settings_ = settings;
  const bool enabled = settings.cdp_enabled || settings.lldp_enabled;
  // Ports that left the config (or everything, when both protocols are off) stop advertising.
  for (auto it = agents_.begin(); it != agents_.end();) {
    const bool kept =
        enabled && std::any_of(ports.begin(), ports.end(), [&](const PortSettings& p) { return p.name == it->first; });
    if (kept) {
      ++it;
      continue;
    }
    logger("cdp")->info("{}: no longer advertising", it->first);
    it->second->stop();
    it = agents_.erase(it);
  }
  if (!enabled) return;
  for (const auto& p : ports) {
    auto it = agents_.find(p.name);
    if (it != agents_.end()) {
      it->second->reconfigure(p, settings);
      continue;
    }
    auto agent = std::make_unique<Agent>(io_, links_(p.name), p, settings, hooks_);
    agent->start();
    agents_.emplace(p.name, std::move(agent));
  }
}

void AgentSet::stop_all() {
  for (auto& [name, agent] : agents_) agent->stop();
  agents_.clear();
}

void AgentSet::link_changed(const std::string& port, bool up) {
  if (auto* a = find(port)) a->link_changed(up);
}

Agent* AgentSet::find(const std::string& port) {
  auto it = agents_.find(port);
  return it == agents_.end() ? nullptr : it->second.get();
}

std::vector<const Agent*> AgentSet::agents() const {
  std::vector<const Agent*> out;
  for (const auto& [name, agent] : agents_) out.push_back(agent.get());
  return out;
}

}  // namespace ve::cdp
