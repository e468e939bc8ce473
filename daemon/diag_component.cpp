// Daemon glue for diag/: the capture hub on every interface the box shares with phones, the boot
// recorder fed from it and from phone events, live per-phone captures streamed over the control
// socket ("capture"), the per-phone problem report ("report"), "show.diag", and the two
// downloads on the status page (/phone/<MAC>/report.tar.gz, /phone/<MAC>/boot.pcapng).
#include <systemd/sd-journal.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include <boost/asio/steady_timer.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>

#include "daemon/control_stream.hpp"
#include "daemon/daemon_registry.hpp"
#include "diag/diag.hpp"
#include "provision/provision.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"
#include "ve/time_format.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;
namespace asio = boost::asio;
using Clock = std::chrono::system_clock;

constexpr std::size_t kMaxTrackedMacs = 20000;
constexpr std::size_t kMaxLiveCaptures = 16;
constexpr std::size_t kMaxKeptCaptures = 32;
constexpr std::size_t kMaxLogLines = 2000;
constexpr auto kHousekeeping = std::chrono::seconds(2);

std::string dotted(std::uint32_t ip) {
  return fmt::format("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

std::optional<std::uint32_t> parse_ip(const std::string& s) {
  auto ip = config::Ipv4::parse(s);
  if (!ip) return std::nullopt;
  return ip->value;
}

diag::RecorderLimits limits_from(const config::SiteConfig& c) {
  diag::RecorderLimits l;
  l.per_phone_bytes = static_cast<std::size_t>(c.diagnostics.boot_capture_per_phone_kib) * 1024;
  l.total_bytes = static_cast<std::size_t>(c.diagnostics.boot_capture_total_mib) * 1024 * 1024;
  l.boot_timeout = std::chrono::seconds(c.diagnostics.boot_timeout_s);
  return l;
}

std::vector<std::string> site_secrets(const config::SiteConfig& c) {
  std::vector<std::string> out;
  for (const auto& p : c.phones)
    for (const auto& l : p.lines)
      if (!l.password.empty()) out.push_back(l.password.reveal());
  // Longest first: a password that contains another is masked whole.
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Log lines into the ring (all loggers share the default logger's sinks).
class RingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit RingSink(std::shared_ptr<diag::LogRing> ring) : ring_(std::move(ring)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::string line(buf.data(), buf.size());
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    ring_->add(std::move(line));
  }
  void flush_() override {}

 private:
  std::shared_ptr<diag::LogRing> ring_;
};

// Under systemd: voiceedged's journal lines (Kea's are relayed into them) that name the phone,
// newest `limit`, scanning at most the last 200000 entries.
std::vector<std::string> journal_lines(const std::vector<std::string>& needles, std::size_t limit) {
  std::vector<std::string> out;
  sd_journal* j = nullptr;
  if (sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0) return out;
  sd_journal_add_match(j, "SYSLOG_IDENTIFIER=voiceedged", 0);
  sd_journal_seek_tail(j);
  std::size_t scanned = 0;
  while (out.size() < limit && scanned < 200000 && sd_journal_previous(j) > 0) {
    ++scanned;
    const void* data = nullptr;
    std::size_t length = 0;
    if (sd_journal_get_data(j, "MESSAGE", &data, &length) < 0) continue;
    std::string_view message(static_cast<const char*>(data), length);
    if (message.rfind("MESSAGE=", 0) == 0) message.remove_prefix(8);
    bool hit = false;
    for (const auto& n : needles) hit = hit || diag::mentions(message, n);
    if (!hit) continue;
    std::uint64_t usec = 0;
    sd_journal_get_realtime_usec(j, &usec);
    out.push_back(iso_time(Clock::time_point(std::chrono::microseconds(usec))) + " " + std::string(message));
  }
  sd_journal_close(j);
  std::reverse(out.begin(), out.end());
  return out;
}

// Keeps, in every array of objects of a command's answer, only the objects that mention the
// phone; everything else (counters, listeners) stays.
json only_about(const json& data, const std::vector<std::string>& needles) {
  std::function<bool(const json&)> mentions_any = [&](const json& j) -> bool {
    if (j.is_string()) {
      const auto s = j.get<std::string>();
      for (const auto& n : needles)
        if (diag::mentions(s, n)) return true;
      return false;
    }
    if (j.is_structured()) {
      for (const auto& v : j)
        if (mentions_any(v)) return true;
    }
    return false;
  };
  if (data.is_array()) {
    json out = json::array();
    for (const auto& v : data)
      if (mentions_any(v)) out.push_back(v);
    return out;
  }
  if (!data.is_object()) return data;
  json out = json::object();
  for (const auto& [k, v] : data.items()) {
    if (v.is_array() && !v.empty() && v.front().is_object())
      out[k] = only_about(v, needles);
    else
      out[k] = v;
  }
  return out;
}

std::string timeline_text(const json& j) {
  std::string out;
  const auto& ds = j.value("phone", json::object());
  out += fmt::format("Phone {}\n", ds.value("name", ""));
  for (const auto& [k, v] : ds.items())
    out += fmt::format("  {:<18} {}\n", k, v.is_string() ? v.get<std::string>() : v.dump());
  out += fmt::format(
      "\nFirst failing step: {}\n\nStep  Name                  Outcome   First                 Last                  "
      "Detail\n",
      j.value("reason", std::string("none")));
  for (const auto& s : j.value("steps", json::array())) {
    out += fmt::format("{:<5} {:<21} {:<9} {:<21} {:<21} {}\n", s.value("step", 0), s.value("name", ""),
                       s.value("outcome", "") == "" ? "-" : s.value("outcome", ""), s.value("first", ""),
                       s.value("last", ""), s.value("detail", ""));
  }
  out += "\nEvents (oldest first)\n";
  if (const auto dropped = j.value("history_dropped", std::uint64_t{0}); dropped > 0)
    out += fmt::format("({} older event(s) not kept)\n", dropped);
  for (const auto& e : j.value("history", json::array())) {
    out += fmt::format("{}  step {:>2} {:<20} {:<8} {}\n", e.value("time", ""), e.value("step", 0), e.value("name", ""),
                       e.value("outcome", ""), e.value("detail", ""));
  }
  return out;
}

struct LiveCapture {
  std::uint64_t id = 0;
  MacAddress mac;
  std::shared_ptr<ControlStream> stream;
  diag::PcapngWriter writer;
  std::uint64_t max_packets = 0;  // 0 = unlimited
  std::uint64_t packets = 0;
  std::uint64_t dropped = 0;
  std::uint64_t bytes = 0;
  Clock::time_point started;
  std::unique_ptr<asio::steady_timer> timer;
};

// The packets of one phone's most recent live capture (kept for its report).
struct KeptCapture {
  Clock::time_point started;
  std::deque<diag::Packet> packets;
  std::size_t bytes = 0;
  std::uint64_t cut = 0;
};

class DiagComponent final : public Component {
 public:
  explicit DiagComponent(Context& ctx)
      : ctx_(ctx),
        config_(ctx.config),
        recorder_(limits_from(*ctx.config)),
        hub_(ctx.io, [this](const std::string& iface, const diag::Packet& p) { on_packet(iface, p); }),
        housekeeping_(ctx.io),
        ring_(std::make_shared<diag::LogRing>()),
        sink_(std::make_shared<RingSink>(ring_)) {
    // Same line shape as the daemon's own log.
    sink_->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %n: %v");
    if (auto logger = spdlog::default_logger()) logger->sinks().push_back(sink_);
  }

  ~DiagComponent() override {
    if (auto logger = spdlog::default_logger()) {
      auto& sinks = logger->sinks();
      sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
  }

  std::string_view name() const override { return "diag"; }

  void start() override {
    hub_.set_interfaces(interfaces());
    own_macs_ = hub_.own_macs();
    arm_housekeeping();
    ve::logger("diag")->info("boot recorder on {} interface(s): {} KiB per phone, {} MiB in total",
                             hub_.status().size(), recorder_.limits().per_phone_bytes / 1024,
                             recorder_.limits().total_bytes / (1024 * 1024));
  }

  void reconfigure(const config::SiteConfigPtr& config) override {
    config_ = config;
    recorder_.set_limits(limits_from(*config));
    hub_.set_interfaces(interfaces());
  }

  void stop() override {
    persist_failed();
    for (auto& [id, c] : live_) {
      c.timer->cancel();
      c.stream->finish(summary(c, "daemon stopping"));
    }
    live_.clear();
    housekeeping_.cancel();
    hub_.stop();
  }

  // --- events ------------------------------------------------------------------------------

  void on_event(const PhoneEvent& e) {
    if (!e.ip.empty()) {
      if (auto ip = parse_ip(e.ip)) learn_ip(e.mac, *ip);
    }
    if (e.step == Step::Power && e.outcome == Outcome::Ok && !recorder_.booting(e.mac)) begin_boot(e.mac, e.time);
    if (e.step == Step::Register && e.outcome == Outcome::Ok) recorder_.registered(e.mac, e.time);
    if (e.outcome == Outcome::Failed) {
      recorder_.failed(e.mac, fmt::format("step {} ({}): {}", static_cast<int>(e.step), to_string(e.step), e.detail),
                       e.time);
    }
  }

  // A new boot replaces the phone's previous one in memory: a failed one not yet on disk goes
  // there first.
  void begin_boot(const MacAddress& mac, Clock::time_point when) {
    if (const auto* r = recorder_.find(mac); r && r->state == diag::BootState::Failed && !r->persisted)
      persist_failed();
    recorder_.begin_boot(mac, when);
  }

  // --- packets -----------------------------------------------------------------------------

  // Kernel rings (TPACKET_V3: the size asked for is the RSS, and holds that many bytes of
  // frames, in 256 KiB blocks): a port's phones boot one at a time, a subnet's interface sees
  // every boot of a storm at once. 4 MiB lost no frame of a 1000-phone storm (docs/benchmarks.md).
  static constexpr int kPortRingBytes = 512 * 1024;
  static constexpr int kSubnetRingBytes = 4 * 1024 * 1024;

  std::map<std::string, int> interfaces() const {
    std::map<std::string, int> out;
    for (const auto& p : config_->ports) out[p.name] = kPortRingBytes;
    for (const auto& s : config_->dhcp.subnets) {
      std::string where = ctx_.services.service_interface ? ctx_.services.service_interface(s) : s.interface;
      if (where.empty()) where = s.interface;
      if (!where.empty()) out[where] = kSubnetRingBytes;
    }
    return out;
  }

  bool is_port(const std::string& iface) const { return config_->find_port(iface) != nullptr; }

  void learn_ip(const MacAddress& mac, std::uint32_t ip) {
    if (ip == 0) return;
    auto old = mac_ip_.find(mac);
    if (old != mac_ip_.end() && old->second != ip) ip_mac_.erase(old->second);
    if (mac_ip_.size() >= kMaxTrackedMacs && old == mac_ip_.end()) return;
    mac_ip_[mac] = ip;
    ip_mac_[ip] = mac;
  }

  std::optional<MacAddress> mac_of(std::uint32_t ip) const {
    auto it = ip_mac_.find(ip);
    if (it == ip_mac_.end()) return std::nullopt;
    return it->second;
  }

  bool phone_mac(const MacAddress& m) const {
    return !m.is_zero() && !diag::is_multicast(m) && own_macs_.count(m) == 0;
  }

  void on_packet(const std::string& iface, const diag::Packet& p) {
    auto info = diag::classify_frame(p.data);
    if (!info) return;
    std::set<MacAddress> owners;
    if (phone_mac(info->source)) {
      owners.insert(info->source);
      if (is_port(iface)) {
        auto& on_port = port_phones_[iface];
        if (on_port.size() < kMaxTrackedMacs) on_port.insert(info->source);
      }
    }
    if (phone_mac(info->destination)) owners.insert(info->destination);
    if (info->arp) {
      if (phone_mac(info->arp_sender_mac)) owners.insert(info->arp_sender_mac);
      if (auto m = mac_of(info->arp_target_ip)) owners.insert(*m);
      if (auto m = mac_of(info->arp_sender_ip)) owners.insert(*m);
    }
    if (info->dhcp && phone_mac(info->dhcp->chaddr)) {
      owners.insert(info->dhcp->chaddr);
      // An ACK names the address the phone has from now on: its IP traffic follows.
      if (info->dhcp->op == 2 && info->dhcp->message_type == 5) learn_ip(info->dhcp->chaddr, info->dhcp->yiaddr);
    }
    if (info->ipv4) {
      if (auto m = mac_of(info->ip_source)) owners.insert(*m);
      if (auto m = mac_of(info->ip_destination)) owners.insert(*m);
    }
    // The box's own CDP/LLDP on a port speaks to every phone there.
    if ((info->cdp || info->lldp) && !phone_mac(info->source)) {
      auto it = port_phones_.find(iface);
      if (it != port_phones_.end()) owners.insert(it->second.begin(), it->second.end());
    }
    if (owners.empty()) return;

    const bool from_phone = phone_mac(info->source);
    for (const auto& mac : owners) {
      if (from_phone && mac == info->source) {
        const bool discover = info->dhcp && info->dhcp->op == 1 && info->dhcp->message_type == 1;
        if ((discover && !recorder_.booting(mac)) ||
            ((info->cdp || info->lldp || discover) && !recorder_.has_record(mac))) {
          begin_boot(mac, p.time);
        }
      }
      recorder_.add(mac, p);
      deliver_live(mac, p);
    }
  }

  // --- live captures -------------------------------------------------------------------------

  json summary(const LiveCapture& c, const std::string& reason) const {
    return json{{"phone", c.mac.sep_name()},
                {"packets", c.packets},
                {"dropped", c.dropped},
                {"bytes", c.bytes},
                {"seconds", std::chrono::duration<double>(Clock::now() - c.started).count()},
                {"stopped", reason}};
  }

  void deliver_live(const MacAddress& mac, const diag::Packet& p) {
    if (live_.empty()) return;
    std::vector<std::uint64_t> done;
    bool kept = false;
    for (auto& [id, c] : live_) {
      if (c.mac != mac) continue;
      if (!kept) {
        keep(mac, p, c.started);
        kept = true;
      }
      auto blocks = c.writer.packet(p);
      if (c.stream->write(blocks)) {
        ++c.packets;
        c.bytes += blocks.size();
      } else {
        c.writer.rollback();
        ++c.dropped;
      }
      if (c.max_packets != 0 && c.packets >= c.max_packets) done.push_back(id);
    }
    for (auto id : done) end_capture(id, "packet count reached");
  }

  void keep(const MacAddress& mac, const diag::Packet& p, Clock::time_point started) {
    auto it = kept_.find(mac);
    if (it == kept_.end() || it->second.started != started) {
      if (it == kept_.end() && kept_.size() >= kMaxKeptCaptures) {
        auto oldest = std::min_element(kept_.begin(), kept_.end(), [](const auto& a, const auto& b) {
          return a.second.started < b.second.started;
        });
        kept_.erase(oldest);
      }
      kept_[mac] = KeptCapture{started, {}, 0, 0};
      it = kept_.find(mac);
    }
    auto& k = it->second;
    k.packets.push_back(p);
    k.bytes += diag::stored_size(p);
    while (k.bytes > recorder_.limits().per_phone_bytes && !k.packets.empty()) {
      k.bytes -= diag::stored_size(k.packets.front());
      k.packets.pop_front();
      ++k.cut;
    }
  }

  void end_capture(std::uint64_t id, const std::string& reason) {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    it->second.timer->cancel();
    it->second.stream->finish(summary(it->second, reason));
    ve::logger("diag")->info("capture of {} ended ({}): {} packets, {} dropped", it->second.mac.sep_name(), reason,
                             it->second.packets, it->second.dropped);
    live_.erase(it);
  }

  std::optional<MacAddress> resolve(const std::string& key) const {
    if (auto m = MacAddress::parse(key)) return m;
    if (auto ip = parse_ip(key)) return mac_of(*ip);
    auto r = ctx_.control.call(command::kShowJourney, json{{"phone", key}});
    if (r && r->contains("phone") && (*r)["phone"].contains("mac")) {
      const auto& m = (*r)["phone"]["mac"];
      if (m.is_string()) return MacAddress::parse(m.get<std::string>());
    }
    return std::nullopt;
  }

  ControlResult start_capture(const json& args, const std::shared_ptr<ControlStream>& stream) {
    if (!args.contains("phone") || !args["phone"].is_string())
      return unexpected(ControlError{"bad-request", "capture needs a phone (MAC or SEP name)"});
    auto mac = resolve(args["phone"].get<std::string>());
    if (!mac)
      return unexpected(
          ControlError{"bad-request", "not a MAC, SEP name or known phone: " + args["phone"].get<std::string>()});
    std::uint64_t seconds = 0;
    std::uint64_t count = 0;
    const std::array<std::pair<const char*, std::uint64_t*>, 2> limits{{{"seconds", &seconds}, {"count", &count}}};
    for (const auto& [key, out] : limits) {
      if (!args.contains(key)) continue;
      if (!args[key].is_number_unsigned() || args[key].get<std::uint64_t>() == 0)
        return unexpected(ControlError{"bad-request", std::string(key) + " must be a positive whole number"});
      *out = args[key].get<std::uint64_t>();
    }
    if (live_.size() >= kMaxLiveCaptures)
      return unexpected(ControlError{"unavailable", fmt::format("{} captures are running already", live_.size())});
    const auto id = ++next_id_;
    LiveCapture c;
    c.id = id;
    c.mac = *mac;
    c.stream = stream;
    c.max_packets = count;
    c.started = Clock::now();
    c.timer = std::make_unique<asio::steady_timer>(ctx_.io);
    stream->write(c.writer.header());
    if (seconds != 0) {
      c.timer->expires_after(std::chrono::seconds(seconds));
      c.timer->async_wait([this, id](const boost::system::error_code& ec) {
        if (!ec) end_capture(id, "time limit reached");
      });
    }
    stream->on_stop([this, id] { end_capture(id, "stopped by the client"); });
    live_.emplace(id, std::move(c));
    json ifaces = json::array();
    for (const auto& s : hub_.status()) ifaces.push_back(json{{"name", s.name}, {"open", s.open}, {"error", s.error}});
    ve::logger("diag")->info("capture of {} started ({} s, {} packets; 0 = no limit)", mac->sep_name(), seconds, count);
    auto ip = mac_ip_.find(*mac);
    return json{{"phone", mac->sep_name()},
                {"mac", mac->to_string()},
                {"ip", ip == mac_ip_.end() ? json() : json(dotted(ip->second))},
                {"interfaces", ifaces},
                {"format", "pcapng"}};
  }

  // --- boot files in state_dir -----------------------------------------------------------------

  std::filesystem::path boot_dir() const { return std::filesystem::path(config_->state_dir) / "boot-captures"; }
  std::filesystem::path boot_file(const MacAddress& m, const char* ext) const {
    return boot_dir() / (m.sep_name() + ext);
  }

  static bool write_atomic(const std::filesystem::path& path, const std::string& data) {
    const auto tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out.write(data.data(), static_cast<std::streamsize>(data.size()))) return false;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    return !ec;
  }

  static json record_json(const diag::BootRecord& r) {
    return json{{"phone", r.mac.sep_name()},
                {"state", diag::to_string(r.state)},
                {"failure", r.failure},
                {"started", iso_time(r.started)},
                {"ended", r.ended.time_since_epoch().count() == 0 ? "" : iso_time(r.ended)},
                {"packets", r.packet_count()},
                {"packets_cut", r.cut},
                {"bytes", r.bytes}};
  }

  void persist_failed() {
    auto macs = recorder_.failed_unpersisted();
    if (macs.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(boot_dir(), ec);
    for (const auto& mac : macs) {
      const auto* r = recorder_.find(mac);
      if (!r) continue;
      auto packets = r->all_packets();
      const bool ok = write_atomic(boot_file(mac, ".pcapng"), diag::PcapngWriter::file(packets)) &&
                      write_atomic(boot_file(mac, ".json"), record_json(*r).dump(2) + "\n");
      if (!ok) {
        if (!persist_error_logged_) ve::logger("diag")->error("cannot write failed boots to {}", boot_dir().string());
        persist_error_logged_ = true;
        return;
      }
      recorder_.mark_persisted(mac);
    }
  }

  static std::optional<std::string> read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return std::nullopt;
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return s;
  }

  void arm_housekeeping() {
    housekeeping_.expires_after(kHousekeeping);
    housekeeping_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      own_macs_ = hub_.own_macs();
      const auto expired = recorder_.expire(std::chrono::steady_clock::now());
      for (const auto& m : expired) ve::logger("diag")->info("{}: boot gave up (not registered in time)", m.sep_name());
      persist_failed();
      recorder_.pack_settled(Clock::now());
      arm_housekeeping();
    });
  }

  // --- reports -----------------------------------------------------------------------------------

  bool has_boot(const MacAddress& mac) const {
    std::error_code ec;
    return recorder_.find(mac) != nullptr || std::filesystem::exists(boot_file(mac, ".pcapng"), ec);
  }

  std::optional<std::string> boot_pcapng(const MacAddress& mac) const {
    if (const auto* r = recorder_.find(mac)) {
      auto packets = r->all_packets();
      diag::scrub(packets, site_secrets(*config_));
      return diag::PcapngWriter::file(packets);
    }
    auto disk = read_file(boot_file(mac, ".pcapng"));
    if (!disk) return std::nullopt;
    diag::scrub(*disk, site_secrets(*config_));
    return disk;
  }

  json show() const {
    json ifaces = json::array();
    for (const auto& s : hub_.status())
      ifaces.push_back(json{{"name", s.name},
                            {"open", s.open},
                            {"error", s.error},
                            {"frames", s.frames},
                            {"kernel_drops", s.kernel_drops}});
    json captures = json::array();
    for (const auto& [id, c] : live_)
      captures.push_back(json{{"phone", c.mac.sep_name()}, {"packets", c.packets}, {"dropped", c.dropped}});
    return json{{"interfaces", ifaces},
                {"recorder",
                 {{"phones", recorder_.phones()},
                  {"bytes", recorder_.total_bytes()},
                  {"per_phone_limit", recorder_.limits().per_phone_bytes},
                  {"total_limit", recorder_.limits().total_bytes},
                  {"packets_cut", recorder_.cut_total()},
                  {"registered", recorder_.count(diag::BootState::Registered)},
                  {"packed", recorder_.packed_boots()}}},
                {"captures", captures},
                {"log_ring_lines", ring_->size()}};
  }

  Result<std::string, ControlError> build_report(const std::string& key) const {
    auto mac_opt = resolve(key);
    if (!mac_opt) return unexpected(ControlError{"not-found", "not a MAC, SEP name or known phone: " + key});
    const MacAddress mac = *mac_opt;
    const auto now = Clock::now();
    const std::string dir =
        mac.sep_name() + "-report-" + fmt::format("{:%Y%m%dT%H%M%SZ}", fmt::gmtime(Clock::to_time_t(now))) + "/";
    diag::TarGz tar;
    std::vector<std::string> needles = diag::mac_spellings(mac);
    std::string summary = fmt::format("voiceedge problem report for {} ({})\nCreated {} by voiceedged {}\n\n",
                                      mac.sep_name(), mac.to_string(), iso_time(now), VE_VERSION);

    auto journey = ctx_.control.call(command::kShowJourney, json{{"phone", mac.to_string()}});
    std::error_code ec;
    if (!journey && !recorder_.find(mac) && !std::filesystem::exists(boot_file(mac, ".pcapng"), ec) &&
        config_->find_phone(mac) == nullptr)
      return unexpected(ControlError{"not-found", "no phone " + mac.sep_name() + " has been seen"});
    if (journey) {
      const auto ip = journey->value("phone", json::object()).value("ipv4_address", "");
      if (!ip.empty()) needles.push_back(ip);
      tar.add(dir + "timeline.txt", timeline_text(*journey), now);
      tar.add(dir + "timeline.json", journey->dump(2) + "\n", now);
      tar.add(dir + "device-status.json", journey->value("phone", json::object()).dump(2) + "\n", now);
      summary += "Registration: " + journey->value("phone", json::object()).value("registration", "") + "\n";
      summary += "First failing step: " + journey->value("reason", std::string()) + "\n";
    } else {
      summary += "Timeline: none (" + journey.error().message + ")\n";
    }
    if (auto ip = mac_ip_.find(mac); ip != mac_ip_.end()) needles.push_back(dotted(ip->second));
    std::sort(needles.begin(), needles.end());
    needles.erase(std::unique(needles.begin(), needles.end()), needles.end());

    if (const auto* phone = config_->find_phone(mac)) {
      tar.add(dir + mac.sep_name() + ".cnf.xml",
              diag::mask_xml_passwords(provision::render_phone_config(*config_, *phone)), now);
    } else {
      summary += "Config file: the phone is not in the site file (it gets XMLDefault.cnf.xml or nothing)\n";
    }

    std::string port;
    if (journey) port = journey->value("phone", json::object()).value("port", "");
    const std::vector<std::tuple<const char*, const char*, json>> views = {
        {"show.dhcp.leases", "lease.json", json::object()},
        {"show.cdp.neighbors", "cdp-lldp-neighbor.json", json{{"detail", true}}},
        {"show.sip.registrations", "sip-bindings.json", json::object()},
        {"show.provision", "provisioning.json", json{{"limit", 1000}}},
    };
    for (const auto& [cmd, file, args] : views) {
      auto r = ctx_.control.call(cmd, args);
      tar.add(dir + file, (r ? only_about(*r, needles) : json{{"unavailable", r.error().message}}).dump(2) + "\n", now);
    }
    {
      auto r = ctx_.control.call(command::kShowPowerInline, json::object());
      json poe = r ? (port.empty() ? only_about(*r, needles) : only_about(*r, {port}))
                   : json{{"unavailable", r.error().message}};
      tar.add(dir + "poe-port.json", poe.dump(2) + "\n", now);
    }

    // Under systemd the journal reaches back past restarts, but only if the daemon's user may
    // read the system journal (group systemd-journal or adm); otherwise, and outside systemd,
    // the ring of lines since this start.
    std::vector<std::string> lines;
    std::string source = "daemon's ring of recent lines";
    if (std::getenv("JOURNAL_STREAM") != nullptr) {
      lines = journal_lines(needles, kMaxLogLines);
      if (!lines.empty())
        source = "journal";
      else
        source = "daemon's ring of recent lines; the journal gave none (the daemon's user may lack read access)";
    }
    if (lines.empty()) lines = ring_->matching(needles, kMaxLogLines);
    std::string log_text;
    for (const auto& l : lines) log_text += l + "\n";
    tar.add(dir + "log.txt", log_text, now);
    summary += fmt::format("Log lines about the phone: {} (from the {})\n", lines.size(), source);

    const auto secrets = site_secrets(*config_);
    if (const auto* r = recorder_.find(mac)) {
      auto packets = r->all_packets();
      diag::scrub(packets, secrets);
      tar.add(dir + "boot.pcapng", diag::PcapngWriter::file(packets), now);
      tar.add(dir + "boot.json", record_json(*r).dump(2) + "\n", now);
      summary += fmt::format("Boot capture: {} boot started {}, {} packets ({} cut to stay within bounds){}\n",
                             diag::to_string(r->state), iso_time(r->started), r->packet_count(), r->cut,
                             r->failure.empty() ? "" : ", failure: " + r->failure);
    }
    if (auto disk = read_file(boot_file(mac, ".pcapng"))) {
      // The last failed boot as written to state_dir (it survives restarts).
      const auto* r = recorder_.find(mac);
      if (!r || !r->persisted || r->state != diag::BootState::Failed) {
        diag::scrub(*disk, secrets);
        tar.add(dir + "last-failed-boot.pcapng", *disk, now);
        if (auto meta = read_file(boot_file(mac, ".json"))) tar.add(dir + "last-failed-boot.json", *meta, now);
        summary += "Last failed boot (from state_dir): last-failed-boot.pcapng\n";
      }
    }
    if (auto k = kept_.find(mac); k != kept_.end()) {
      std::vector<diag::Packet> packets(k->second.packets.begin(), k->second.packets.end());
      diag::scrub(packets, secrets);
      tar.add(dir + "capture.pcapng", diag::PcapngWriter::file(packets), now);
      summary += fmt::format("Live capture started {}: {} packets kept ({} cut)\n", iso_time(k->second.started),
                             packets.size(), k->second.cut);
    }
    tar.add(dir + "README.txt", summary, now);

    // Last line of defence: no member carries a site password, whatever produced it.
    diag::TarGz clean;
    for (const auto& [name, content] : tar.members()) {
      std::string c = content;
      diag::scrub(c, secrets);
      clean.add(name, c, now);
    }
    return clean.finish();
  }

  Context& ctx_;
  config::SiteConfigPtr config_;
  diag::BootRecorder recorder_;
  diag::CaptureHub hub_;
  asio::steady_timer housekeeping_;
  std::shared_ptr<diag::LogRing> ring_;
  std::shared_ptr<RingSink> sink_;
  std::set<MacAddress> own_macs_;
  std::map<std::string, std::set<MacAddress>> port_phones_;
  std::map<MacAddress, std::uint32_t> mac_ip_;
  std::map<std::uint32_t, MacAddress> ip_mac_;
  std::map<std::uint64_t, LiveCapture> live_;
  std::map<MacAddress, KeptCapture> kept_;
  std::uint64_t next_id_ = 0;
  bool persist_error_logged_ = false;

  friend void add_diag_component(Wiring& w);
};

}  // namespace

