// One simulated phone: the boot sequence of shared/docs/phone-boot-sequence.md, step by step,
// each step recorded with its outcome, a detail a technician can act on, and its timing.
#include <algorithm>

#include <fmt/format.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim::detail {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kCdpResend = seconds(2);
// RFC 2131 4.1: 4 s before the first retransmission, doubling up to 64 s, each randomised by
// -1..+1 s so that a burst of lost DISCOVERs is not retransmitted in step again. (A fixed 2 s
// made every lost DISCOVER of a storm show as the same 2-second plateau.)
constexpr auto kDhcpFirstRetransmit = seconds(4);
constexpr auto kDhcpMaxRetransmit = seconds(64);
constexpr auto kDhcpJitter = milliseconds(1000);
constexpr int kDhcpMaxNaks = 3;
constexpr auto kRetryPause = seconds(2);  // between rounds when no server answers

milliseconds ms_since(Clock::time_point from, Clock::time_point to = Clock::now()) {
  return duration_cast<milliseconds>(to - from);
}

std::string join_addresses(const std::vector<std::uint32_t>& a) {
  std::string out;
  for (auto v : a) {
    if (!out.empty()) out += ",";
    out += ipv4_to_string(v);
  }
  return out;
}

bool is_vlan_tagged(int vlan) { return vlan != 0 && vlan != 1 && vlan != 4095; }

}  // namespace

Phone::Phone(Shared& shared, MacAddress mac) : shared_(shared), mac_(mac), signal_(shared.io) {
  result_.mac = mac;
  result_.model = shared.options.model;
  result_.active_load = shared.options.load;
  result_.inactive_load = shared.options.inactive_load;
}

void Phone::wake() { signal_.cancel(); }

void Phone::on_dhcp(DhcpServerMessage m) {
  if (dhcp_inbox_.size() >= 16) return;  // a flood for one MAC: keep the first few
  dhcp_inbox_.push_back(std::move(m));
  wake();
}

asio::awaitable<bool> Phone::wait_until(Clock::time_point t) {
  error_code ec;
  signal_.expires_at(t);
  co_await signal_.async_wait(token(ec));
  co_return ec == asio::error::operation_aborted;
}

std::string Phone::random_hex(int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out.push_back(kHex[shared_.rng() & 0xf]);
  return out;
}

std::string Phone::cnonce() { return random_hex(8); }

asio::awaitable<void> Phone::sleep_until(Clock::time_point t) {
  while (Clock::now() < t) co_await wait_until(t);  // wake() may end a wait early
}

asio::awaitable<FetchResult> Phone::fetch_required(const std::string& name) {
  int attempts = 0;
  for (;;) {
    ++attempts;
    FetchResult r = co_await files_->fetch(name);
    if (r.status != FetchStatus::Unreachable || Clock::now() + kRetryPause >= deadline_) {
      if (attempts > 1) {
        if (r.status == FetchStatus::Unreachable)
          r.detail += fmt::format(" ({} attempts)", attempts);
        else
          r.via += fmt::format(" (attempt {})", attempts);
      }
      co_return r;
    }
    // No server answers (a box restarting): a real phone keeps trying until it gives up.
    co_await sleep_until(Clock::now() + kRetryPause);
  }
}

void Phone::record(Step step, StepOutcome outcome, std::string detail, Clock::time_point began) {
  const auto now = Clock::now();
  StepRecord r;
  r.step = step;
  r.outcome = outcome;
  r.detail = std::move(detail);
  r.at = ms_since(start_, began);
  r.took = ms_since(began, now);
  result_.reached_step = std::max(result_.reached_step, static_cast<int>(step));
  if (outcome == StepOutcome::Failed && !result_.failed_step) {
    result_.failed_step = step;
    result_.failure = fmt::format("step {} ({}): {}", static_cast<int>(step), to_string(step), r.detail);
  }
  result_.steps.push_back(std::move(r));
}

bool Phone::out_of_time(Step step) {
  if (Clock::now() < deadline_) return false;
  record(step, StepOutcome::Failed,
         fmt::format("boot took longer than --timeout-s {}", shared_.options.timeout.count()), Clock::now());
  return true;
}

// ------------------------------------------------------------------------------------------ boot

