// The boot recorder's bookkeeping. Costs are charged per stored packet (data + overhead) so a
// flood of tiny frames is bounded as well as a large download.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "diag/diag.hpp"

namespace ve::diag {

namespace {
constexpr std::size_t kPacketOverhead = 64;  // Packet struct, deque slot, interface name
constexpr auto kRegisteredGrace = std::chrono::milliseconds(200);
constexpr std::size_t kPackedOverhead = 64;  // the record's packed buffer and count

// Packed form: per packet, time (int64 system_clock ticks), original length (u32), interface
// name (u16 length + bytes), data (u32 length + bytes), host byte order (never leaves memory).
template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get(std::string_view& in) {
  if (in.size() < sizeof(T)) throw std::runtime_error("packed boot truncated");
  T v;
  std::memcpy(&v, in.data(), sizeof v);
  in.remove_prefix(sizeof v);
  return v;
}

std::string serialize(const std::deque<Packet>& packets) {
  std::string out;
  for (const auto& p : packets) {
    put<std::int64_t>(out, p.time.time_since_epoch().count());
    put<std::uint32_t>(out, p.original_length);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(p.interface.size()));
    out.append(p.interface);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(p.data.size()));
    out.append(reinterpret_cast<const char*>(p.data.data()), p.data.size());
  }
  return out;
}

std::deque<Packet> deserialize(std::string_view in) {
  std::deque<Packet> out;
  while (!in.empty()) {
    Packet p;
    p.time = std::chrono::system_clock::time_point(std::chrono::system_clock::duration(get<std::int64_t>(in)));
    p.original_length = get<std::uint32_t>(in);
    const auto name = get<std::uint16_t>(in);
    if (in.size() < name) throw std::runtime_error("packed boot truncated");
    p.interface.assign(in.substr(0, name));
    in.remove_prefix(name);
    const auto size = get<std::uint32_t>(in);
    if (in.size() < size) throw std::runtime_error("packed boot truncated");
    p.data.assign(in.begin(), in.begin() + size);
    in.remove_prefix(size);
    out.push_back(std::move(p));
  }
  return out;
}

// zlib at its fastest level: the storm's daemon thread pays for it, and level 1 already keeps
// a boot's frames in about a quarter of their size. The raw size goes first (for inflate).
std::string deflate_bytes(const std::string& raw) {
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string out(sizeof(std::uint64_t) + size, '\0');
  const std::uint64_t raw_size = raw.size();
  std::memcpy(out.data(), &raw_size, sizeof raw_size);
  if (compress2(reinterpret_cast<Bytef*>(out.data() + sizeof raw_size), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()), 1) != Z_OK)
    throw std::runtime_error("deflate failed");
  out.resize(sizeof raw_size + size);
  out.shrink_to_fit();
  return out;
}

std::string inflate_bytes(const std::string& packed) {
  std::uint64_t raw_size = 0;
  if (packed.size() < sizeof raw_size) throw std::runtime_error("packed boot truncated");
  std::memcpy(&raw_size, packed.data(), sizeof raw_size);
  std::string raw(raw_size, '\0');
  uLongf size = static_cast<uLongf>(raw_size);
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                 reinterpret_cast<const Bytef*>(packed.data() + sizeof raw_size),
                 static_cast<uLong>(packed.size() - sizeof raw_size)) != Z_OK ||
      size != raw_size)
    throw std::runtime_error("inflate failed");
  return raw;
}
}  // namespace

std::vector<Packet> BootRecord::all_packets() const {
  if (!is_packed()) return {packets.begin(), packets.end()};
  auto unpacked = deserialize(inflate_bytes(packed));
  return {std::make_move_iterator(unpacked.begin()), std::make_move_iterator(unpacked.end())};
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
  for (auto& [mac, r] : boots_) {
    unindex(r);
    trim_phone(r);
    reindex(r);
  }
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
  if (it == boots_.end() || it->second.registered_at.time_since_epoch().count() != 0) return;
  it->second.registered_at = now;
  // A boot with a failed step stays Failed (kept longer, written to the state dir).
  if (it->second.state != BootState::Booting) return;
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
  // A failed boot keeps recording: what the phone does next (retries, fallbacks) is part of it,
  // until it registers.
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

std::size_t BootRecorder::pack_settled(std::chrono::system_clock::time_point now) {
  std::size_t packed = 0;
  for (auto& [mac, r] : boots_) {
    if (r.registered_at.time_since_epoch().count() == 0 || r.is_packed() || r.packets.empty() ||
        now <= r.registered_at + kRegisteredGrace)
      continue;
    unindex(r);
    pack(r);
    reindex(r);
    ++packed;
  }
  return packed;
}

void BootRecorder::pack(BootRecord& r) {
  std::string packed = deflate_bytes(serialize(r.packets));
  total_ -= r.bytes;
  r.packed_packets = r.packets.size();
  r.packed = std::move(packed);
  std::deque<Packet>().swap(r.packets);  // clear() would keep the deque's map
  r.bytes = r.packed.size() + kPackedOverhead;
  total_ += r.bytes;
}

void BootRecorder::unpack(BootRecord& r) {
  auto packets = deserialize(inflate_bytes(r.packed));
  total_ -= r.bytes;
  r.packets = std::move(packets);
  r.packed.clear();
  r.packed.shrink_to_fit();
  r.packed_packets = 0;
  r.bytes = 0;
  for (const auto& p : r.packets) r.bytes += stored_size(p);
  total_ += r.bytes;
}

std::size_t BootRecorder::count(BootState s) const {
  return static_cast<std::size_t>(
      std::count_if(boots_.begin(), boots_.end(), [s](const auto& b) { return b.second.state == s; }));
}

std::size_t BootRecorder::packed_boots() const {
  return static_cast<std::size_t>(
      std::count_if(boots_.begin(), boots_.end(), [](const auto& b) { return b.second.is_packed(); }));
}

bool BootRecorder::booting(const MacAddress& mac) const {
  auto it = boots_.find(mac);
  return it != boots_.end() && it->second.state == BootState::Booting;
}

void BootRecorder::add(const MacAddress& mac, const Packet& p) {
  auto it = boots_.find(mac);
  if (it == boots_.end()) return;
  BootRecord& r = it->second;
  // Frames reach us in batches (the capture ring hands over a block at a time), so the
  // registration's own frames (the 200 OK goes out just after the event) may come after it: what
  // was captured by then, or within kRegisteredGrace of it, is the boot's.
  if (r.registered_at.time_since_epoch().count() != 0 && p.time > r.registered_at + kRegisteredGrace) return;
  const std::size_t cost = stored_size(p);
  if (cost > limits_.per_phone_bytes) {  // cannot fit even alone
    ++r.cut;
    ++cut_total_;
    return;
  }
  unindex(r);
  if (r.is_packed()) unpack(r);  // a frame later than the packing: rare, repacked next time
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
  if (r.bytes > limits_.per_phone_bytes && r.is_packed()) unpack(r);
  while (r.bytes > limits_.per_phone_bytes && !r.packets.empty()) drop_front(r);
}

void BootRecorder::trim_total() {
  while (total_ > limits_.total_bytes && !index_.empty()) {
    const auto victim = *index_.rbegin();
    index_.erase(std::prev(index_.end()));
    auto& r = boots_.at(std::get<2>(victim));
    unindex(r);
    if (r.is_packed()) unpack(r);  // cut packet by packet, oldest first, like any other
    if (!r.packets.empty()) drop_front(r);
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