void add_diag_component(Wiring& w) {
  auto component = std::make_unique<DiagComponent>(w.ctx);
  DiagComponent* raw = component.get();
  w.ctx.services.event_listeners.push_back([raw](const PhoneEvent& e) { raw->on_event(e); });
  // Admin commands: a capture shows a phone's traffic (its config download with the line
  // password, unmasked), a report its configuration (passwords masked). Streams are always admin.
  w.ctx.control.add_stream(command::kCapture, [raw](const json& args, const std::shared_ptr<ControlStream>& stream) {
    return raw->start_capture(args, stream);
  });
  w.ctx.control.add(command::kReport, ControlRole::Admin, [raw](const json& args) -> ControlResult {
    if (!args.contains("phone") || !args["phone"].is_string())
      return unexpected(ControlError{"bad-request", "report needs a phone (MAC or SEP name)"});
    auto archive = raw->build_report(args["phone"].get<std::string>());
    if (!archive) return unexpected(archive.error());
    return json{{"bytes", archive->size()}, {"archive_base64", base64_encode(*archive)}};
  });
  w.ctx.control.add(command::kShowDiag, ControlRole::Read, [raw](const json&) -> ControlResult { return raw->show(); });
  w.ctx.services.phone_downloads.push_back(
      {"report.tar.gz", "download report", nullptr, [raw](const MacAddress& mac) -> std::optional<Services::HttpFile> {
         auto archive = raw->build_report(mac.sep_name());
         if (!archive) return std::nullopt;
         return Services::HttpFile{"application/gzip", std::move(*archive)};
       }});
  w.ctx.services.phone_downloads.push_back({"boot.pcapng", "download last boot capture",
                                            [raw](const MacAddress& mac) { return raw->has_boot(mac); },
                                            [raw](const MacAddress& mac) -> std::optional<Services::HttpFile> {
                                              auto file = raw->boot_pcapng(mac);
                                              if (!file) return std::nullopt;
                                              return Services::HttpFile{"application/x-pcapng", std::move(*file)};
                                            }});
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