asio::awaitable<void> Phone::boot() {
  start_ = Clock::now();
  deadline_ = start_ + shared_.options.timeout;
  result_.started_at = ms_since(shared_.start, start_);

  record(Step::Power, StepOutcome::Ok, "powered by the box (sim PoE driver); the phone proceeds", start_);
  record(Step::Firmware, StepOutcome::Ok,
         shared_.options.load.empty() ? "booted the image in its flash" : "booted " + shared_.options.load, start_);

  bool ok = co_await step_cdp();
  if (ok) ok = co_await step_dhcp();
  if (ok) ok = co_await step_files();
  if (ok) ok = co_await step_load();
  if (ok && !out_of_time(Step::DialRules)) {
    if (config_.dial_template.empty()) {
      record(Step::DialRules, StepOutcome::Skipped, "config names no dialTemplate", Clock::now());
    } else {
      co_await step_optional(Step::DialRules, config_.dial_template, "dial rules");
    }
    ok = co_await step_register();
  }
  if (ok) co_await steps_after_registration();
  if (result_.registered) result_.reached_step = std::max(result_.reached_step, static_cast<int>(Step::Ringtones));
  files_.reset();  // downloads are over: close the kept-alive HTTP connection
  result_.registered_at_end = result_.registered;
  if (shared_.on_boot_done && !rebooting_) shared_.on_boot_done(*this);
}

// ---------------------------------------------------------------------------------- step 3: CDP

asio::awaitable<bool> Phone::step_cdp() {
  const auto began = Clock::now();
  const auto& opt = shared_.options;
  cdp::CdpFrame f;
  f.source = mac_;
  cdp::CdpPdu& p = f.pdu;
  p.device_id = mac_.sep_name();
  p.port_id = "Port 1";
  p.capabilities = cdp::capability::kHost | cdp::capability::kPhone | cdp::capability::kMacRelay;
  p.software_version = opt.load.empty() ? "unknown" : opt.load;
  p.platform = "Cisco IP Phone " + opt.model;
  p.full_duplex = true;
  p.voip_vlan_query = cdp::Bytes{0x20, 0x02, 0x00, 0x01};
  p.power_mw = static_cast<std::uint16_t>(std::min<std::uint32_t>(opt.power_request_mw, 0xffff));
  const auto request_id = static_cast<std::uint16_t>(1 + shared_.rng() % 0xfffe);
  p.power_requested = cdp::PowerRequested{request_id, 0, {opt.power_request_mw}};
  const cdp::Bytes frame = cdp::encode_cdp(f);

  const std::uint64_t seen = shared_.cdp_seq;
  shared_.cdp_waiters.push_back(this);
  const auto deadline = std::min(began + opt.cdp_timeout, deadline_);
  auto next_send = Clock::now();
  int sent = 0;
  while (shared_.cdp_seq == seen && Clock::now() < deadline) {
    if (Clock::now() >= next_send) {
      if (shared_.link.send(frame)) ++sent;
      next_send = Clock::now() + kCdpResend;
    }
    co_await wait_until(std::min(next_send, deadline));
  }
  std::erase(shared_.cdp_waiters, this);
  if (shared_.cdp_seq == seen || !shared_.last_cdp) {
    record(Step::VoiceVlan, StepOutcome::Failed,
           fmt::format("no CDP from the switch in {} s ({} VoIP VLAN queries sent on {})",
                       ms_since(began).count() / 1000, sent, opt.interface),
           began);
    co_return false;
  }
  const cdp::CdpFrame& sw = *shared_.last_cdp;
  std::string detail;
  std::optional<int> vlan;
  if (sw.pdu.voip_vlan_reply) vlan = sw.pdu.voip_vlan_reply->vlan;
  result_.voice_vlan = vlan;
  const std::string from =
      fmt::format("{} {}", sw.pdu.device_id.value_or(sw.source.to_string()), sw.pdu.port_id.value_or("?"));
  if (opt.expect_vlan && (!vlan || *vlan != *opt.expect_vlan)) {
    record(Step::VoiceVlan, StepOutcome::Failed,
           vlan ? fmt::format("switch {} offers voice VLAN {}, expected {}", from, *vlan, *opt.expect_vlan)
                : fmt::format("switch {} sent no voice VLAN (CDP 0x0e), expected {}", from, *opt.expect_vlan),
           began);
    co_return false;
  }
  if (vlan && is_vlan_tagged(*vlan)) {
    detail = fmt::format("voice VLAN {} from {}", *vlan, from);
    if (opt.tag_voice_vlan) {
      if (auto r = shared_.join_voice_vlan(*vlan); !r) {
        record(Step::VoiceVlan, StepOutcome::Failed, fmt::format("{}; cannot tag: {}", detail, r.error()), began);
        co_return false;
      }
      detail += fmt::format("; tagging from now on (over {})", shared_.ip_interface);
    } else {
      detail += shared_.kernel_has_8021q ? "; continuing untagged (the simulator does not tag)"
                                         : "; kernel has no 802.1Q support: continuing untagged";
    }
  } else {
    detail = vlan ? fmt::format("VLAN {} from {} means untagged", *vlan, from)
                  : fmt::format("no voice VLAN from {}: staying on the native VLAN", from);
  }
  if (sw.pdu.power_available) {
    const auto& pa = *sw.pdu.power_available;
    detail += fmt::format("; power available {} mW{}", pa.available_mw,
                          pa.request_id == request_id ? " (answer to our request)" : "");
  }
  record(Step::VoiceVlan, StepOutcome::Ok, std::move(detail), began);
  co_return true;
}

