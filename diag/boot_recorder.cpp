// The boot recorder's bookkeeping. Costs are charged per stored packet (data + overhead) so a
// flood of tiny frames is bounded as well as a large download.
#include "diag/diag.hpp"

namespace ve::diag {

namespace {
constexpr std::size_t kPacketOverhead = 64;  // Packet struct, deque slot, interface name
}

std::string_view to_string(BootState s) {
  switch (s) {
    case BootState::Booting: return "booting";
    case BootState::Registered: return "registered";
    case BootState::Failed: return "failed";
  }
  return "?";
}

std::size_t stored_size(const Packet& p) { return p.data.size() + kPacketOverhead; }

BootRecorder::BootRecorder(RecorderLimits limits) : limits_(limits) {}

BootRecorder::Rank BootRecorder::rank(const BootRecord& r) {
  return {r.state == BootState::Registered ? 1 : 0, r.bytes, r.mac};
}

void BootRecorder::set_limits(const RecorderLimits& limits) {
  limits_ = limits;
  for (auto& [mac, r] : boots_) trim_phone(r);
  trim_total();
}

void BootRecorder::begin_boot(const MacAddress& mac, std::chrono::system_clock::time_point now) {
  auto it = boots_.find(mac);
  if (it != boots_.end()) {
    unindex(it->second);
    total_ -= it->second.bytes;
    boots_.erase(it);
  }
  BootRecord r;
  r.mac = mac;
  r.started = now;
  r.started_steady = std::chrono::steady_clock::now();
  auto& stored = boots_.emplace(mac, std::move(r)).first->second;
  reindex(stored);
}

void BootRecorder::registered(const MacAddress& mac, std::chrono::system_clock::time_point now) {
  auto it = boots_.find(mac);
  if (it == boots_.end() || it->second.state != BootState::Booting) return;
  unindex(it->second);
  it->second.state = BootState::Registered;
  it->second.ended = now;
  reindex(it->second);
}

void BootRecorder::failed(const MacAddress& mac, const std::string& why, std::chrono::system_clock::time_point now) {
  auto it = boots_.find(mac);
  if (it == boots_.end()) return;
  BootRecord& r = it->second;
  if (r.state == BootState::Registered) return;
  // A failed boot keeps recording: what the phone does next (retries, fallbacks) is part of it.
  if (r.failure.empty()) r.failure = why;
  if (r.state == BootState::Booting) {
    r.state = BootState::Failed;
    r.ended = now;
  }
  r.persisted = false;
}

std::vector<MacAddress> BootRecorder::expire(std::chrono::steady_clock::time_point now) {
  std::vector<MacAddress> out;
  for (auto& [mac, r] : boots_) {
    if (r.state == BootState::Booting && now - r.started_steady >= limits_.boot_timeout) {
      r.state = BootState::Failed;
      r.failure = "not registered " + std::to_string(limits_.boot_timeout.count()) + " s after the boot began";
      r.ended = std::chrono::system_clock::now();
      r.persisted = false;
      out.push_back(mac);
    }
  }
  return out;
}

bool BootRecorder::booting(const MacAddress& mac) const {
  auto it = boots_.find(mac);
  return it != boots_.end() && it->second.state == BootState::Booting;
}

void BootRecorder::add(const MacAddress& mac, const Packet& p) {
  auto it = boots_.find(mac);
  if (it == boots_.end() || it->second.state == BootState::Registered) return;
  BootRecord& r = it->second;
  const std::size_t cost = stored_size(p);
  if (cost > limits_.per_phone_bytes) {  // cannot fit even alone
    ++r.cut;
    ++cut_total_;
    return;
  }
  unindex(r);
  r.packets.push_back(p);
  r.bytes += cost;
  total_ += cost;
  ++r.recorded;
  if (r.state == BootState::Failed) r.persisted = false;
  trim_phone(r);
  reindex(r);
  trim_total();
}

void BootRecorder::drop_front(BootRecord& r) {
  const std::size_t cost = stored_size(r.packets.front());
  r.packets.pop_front();
  r.bytes -= cost;
  total_ -= cost;
  ++r.cut;
  ++cut_total_;
}

void BootRecorder::trim_phone(BootRecord& r) {
  while (r.bytes > limits_.per_phone_bytes && !r.packets.empty()) drop_front(r);
}

void BootRecorder::trim_total() {
  while (total_ > limits_.total_bytes && !index_.empty()) {
    const auto victim = *index_.rbegin();
    auto& r = boots_.at(std::get<2>(victim));
    unindex(r);
    drop_front(r);
    reindex(r);
  }
}

const BootRecord* BootRecorder::find(const MacAddress& mac) const {
  auto it = boots_.find(mac);
  return it == boots_.end() ? nullptr : &it->second;
}

void BootRecorder::mark_persisted(const MacAddress& mac) {
  auto it = boots_.find(mac);
  if (it != boots_.end()) it->second.persisted = true;
}

std::vector<MacAddress> BootRecorder::failed_unpersisted() const {
  std::vector<MacAddress> out;
  for (const auto& [mac, r] : boots_)
    if (r.state == BootState::Failed && !r.persisted) out.push_back(mac);
  return out;
}

}  // namespace ve::diag
