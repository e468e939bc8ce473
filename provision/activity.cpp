#include <algorithm>

#include <fmt/format.h>

#include "provision/internal.hpp"
#include "ve/log.hpp"

namespace ve::provision {

namespace {
constexpr std::size_t kMaxLearned = 4096;
}

Activity::Activity(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity)
    : events_(events), mac_for_ip_(std::move(mac_for_ip)), recent_capacity_(recent_capacity) {}

Requester Activity::requester(const config::SiteConfig& site, const std::string& ip) const {
  Requester who;
  if (mac_for_ip_) who.lease_mac = mac_for_ip_(ip);
  if (const auto addr = config::Ipv4::parse(ip)) {
    for (const auto& phone : site.phones) {
      if (phone.ip && *phone.ip == *addr) {
        who.bound = &phone;
        break;
      }
    }
  }
  return who;
}

Gate Activity::gate(const config::SiteConfig& site, const Requester& who, std::string_view filename) {
  const auto owner = config_owner(filename);
  if (site.provisioning.config_access == config::ConfigAccess::Open) return Gate::Open;
  if (!owner) {
    // A phone asks for its CTL and ITL right after the DHCP ACK, often before Kea's lease report
    // reaches the daemon. Waiting briefly for the lease lets the timeline name the phone; the
    // answer ("not found" on a non-secure site) is the same either way.
    const auto step = classify(filename);
    const bool trust_list = step == Step::CtlFile || step == Step::ItlFile;
    return trust_list && !who.mac() ? Gate::Wait : Gate::Open;
  }
  if (who.lease_mac == owner || (who.bound != nullptr && who.bound->mac == *owner)) return Gate::Open;
  // The address is known to be someone else's: no point waiting.
  if (who.lease_mac || who.bound != nullptr) return Gate::Refuse;
  return Gate::Wait;
}

std::optional<MacAddress> Activity::identify(const config::SiteConfig& site, const Requester& who,
                                             const std::string& ip, std::string_view filename) {
  if (auto mac = who.mac()) return mac;
  // Without a lease the file name is the only clue, and anyone can type it: it counts only on a
  // site that chose `open`, and only for the site's own phones (no phantom phones from guesses).
  if (site.provisioning.config_access != config::ConfigAccess::Open) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (auto mac = mac_in_name(filename); mac && site.find_phone(*mac) != nullptr) {
    if (learned_.size() >= kMaxLearned && !learned_.contains(ip)) learned_.clear();
    learned_[ip] = *mac;
    return mac;
  }
  if (auto it = learned_.find(ip); it != learned_.end()) return it->second;
  return std::nullopt;
}

void Activity::config_refused(const config::SiteConfig& site, Protocol protocol, const MacAddress& owner,
                              const std::string& ip, const Requester& who, std::string_view file) {
  const auto now = std::chrono::steady_clock::now();
  const std::string holder = who.lease_mac ? "address leased to " + who.lease_mac->to_string()
                             : who.bound   ? "address bound to " + who.bound->mac.sep_name()
                                           : std::string("address without a lease");
  bool notify = false;
  std::uint64_t suppressed = 0;
  bool log_now = false;
  std::uint64_t unlogged = 0;
  {
    std::lock_guard lock(mutex_);
    ++(protocol == Protocol::Tftp ? counters_.tftp_config_refused : counters_.http_config_refused);
    if (site.find_phone(owner) != nullptr) {
      auto& n = notices_[owner];  // bounded by the site's phones
      if (n.last == std::chrono::steady_clock::time_point{} || now - n.last >= std::chrono::seconds(10)) {
        notify = true;
        suppressed = n.suppressed;
        n.suppressed = 0;
        n.last = now;
      } else {
        ++n.suppressed;
      }
    }
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
      log_now = true;
      unlogged = refusals_unlogged_;
      refusals_unlogged_ = 0;
      last_refusal_log_ = now;
    } else {
      ++refusals_unlogged_;
    }
  }
  if (log_now) {
    ve::logger("provision")
        ->warn("{} config {} refused to {} ({}){}", to_string(protocol), std::string(file.substr(0, kMaxRequestName)),
               ip, holder, unlogged ? fmt::format("; {} more refusals not logged", unlogged) : std::string());
  }
  if (!notify) return;
  PhoneEvent e;
  e.mac = owner;
  e.step = Step::ConfigFile;
  e.outcome = Outcome::Failed;
  e.history_only = true;  // the requester is not this phone: its steps and IP stay as they are
  e.detail = fmt::format("refused {} {} to {} ({}){}", to_string(protocol), file.substr(0, 64), ip, holder,
                         suppressed ? fmt::format("; {} more refusals before", suppressed) : std::string());
  events_.report(std::move(e));
}