// --------------------------------------------------------------------------------- step 4: DHCP

asio::awaitable<bool> Phone::step_dhcp() {
  const auto began = Clock::now();
  const auto& opt = shared_.options;
  const auto deadline = std::min(began + opt.dhcp_timeout, deadline_);
  enum class State { Selecting, Requesting } state = State::Selecting;
  DhcpClientMessage msg;
  msg.mac = mac_;
  msg.vendor_class = vendor_class_for(opt.model);
  msg.hostname = mac_.sep_name();
  msg.xid = static_cast<std::uint32_t>(shared_.rng());
  std::optional<DhcpServerMessage> offer;
  std::optional<DhcpServerMessage> ack;
  int naks = 0;
  std::string last_nak;
  Clock::duration interval = kDhcpFirstRetransmit;
  dhcp_inbox_.clear();

  auto send = [&] {
    msg.secs = static_cast<std::uint16_t>(std::min<long>(ms_since(began).count() / 1000, 0xffff));
    shared_.ip_link->send(encode_dhcp_frame(msg));
  };
  auto discover = [&] {
    state = State::Selecting;
    msg.type = DhcpMessageType::Discover;
    msg.requested_ip.reset();
    msg.server_id.reset();
    offer.reset();
    interval = kDhcpFirstRetransmit;
    send();
  };
  discover();
  auto jittered = [&](Clock::duration base) {
    const auto span = 2 * kDhcpJitter.count() + 1;
    return base + milliseconds(static_cast<long>(shared_.rng() % span) - kDhcpJitter.count());
  };
  auto next_send = Clock::now() + jittered(interval);
  while (!ack) {
    std::vector<DhcpServerMessage> inbox;
    inbox.swap(dhcp_inbox_);
    bool restarted = false;
    for (auto& m : inbox) {
      if (m.xid != msg.xid || restarted) continue;
      if (state == State::Selecting && m.type == DhcpMessageType::Offer && m.yiaddr != 0) {
        offer = m;
        state = State::Requesting;
        msg.type = DhcpMessageType::Request;
        msg.requested_ip = m.yiaddr;
        msg.server_id = m.server_id.value_or(m.siaddr);
        interval = kDhcpFirstRetransmit;
        send();
        next_send = Clock::now() + jittered(interval);
      } else if (state == State::Requesting && m.type == DhcpMessageType::Ack) {
        ack = std::move(m);
        break;
      } else if (state == State::Requesting && m.type == DhcpMessageType::Nak) {
        last_nak = m.message.value_or("no reason given");
        if (++naks >= kDhcpMaxNaks) {
          record(Step::Dhcp, StepOutcome::Failed, fmt::format("{} NAKs, last: {}", naks, last_nak), began);
          co_return false;
        }
        msg.xid = static_cast<std::uint32_t>(shared_.rng());
        discover();
        next_send = Clock::now() + jittered(interval);
        restarted = true;
      }
    }
    if (ack) break;
    const auto now = Clock::now();
    if (now >= deadline) {
      if (state == State::Selecting) {
        record(Step::Dhcp, StepOutcome::Failed,
               fmt::format("no DHCP offer in {} s (vendor class \"{}\"): is kea-dhcp4 serving {}'s VLAN/subnet?",
                           ms_since(began).count() / 1000, msg.vendor_class, shared_.ip_interface),
               began);
      } else {
        record(Step::Dhcp, StepOutcome::Failed,
               fmt::format("offered {} but no ACK to the REQUEST in {} s", ipv4_to_string(offer->yiaddr),
                           ms_since(began).count() / 1000),
               began);
      }
      co_return false;
    }
    if (now >= next_send) {
      send();
      interval = std::min<Clock::duration>(interval * 2, kDhcpMaxRetransmit);
      next_send = now + jittered(interval);
    }
    co_await wait_until(std::min(next_send, deadline));
  }

  ip_ = ack->yiaddr;
  lease_s_ = ack->lease_time_s.value_or(0);
  leased_at_ = Clock::now();
  const std::uint32_t mask = ack->subnet_mask.value_or(offer && offer->subnet_mask ? *offer->subnet_mask : 0xffffff00);
  const int prefix = prefix_length(mask).value_or(24);
  result_.ip = ipv4_to_string(ip_);
  tftp_servers_ = ack->tftp_servers;
  if (tftp_servers_.empty() && ack->tftp_server_name) {
    if (auto a = parse_ipv4(*ack->tftp_server_name)) {
      tftp_servers_.push_back(*a);
    } else {
      record(Step::Dhcp, StepOutcome::Failed,
             fmt::format("leased {} but option 66 names a host (\"{}\") and there is no option 150; the simulator "
                         "does not resolve names",
                         result_.ip, *ack->tftp_server_name),
             began);
      co_return false;
    }
  }
  std::string detail = fmt::format("{}/{}", result_.ip, prefix);
  if (!ack->routers.empty()) detail += " router " + ipv4_to_string(ack->routers.front());
  if (ack->lease_time_s) detail += fmt::format(" lease {} s", *ack->lease_time_s);
  detail += fmt::format("; option 150 [{}]", join_addresses(ack->tftp_servers));
  detail += "; option 66 " + (ack->tftp_server_name ? *ack->tftp_server_name : std::string("absent"));
  if (ack->server_id) detail += "; server " + ipv4_to_string(*ack->server_id);
  if (tftp_servers_.empty()) {
    record(Step::Dhcp, StepOutcome::Failed,
           detail + ": no option 150 or 66 in the ACK, the phone does not know its TFTP server", began);
    co_return false;
  }
  if (auto r = shared_.ip_addresses->add(ip_); !r) {
    record(Step::Dhcp, StepOutcome::Failed,
           fmt::format("{}; cannot put {}/32 on {}: {}", detail, result_.ip, shared_.ip_interface, r.error()), began);
    co_return false;
  }
  if (auto r = shared_.ip_addresses->ensure_route(ip_ & mask, prefix); !r) {
    record(Step::Dhcp, StepOutcome::Failed,
           fmt::format("{}; cannot route {}/{} via {}: {}", detail, ipv4_to_string(ip_ & mask), prefix,
                       shared_.ip_interface, r.error()),
           began);
    co_return false;
  }
  record(Step::Dhcp, StepOutcome::Ok, std::move(detail), began);

  FetchSettings fs;
  fs.transport = opt.transport;
  fs.timeout = opt.fetch_timeout;
  fs.tftp_windowsize = opt.tftp_windowsize;
  fs.user_agent = user_agent_for(opt.model, opt.load);
  files_ = std::make_unique<FileClient>(shared_.io.get_executor(), ip_, tftp_servers_, fs);
  co_return true;
}

