#include <fmt/format.h>

#include "provision/internal.hpp"

namespace ve::provision {

namespace {
constexpr std::size_t kMaxLearned = 4096;
}

Activity::Activity(EventSink& events, MacLookup mac_for_ip, std::size_t recent_capacity)
    : events_(events), mac_for_ip_(std::move(mac_for_ip)), recent_capacity_(recent_capacity) {}

std::optional<MacAddress> Activity::identify(const std::string& ip, std::string_view filename) {
  if (auto mac = mac_in_name(filename)) {
    std::lock_guard lock(mutex_);
    if (learned_.size() >= kMaxLearned && !learned_.contains(ip)) learned_.clear();
    learned_[ip] = *mac;
    return mac;
  }
  {
    std::lock_guard lock(mutex_);
    if (auto it = learned_.find(ip); it != learned_.end()) return it->second;
  }
  if (mac_for_ip_) return mac_for_ip_(ip);
  return std::nullopt;
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
  e.ip = r.client_ip;
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

}  // namespace ve::provision