void Activity::bump(std::uint64_t Counters::*field, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  counters_.*field += n;
}

void Activity::record(TransferRecord r) {
  {
    std::lock_guard lock(mutex_);
    const bool tftp = r.protocol == Protocol::Tftp;
    counters_.bytes_sent += r.bytes;
    if (r.result == "ok")
      ++(tftp ? counters_.tftp_ok : counters_.http_ok);
    else if (r.result == "not-found")
      ++(tftp ? counters_.tftp_not_found : counters_.http_not_found);
    else if (r.result == "refused")
      ++(tftp ? counters_.tftp_refused : counters_.http_refused);
    else if (r.result == "busy")
      ++(tftp ? counters_.tftp_busy : counters_.http_busy);
    else if (r.result == "config-refused")
      ;  // counted by config_refused()
    else
      ++(tftp ? counters_.tftp_failed : counters_.http_failed);
    recent_.push_back(r);
    while (recent_.size() > recent_capacity_) recent_.pop_front();
  }
  if (!r.mac || !r.step) return;
  PhoneEvent e;
  e.mac = *r.mac;
  e.step = *r.step;
  e.outcome = r.outcome;
  e.detail = fmt::format("{} {} {} {} B {} ms", to_string(r.protocol), r.file, r.result, r.bytes, r.duration.count());
  e.time = r.time;
  // Device Status' "Download Status" is about the firmware load the phone fetches (step 8).
  if (e.step == Step::FirmwareLoad)
    e.attributes.emplace_back(Fact::DownloadStatus,
                              r.outcome == Outcome::Ok
                                  ? fmt::format("{} downloaded over {} ({} B, {} ms)", r.file, to_string(r.protocol),
                                                r.bytes, r.duration.count())
                                  : fmt::format("{} over {} failed: {}", r.file, to_string(r.protocol), r.result));
  // Only an address the lease or the site file ties to this phone becomes its IP.
  if (r.verified) e.ip = r.client_ip;
  events_.report(std::move(e));
}

Counters Activity::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::vector<TransferRecord> Activity::recent() const {
  std::lock_guard lock(mutex_);
  return {recent_.begin(), recent_.end()};
}

LookupOutcome outcome_of(const LookupError& e, std::optional<Step> step) {
  if (e.kind == LookupError::Kind::Refused) return {Outcome::Failed, "refused"};
  if (e.expected) return {Outcome::Expected, "not-found"};
  // A phone that is not in the site file asks for its SEP file, then falls back to XMLDefault.
  if (step == Step::ConfigFile) return {Outcome::Info, "not-found"};
  return {Outcome::Failed, "not-found"};
}

Bytes NetasciiCache::get(const Bytes& source, Activity& activity) {
  const void* key = source.get();
  if (auto it = entries_.find(key); it != entries_.end()) {
    // The address may have been reused by another buffer: the source must be the same object.
    if (it->second.source.lock() == source) {
      if (auto converted = it->second.converted.lock()) return converted;
    }
    entries_.erase(it);
  }
  if (entries_.size() > 256) std::erase_if(entries_, [](const auto& kv) { return kv.second.converted.expired(); });
  // Size first (one cheap pass), so a copy over the budget is never made.
  const auto& bytes = *source;
  const std::size_t size =
      bytes.size() + static_cast<std::size_t>(std::count_if(bytes.begin(), bytes.end(), [](std::byte b) {
        return b == std::byte{'\n'} || b == std::byte{'\r'};
      }));
  if (live_->load() + size > budget_) return nullptr;
  auto copy = std::make_unique<const std::vector<std::byte>>(tftp::to_netascii({bytes.data(), bytes.size()}));
  *live_ += copy->size();
  // The deleter gives the budget back when the last transfer lets go.
  Bytes converted(copy.release(), [live = live_](const std::vector<std::byte>* v) {
    *live -= v->size();
    std::default_delete<const std::vector<std::byte>>()(v);
  });
  entries_[key] = Entry{source, converted};
  activity.bump(&Counters::netascii_conversions);
  return converted;
}

}  // namespace ve::provision