// ---------------------------------------------------------------------------- steps 5-7: files

asio::awaitable<bool> Phone::step_files() {
  const std::string hex = mac_.to_hex_upper();
  const std::string servers = join_addresses(tftp_servers_);
  // Steps 5 and 6: a non-secure site answers "not found", which is what we expect.
  const std::pair<Step, std::string> trust_files[] = {{Step::CtlFile, "CTLSEP" + hex + ".tlv"},
                                                      {Step::ItlFile, "ITLSEP" + hex + ".tlv"},
                                                      {Step::ItlFile, "ITLFile.tlv"}};
  for (const auto& [step, name] : trust_files) {
    if (out_of_time(step)) co_return false;
    const auto began = Clock::now();
    FetchResult r = co_await fetch_required(name);
    switch (r.status) {
      case FetchStatus::NotFound:
        record(step, StepOutcome::Expected, fmt::format("{} not found via {} (non-secure site)", name, r.via), began);
        break;
      case FetchStatus::Ok:
        record(step, StepOutcome::Ok, fmt::format("{} ({} bytes) via {}: secure site", name, r.body.size(), r.via),
               began);
        break;
      case FetchStatus::Error:
        record(step, StepOutcome::Missing, fmt::format("{}: {} via {}", name, r.detail, r.via), began);
        break;
      case FetchStatus::Unreachable:
        record(
            step, StepOutcome::Failed,
            fmt::format("{}: no provisioning server answers ({}) over HTTP 6970 or TFTP: {}", name, servers, r.detail),
            began);
        co_return false;
    }
  }

  if (out_of_time(Step::ConfigFile)) co_return false;
  auto began = Clock::now();
  std::string name = mac_.sep_name() + ".cnf.xml";
  FetchResult r = co_await fetch_required(name);
  if (r.status == FetchStatus::NotFound) {
    record(Step::ConfigFile, StepOutcome::Missing,
           fmt::format("{} not found via {}: phone not in the site file; trying XMLDefault.cnf.xml", name, r.via),
           began);
    began = Clock::now();
    name = "XMLDefault.cnf.xml";
    r = co_await fetch_required(name);
  }
  if (r.status != FetchStatus::Ok) {
    record(Step::ConfigFile, StepOutcome::Failed,
           r.status == FetchStatus::NotFound
               ? fmt::format("neither {}.cnf.xml nor XMLDefault.cnf.xml on the provisioning server ({})",
                             mac_.sep_name(), r.via)
               : fmt::format("{}: {} ({})", name, r.detail, r.via),
           began);
    co_return false;
  }
  auto parsed = parse_phone_config(r.body);
  if (!parsed) {
    record(Step::ConfigFile, StepOutcome::Failed, fmt::format("{} is not a usable config: {}", name, parsed.error()),
           began);
    co_return false;
  }
  config_ = std::move(parsed.value());
  result_.config_file = name;
  record(Step::ConfigFile, StepOutcome::Ok,
         fmt::format("{} ({} bytes) via {}: {} call manager(s), {} line(s), load {}", name, r.body.size(), r.via,
                     config_.call_managers.size(), config_.lines.size(),
                     config_.load_information.empty() ? "not named" : config_.load_information),
         began);
  co_return true;
}

// ------------------------------------------------------------------------------ step 8: the load

asio::awaitable<bool> Phone::step_load() {
  if (out_of_time(Step::FirmwareLoad)) co_return false;
  const auto began = Clock::now();
  const std::string& wanted = config_.load_information;
  const std::string own = shared_.options.load.empty() ? wanted : shared_.options.load;
  result_.active_load = own;
  if (wanted.empty()) {
    record(Step::FirmwareLoad, StepOutcome::Ok,
           fmt::format("config names no load; keeps {}", own.empty() ? "its own" : own), began);
    co_return true;
  }
  if (wanted == own) {
    record(Step::FirmwareLoad, StepOutcome::Ok, fmt::format("already running {}", own), began);
    co_return true;
  }
  const std::string loads = wanted + ".loads";
  FetchResult r = co_await fetch_required(loads);
  if (r.status != FetchStatus::Ok) {
    record(Step::FirmwareLoad, StepOutcome::Failed,
           r.status == FetchStatus::NotFound
               ? fmt::format("{} not found via {}: load {} is not on the provisioning server (phone runs {})", loads,
                             r.via, wanted, own)
               : fmt::format("{}: {} ({})", loads, r.detail, r.via),
           began);
    co_return false;
  }
  const auto names = parse_loads_file(r.body);
  std::size_t bytes = r.body.size();
  for (const auto& file : names) {
    if (out_of_time(Step::FirmwareLoad)) co_return false;
    FetchResult part = co_await fetch_required(file);
    if (part.status != FetchStatus::Ok) {
      record(Step::FirmwareLoad, StepOutcome::Failed,
             fmt::format("{} (listed in {}): {} via {}", file, loads,
                         part.status == FetchStatus::NotFound ? std::string("not found") : part.detail, part.via),
             began);
      co_return false;
    }
    bytes += part.body.size();
  }
  result_.inactive_load = own;
  result_.active_load = wanted;
  record(Step::FirmwareLoad, StepOutcome::Ok,
         fmt::format("upgraded {} -> {}: {} and {} listed file(s), {} bytes (reboot not simulated)",
                     own.empty() ? "?" : own, wanted, loads, names.size(), bytes),
         began);
  co_return true;
}

asio::awaitable<void> Phone::step_optional(Step step, std::string name, std::string what) {
  const auto began = Clock::now();
  FetchResult r = co_await files_->fetch(name);
  switch (r.status) {
    case FetchStatus::Ok:
      record(step, StepOutcome::Ok, fmt::format("{} ({} bytes) via {}", name, r.body.size(), r.via), began);
      break;
    case FetchStatus::NotFound:
      record(step, StepOutcome::Missing, fmt::format("{} ({}) not found via {}", name, what, r.via), began);
      break;
    case FetchStatus::Error:
    case FetchStatus::Unreachable:
      record(step, StepOutcome::Missing, fmt::format("{} ({}): {} via {}", name, what, r.detail, r.via), began);
      break;
  }
}

// ------------------------------------------------------------------------ steps 10-11: register

asio::awaitable<std::pair<Phone::RegisterOutcome, std::string>> Phone::register_line(LineState& line,
                                                                                     const CallManagerEntry& cm,
                                                                                     std::uint32_t cm_host) {
  const auto& opt = shared_.options;
  const std::string host = ipv4_to_string(cm_host);
  const std::string uri = cm.sip_port == 5060 ? "sip:" + host : fmt::format("sip:{}:{}", host, cm.sip_port);
  int challenges = 0;
  for (;;) {
    RegisterParams p;
    p.registrar_host = host;
    p.registrar_port = cm.sip_port;
    p.user = line.name;
    p.local_ip = result_.ip;
    p.local_port = sip_->local_port();
    p.mac = mac_;
    p.model = opt.model;
    p.model_code = cisco_model_code(opt.model);
    p.user_agent = user_agent_for(opt.model, result_.active_load);
    p.contact_user = contact_user_;
    p.call_id = line.call_id;
    p.from_tag = line.from_tag;
    p.branch = "z9hG4bK" + random_hex(8);
    p.cseq = ++line.cseq;
    p.expires_s = line.expires_s;
    p.active_load = result_.active_load;
    p.inactive_load = result_.inactive_load;
    if (line.challenge && !line.auth_name.empty()) {
      DigestInput in{line.auth_name, line.auth_password, "REGISTER", uri, cnonce(), ++line.nonce_count};
      p.authorization = authorization_value(*line.challenge, in);
    }
    auto response = co_await sip_->transact(build_register(p), line.call_id, p.cseq, "REGISTER", opt.sip_timeout);
    if (!response)
      co_return std::pair{RegisterOutcome::Unreachable, fmt::format("{}:{}: {}", host, cm.sip_port, response.error())};
    const SipResponse& r = *response;
    if (r.status >= 200 && r.status < 300) {
      std::uint32_t granted = line.expires_s;
      if (!r.contact_expires.empty()) {
        auto v = sip::parse_uint(r.contact_expires);
        if (v && *v > 0) granted = *v;
      }
      line.expires_s = granted;
      co_return std::pair{RegisterOutcome::Registered, fmt::format("{} registered with {}:{} over TCP (expires {} s)",
                                                                   line.name, host, cm.sip_port, granted)};
    }
    if ((r.status == 401 || r.status == 407) && challenges < 2) {
      auto c = parse_digest_challenge(r.www_authenticate);
      if (!c) {
        co_return std::pair{RegisterOutcome::Rejected, fmt::format("{} {} for {} with an unusable challenge: {}",
                                                                   r.status, r.reason, line.name, c.error())};
      }
      if (line.auth_name.empty()) {
        co_return std::pair{
            RegisterOutcome::Rejected,
            fmt::format("{} {} for {}: the config has no authName/authPassword for it", r.status, r.reason, line.name)};
      }
      // A second challenge is only normal when our answer used a stale nonce.
      if (challenges == 1 && !c->stale) {
        co_return std::pair{RegisterOutcome::Rejected,
                            fmt::format("{} {} again for {} after a digest answer with authName {}: credentials "
                                        "refused",
                                        r.status, r.reason, line.name, line.auth_name)};
      }
      line.challenge = std::move(c.value());
      line.nonce_count = 0;
      ++challenges;
      continue;
    }
    std::string why = fmt::format("{} {} for {}", r.status, r.reason, line.name);
    if (r.status == 403)
      why += fmt::format(" (authName {}): the registrar refused the config's credentials", line.auth_name);
    if (r.status == 404) {
      why += result_.config_file == "XMLDefault.cnf.xml"
                 ? fmt::format(": no line in XMLDefault.cnf.xml, {} is not in the site file", mac_.sep_name())
                 : ": the registrar does not know this line";
    }
    co_return std::pair{RegisterOutcome::Rejected, why};
  }
}

asio::awaitable<std::pair<Phone::RegisterOutcome, std::string>> Phone::register_all(const CallManagerEntry& cm,
                                                                                    std::uint32_t cm_host) {
  std::string details;
  for (auto& line : lines_) {
    auto [outcome, detail] = co_await register_line(line, cm, cm_host);
    if (outcome != RegisterOutcome::Registered) co_return std::pair{outcome, detail};
    if (!details.empty()) details += "; ";
    details += detail;
  }
  co_return std::pair{RegisterOutcome::Registered, details};
}

asio::awaitable<bool> Phone::step_register() {
  if (out_of_time(Step::CallManagerConnect)) co_return false;
  const auto& opt = shared_.options;
  auto began = Clock::now();
  if (config_.call_managers.empty()) {
    record(Step::CallManagerConnect, StepOutcome::Failed,
           fmt::format("{} names no call manager (callManagerGroup/members is empty)", result_.config_file), began);
    co_return false;
  }
  // The lines to register; a phone with no line (XMLDefault) still presents itself by device name.
  contact_user_ =
      fmt::format("{}-{}-4{}-{}-{}", random_hex(8), random_hex(4), random_hex(3), random_hex(4), random_hex(12));
  const std::string mac_lower = [&] {
    std::string s = mac_.to_hex_upper();
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }();
  const std::uint32_t default_expires = static_cast<std::uint32_t>(
      config_.register_expires_s.value_or(3600) > 0 ? config_.register_expires_s.value_or(3600) : 3600);
  auto make_line = [&](std::string name, std::string auth, std::string password) {
    LineState l;
    l.name = std::move(name);
    l.auth_name = std::move(auth);
    l.auth_password = std::move(password);
    l.call_id = fmt::format("{}-{}-{}@{}", mac_lower.substr(0, 8), random_hex(8), random_hex(8), result_.ip);
    l.from_tag = mac_lower + random_hex(12);
    l.cseq = static_cast<std::uint32_t>(100 + shared_.rng() % 100);
    l.expires_s = default_expires;
    return l;
  };
  lines_.clear();
  for (const auto& line : config_.lines) {
    lines_.push_back(make_line(line.name, line.auth_name.empty() ? line.name : line.auth_name, line.auth_password));
  }
  if (lines_.empty()) lines_.push_back(make_line(mac_.sep_name(), "", ""));

  std::string tried;
  auto note = [&](const std::string& what) {
    if (!tried.empty()) tried += "; ";
    tried += what;
  };
  sip_ = std::make_unique<SipConnection>(shared_.io.get_executor(), ip_);
  sip_->on_request([this](std::string message) { on_sip_request(std::move(message)); });
  bool connected_once = false;
  // Rounds over the group by priority; between rounds a pause, until the boot deadline (a
  // registrar restarting comes back, as it does for real phones).
  for (int round = 1;; ++round) {
    tried.clear();
    int usable = 0;
    for (const auto& cm : config_.call_managers) {
      if (out_of_time(connected_once ? Step::Register : Step::CallManagerConnect)) co_return false;
      const auto host = parse_ipv4(cm.host);
      if (!host) {
        note(fmt::format("{} ({}): host names are not resolved by the simulator", cm.name, cm.host));
        continue;
      }
      ++usable;
      began = Clock::now();
      const std::string where =
          fmt::format("{} {}:{}", cm.name.empty() ? "call manager" : cm.name, cm.host, cm.sip_port);
      const std::string error = co_await sip_->connect(*host, cm.sip_port, opt.sip_timeout);
      if (!error.empty()) {
        note(where + ": " + error);
        continue;
      }
      record(Step::CallManagerConnect, StepOutcome::Ok,
             fmt::format("TCP to {} (priority {}) from {}:{}{}", where, cm.priority, result_.ip, sip_->local_port(),
                         tried.empty() ? "" : " after " + tried),
             began);
      connected_once = true;
      began = Clock::now();
      auto [outcome, detail] = co_await register_all(cm, *host);
      if (outcome == RegisterOutcome::Registered) {
        result_.registered = true;
        result_.registered_with = fmt::format("{}:{}", cm.host, cm.sip_port);
        result_.time_to_registered = ms_since(start_);
        for (const auto& l : lines_) result_.lines.push_back(l.name);
        registered_cm_ = cm;
        registered_cm_host_ = *host;
        record(Step::Register, StepOutcome::Ok, detail, began);
        co_return true;
      }
      if (outcome == RegisterOutcome::Rejected) {
        record(Step::Register, StepOutcome::Failed, detail, began);
        co_return false;
      }
      // No answer from this call manager: the next by priority, as a real phone does.
      note(where + ": " + detail);
      sip_->close();
    }
    if (usable == 0 || Clock::now() + kRetryPause >= deadline_) {
      if (round > 1) tried += fmt::format(" ({} rounds)", round);
      break;
    }
    co_await sleep_until(Clock::now() + kRetryPause);
  }
  if (!connected_once) {
    record(Step::CallManagerConnect, StepOutcome::Failed, "no call manager reachable: " + tried, began);
  } else {
    record(Step::Register, StepOutcome::Failed, "no call manager answered the REGISTER: " + tried, began);
  }
  co_return false;
}

// ---------------------------------------------------------------------------- steps 12-14

asio::awaitable<void> Phone::steps_after_registration() {
  const auto& model = shared_.options.model;
  if (config_.user_locale.empty()) {
    record(Step::Locale, StepOutcome::Skipped, "config names no userLocale", Clock::now());
  } else {
    co_await step_optional(Step::Locale, config_.user_locale + "/" + locale_jar_for(model), "user locale");
  }
  if (!config_.network_locale.empty()) {
    co_await step_optional(Step::Locale, config_.network_locale + "/g3-tones.xml", "network locale");
  }
  if (config_.softkey_file.empty()) {
    record(Step::Softkeys, StepOutcome::Skipped, "config names no softKeyFile", Clock::now());
  } else {
    co_await step_optional(Step::Softkeys, config_.softkey_file, "softkeys");
  }
  co_await step_optional(Step::Ringtones, ring_list_for(model), "ring list");
  co_await step_optional(Step::Ringtones, "DistinctiveRingList.xml", "distinctive ring list");
}

// ----------------------------------------------------------------------------------- refresh

asio::awaitable<bool> Phone::refresh_registration() {
  const auto& opt = shared_.options;
  if (registered_cm_ && sip_->is_open()) {
    auto [outcome, detail] = co_await register_all(*registered_cm_, registered_cm_host_);
    if (outcome == RegisterOutcome::Registered) co_return true;
    if (outcome == RegisterOutcome::Unreachable) sip_->close();
  }
  // The connection broke (a daemon restart): reconnect by priority and register again.
  for (const auto& cm : config_.call_managers) {
    if (shared_.stopping) break;
    const auto host = parse_ipv4(cm.host);
    if (!host) continue;
    if (!(co_await sip_->connect(*host, cm.sip_port, opt.sip_timeout)).empty()) continue;
    for (auto& l : lines_) l.challenge.reset();  // a restarted registrar will not know our nonce
    auto [outcome, detail] = co_await register_all(cm, *host);
    if (outcome == RegisterOutcome::Registered) {
      registered_cm_ = cm;
      registered_cm_host_ = *host;
      result_.registered_with = fmt::format("{}:{}", cm.host, cm.sip_port);
      co_return true;
    }
    sip_->close();
  }
  co_return false;
}

// RFC 2131 RENEWING, sent like REBINDING (broadcast, ciaddr set): the raw link has no ARP.
asio::awaitable<bool> Phone::renew_lease() {
  DhcpClientMessage msg;
  msg.type = DhcpMessageType::Request;
  msg.mac = mac_;
  msg.xid = static_cast<std::uint32_t>(shared_.rng());
  msg.broadcast = false;
  msg.ciaddr = ip_;
  msg.vendor_class = vendor_class_for(shared_.options.model);
  msg.hostname = mac_.sep_name();
  dhcp_inbox_.clear();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  auto next_send = Clock::now();
  while (Clock::now() < deadline && !shared_.stopping) {
    if (Clock::now() >= next_send) {
      shared_.ip_link->send(encode_dhcp_frame(msg));
      next_send = Clock::now() + std::chrono::seconds(3);
    }
    for (const auto& m : dhcp_inbox_) {
      if (m.xid != msg.xid) continue;
      if (m.type == DhcpMessageType::Ack && m.yiaddr == ip_) {
        lease_s_ = m.lease_time_s.value_or(lease_s_);
        leased_at_ = Clock::now();
        co_return true;
      }
      if (m.type == DhcpMessageType::Nak) co_return false;
    }
    dhcp_inbox_.clear();
    co_await wait_until(std::min(next_send, deadline));
  }
  co_return false;
}

asio::awaitable<void> Phone::keep_registered() {
  const auto& opt = shared_.options;
  std::uint32_t expires = 3600;
  for (const auto& l : lines_) expires = std::min(expires, l.expires_s);
  const Clock::duration interval = opt.refresh.count() > 0
                                       ? Clock::duration(opt.refresh)
                                       : Clock::duration(seconds(std::max<std::uint32_t>(expires / 2, 1)));
  auto next_refresh = Clock::now() + interval;
  // Renew at T1 (half the lease), as a phone does, so a long hold keeps its address.
  auto renew_due = [&] {
    return lease_s_ > 0 ? leased_at_ + seconds(std::max<std::uint32_t>(lease_s_ / 2, 1)) : Clock::time_point::max();
  };
  while (!shared_.stopping) {
    const auto next = std::min(next_refresh, renew_due());
    while (!shared_.stopping && Clock::now() < next && control_action_.empty()) co_await wait_until(next);
    if (shared_.stopping) break;
    if (!control_action_.empty()) {
      co_await carry_out_control();
      next_refresh = Clock::now() + interval;
      continue;
    }
    if (Clock::now() >= renew_due()) {
      if (co_await renew_lease()) {
        ++result_.lease_renewed;
      } else {
        ++result_.lease_renew_failed;
        leased_at_ = Clock::now() - seconds(lease_s_ / 2) + seconds(30);  // try again in 30 s
      }
    }
    if (Clock::now() >= next_refresh && !shared_.stopping) {
      const bool ok = co_await refresh_registration();
      if (ok)
        ++result_.refresh_ok;
      else
        ++result_.refresh_failed;
      result_.registered_at_end = ok;
      next_refresh = Clock::now() + interval;
    }
  }
}

}  // namespace ve::phonesim::detail
