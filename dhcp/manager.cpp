// The daemon's DHCP part: runs Kea (kea_supervisor), receives the hook's lease reports on a unix
// datagram socket, keeps the lease table (show.dhcp.leases, mac_for_ip) and turns lease events of
// phones into journey events (step 4).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <boost/asio/local/datagram_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include "dhcp/dhcp.hpp"
#include "dhcp/kea_supervisor.hpp"
#include "ve/log.hpp"

namespace ve::dhcp {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;

constexpr std::size_t kMaxLeases = 65536;  // bounds the table whatever arrives on the socket

struct LeaseEntry {
  MacAddress mac;
  std::uint32_t ip = 0;
  std::string state;  // offered | bound | released | declined | expired
  std::string subnet;
  std::string hostname;
  std::string vendor_class;
  PhoneReason phone = PhoneReason::NotPhone;
  std::optional<Clock::time_point> expires;
  Clock::time_point updated;
};

std::string_view state_for(LeaseEventKind k) {
  switch (k) {
    case LeaseEventKind::Offer: return "offered";
    case LeaseEventKind::Ack: return "bound";
    case LeaseEventKind::Release: return "released";
    case LeaseEventKind::Decline: return "declined";
    case LeaseEventKind::Expire: return "expired";
  }
  return "?";
}

// A binding that Kea's lease file holds now, as the report the hook would have sent for it.
struct FileLease {
  LeaseReport report;         // an ack, with Kea's time of the lease
  Clock::time_point expires;  // the file's expiry (not now + lifetime)
};

// Kea's lease file, read at start (the table would be empty until phones renew) and whenever
// reports may have been lost: its active bindings. The file has no vendor class, so phones are
// recognised here by listed MAC or OUI only.
std::vector<FileLease> read_active_leases(const fs::path& path, const config::SiteConfig& site, Clock::time_point now) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  const PhoneMatcher matcher(site.dhcp.phone_match, site.phones);
  std::vector<FileLease> out;
  for (const auto& l : parse_memfile_leases(ss.str())) {
    const auto expires = Clock::from_time_t(static_cast<std::time_t>(l.expire));
    if (l.valid_lifetime_s == 0 || l.state != 0 || expires <= now) continue;
    FileLease f;
    f.expires = expires;
    auto& r = f.report;
    r.kind = LeaseEventKind::Ack;
    r.mac = l.mac;
    r.ip = l.ip;
    if (const auto* subnet = find_subnet_containing(site.dhcp.subnets, l.ip)) r.subnet = subnet->prefix.to_string();
    r.hostname = l.hostname;
    r.phone = matcher.classify(l.mac, {});
    r.lifetime_s = l.valid_lifetime_s;
    // Kea's lease time (expire - lifetime), to the second: when the phone got it, not now.
    r.time_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(0, l.expire - l.valid_lifetime_s)) * 1000;
    out.push_back(std::move(f));
  }
  return out;
}

// Leases by address.
class LeaseTable {
 public:
  // False when the report changes nothing a phone's timeline should show: an offer to a client
  // that holds that address already (a retransmitted DISCOVER answered after its ACK).
  bool apply(const LeaseReport& r, Clock::time_point now) {
    auto it = by_ip_.find(r.ip);
    if (it == by_ip_.end()) {
      if (by_ip_.size() >= kMaxLeases) evict_oldest();
      it = by_ip_.emplace(r.ip, LeaseEntry{}).first;
    } else if (r.kind == LeaseEventKind::Offer && it->second.state == "bound" && it->second.mac == r.mac) {
      // A renewing client's offer does not undo its binding.
      it->second.updated = now;
      return false;
    }
    auto& e = it->second;
    e.mac = r.mac;
    e.ip = r.ip;
    e.state = std::string(state_for(r.kind));
    if (!r.subnet.empty()) e.subnet = r.subnet;
    if (!r.hostname.empty()) e.hostname = r.hostname;
    if (!r.vendor_class.empty()) e.vendor_class = r.vendor_class;
    if (r.phone != PhoneReason::NotPhone || r.kind == LeaseEventKind::Offer || r.kind == LeaseEventKind::Ack)
      e.phone = r.phone;
    e.expires = r.lifetime_s > 0 ? std::optional(now + std::chrono::seconds(r.lifetime_s)) : std::nullopt;
    e.updated = now;
    return true;
  }

  // A binding from Kea's lease file, unless the address is known already.
  void seed(const FileLease& l, Clock::time_point now) {
    if (by_ip_.size() >= kMaxLeases || by_ip_.count(l.report.ip) != 0) return;
    LeaseEntry e;
    e.mac = l.report.mac;
    e.ip = l.report.ip;
    e.state = "bound";
    e.hostname = l.report.hostname;
    e.subnet = l.report.subnet;
    e.phone = l.report.phone;
    e.expires = l.expires;
    e.updated = now;
    by_ip_.emplace(e.ip, std::move(e));
  }

  std::optional<MacAddress> mac_for_ip(std::uint32_t ip) const {
    auto it = by_ip_.find(ip);
    if (it == by_ip_.end() || (it->second.state != "bound" && it->second.state != "offered")) return std::nullopt;
    return it->second.mac;
  }

  nlohmann::json to_json(Clock::time_point now) const {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& [ip, e] : by_ip_) {
      nlohmann::json row = {{"ip", format_ipv4(ip)},
                            {"mac", e.mac.to_string()},
                            {"state", e.state},
                            {"subnet", e.subnet},
                            {"hostname", e.hostname},
                            {"vendor_class", e.vendor_class},
                            {"phone", std::string(to_string(e.phone))},
                            {"updated", fmt::format("{:%FT%TZ}", std::chrono::floor<std::chrono::seconds>(e.updated))}};
      if (e.phone != PhoneReason::NotPhone) row["device"] = e.mac.sep_name();
      row["expires_in_s"] =
          e.expires ? nlohmann::json(std::chrono::duration_cast<std::chrono::seconds>(*e.expires - now).count())
                    : nlohmann::json(nullptr);
      rows.push_back(std::move(row));
    }
    return rows;
  }

  std::size_t size() const { return by_ip_.size(); }

  bool is_bound(std::uint32_t ip, const MacAddress& mac) const {
    auto it = by_ip_.find(ip);
    return it != by_ip_.end() && it->second.state == "bound" && it->second.mac == mac;
  }

 private:
  void evict_oldest() {
    auto oldest = by_ip_.begin();
    for (auto it = by_ip_.begin(); it != by_ip_.end(); ++it)
      if (it->second.updated < oldest->second.updated) oldest = it;
    if (oldest != by_ip_.end()) by_ip_.erase(oldest);
  }

  std::map<std::uint32_t, LeaseEntry> by_ip_;
};

}  // namespace

class Manager::Impl {
 public:
  Impl(boost::asio::io_context& io, config::SiteConfigPtr config, EventSink& events, ServiceInterface service_interface)
      : config_(std::move(config)),
        events_(events),
        service_interface_(std::move(service_interface)),
        log_(ve::logger("dhcp")),
        socket_(io),
        kea_(io, log_),
        reconcile_timer_(io),
        early_reconcile_timer_(io) {}

  void start() {
    seed_from_memfile();
    open_event_socket();
    arm_reconcile();
    if (config_->dhcp.kea.manage) {
      start_kea();
    } else {
      log_->info("dhcp.kea.manage is false: not running Kea; lease reports on {}", config_->dhcp.kea.event_socket);
    }
  }

  void reconfigure(const config::SiteConfigPtr& config) {
    const bool socket_moved = config->dhcp.kea.event_socket != config_->dhcp.kea.event_socket;
    config_ = config;
    if (socket_moved) open_event_socket();
    if (config_->dhcp.kea.manage && kea_running_) {
      if (resolve_hook_library()) kea_.reconfigure(kea_site());
    } else if (config_->dhcp.kea.manage) {
      start_kea();
    } else if (kea_running_) {
      log_->info("dhcp.kea.manage turned off: stopping the managed kea-dhcp4");
      kea_.stop();
      kea_running_ = false;
    }
  }

  void stop() {
    reconcile_timer_.cancel();
    early_reconcile_timer_.cancel();
    if (kea_running_) kea_.stop();
    kea_running_ = false;
    close_event_socket();
  }

  nlohmann::json leases() const { return table_.to_json(Clock::now()); }

  nlohmann::json status() const {
    nlohmann::json kea = kea_running_ ? kea_.status() : nlohmann::json{{"managed", config_->dhcp.kea.manage}};
    return {{"kea", kea},
            {"event_socket", config_->dhcp.kea.event_socket},
            {"reports_received", reports_received_},
            {"reports_malformed", reports_malformed_},
            {"reports_recovered_from_lease_file", reports_recovered_},
            {"leases", table_.size()}};
  }

  // A miss asks for an early look at Kea's lease file: in a boot storm the report of a lease the
  // phone already uses may have been lost (Kea's reports are never waited for), and provisioning
  // holds that phone's config or trust-list request until the lease is known. Without this the
  // request waited for the next periodic reconcile: the 2 s plateau of the boot storm.
  std::optional<MacAddress> mac_for_ip(const std::string& ip) {
    auto parsed = parse_ipv4(ip);
    if (!parsed) return std::nullopt;
    auto mac = table_.mac_for_ip(*parsed);
    if (!mac && !early_reconcile_armed_) arm_early_reconcile();
    return mac;
  }

 private:
  // Starting Kea that cannot work would only make a restart loop: say why once instead.
  void start_kea() {
    if (config_->dhcp.subnets.empty()) {
      log_->info("no dhcp.subnets in the site file: not starting kea-dhcp4");
      return;
    }
    if (!resolve_hook_library()) return;
    kea_.start(kea_site());
    kea_running_ = true;
  }

  // The configured hooks library, else the one a build tree has next to this executable
  // (build/daemon/voiceedged -> build/kea-hooks/libdhcp_voiceedge.so): running from the tree needs
  // no dhcp.kea.hook_library. Only when the key is left at its default: a path the administrator
  // wrote down and that is missing is an error, never silently replaced. Says which one it uses
  // whenever that changes; false: none exists.
  bool resolve_hook_library() {
    std::error_code ec;
    const auto& configured = config_->dhcp.kea.hook_library;
    std::string found;
    const bool configured_by_default = configured == config::KeaConfig{}.hook_library;
    if (fs::exists(configured, ec)) {
      found = configured;
    } else {
      const auto exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
      for (const auto& candidate :
           {exe_dir / "libdhcp_voiceedge.so", exe_dir.parent_path() / "kea-hooks" / "libdhcp_voiceedge.so"}) {
        if (configured_by_default && !exe_dir.empty() && fs::exists(candidate, ec)) {
          found = candidate.string();
          break;
        }
      }
      if (found.empty()) {
        log_->error(
            "hooks library {} not found (dhcp.kea.hook_library), nor in a build tree next to {}: "
            "not starting kea-dhcp4",
            configured, exe_dir.string());
        hook_library_.clear();
        return false;
      }
      if (found != hook_library_)
        log_->warn("hooks library {} not found (dhcp.kea.hook_library); using {} from the build tree", configured,
                   found);
    }
    hook_library_ = found;
    return true;
  }

  // The site as Kea must see it: each subnet served where its router address lives now. With the
  // voice VLAN data plane programmed (net.mode bridge) that is the bridge's VLAN interface
  // (ve-br0.100), not the port named in the site file; net/ says which (service_interface).
  config::SiteConfig kea_site() const {
    config::SiteConfig site = *config_;
    if (!hook_library_.empty()) site.dhcp.kea.hook_library = hook_library_;
    if (service_interface_) {
      for (auto& subnet : site.dhcp.subnets) {
        auto where = service_interface_(subnet);
        if (!where.empty() && where != subnet.interface) {
          log_->info("subnet {} (VLAN {}): Kea serves it on {} (programmed voice VLAN interface) instead of {}",
                     subnet.prefix.to_string(), subnet.vlan, where, subnet.interface);
          subnet.interface = std::move(where);
        }
      }
    }
    return site;
  }

  // Lease reports are datagrams sent without waiting, so a burst (a boot storm) can overflow the
  // socket's queue and lose some: by design Kea is never slowed down for us. Kea's own lease file
  // is the truth; every few seconds, bindings it has that no report told us about are taken from
  // it, so the lease table and the phones' step 4 catch up.
  void arm_reconcile() {
    reconcile_timer_.expires_after(std::chrono::seconds(2));
    reconcile_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      reconcile_from_memfile();
      arm_reconcile();
    });
  }

  // At most one early reconcile per 100 ms, however many requests miss.
  void arm_early_reconcile() {
    early_reconcile_armed_ = true;
    const auto now = std::chrono::steady_clock::now();
    const auto due = std::max(now, last_early_reconcile_ + std::chrono::milliseconds(100));
    early_reconcile_timer_.expires_at(due);
    early_reconcile_timer_.async_wait([this](const boost::system::error_code& ec) {
      early_reconcile_armed_ = false;
      if (ec) return;
      last_early_reconcile_ = std::chrono::steady_clock::now();
      reconcile_from_memfile();
    });
  }

  void reconcile_from_memfile() {
    const auto path = kea_paths(*config_).leases;
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec || size == memfile_size_seen_) return;  // Kea appends: an unchanged size means nothing new
    memfile_size_seen_ = size;
    const auto now = Clock::now();
    for (const auto& l : read_active_leases(path, *config_, now)) {
      if (table_.is_bound(l.report.ip, l.report.mac)) continue;
      ++reports_recovered_;
      log_->debug("lease {} of {} taken from Kea's lease file (its report was lost)", format_ipv4(l.report.ip),
                  l.report.mac.to_string());
      handle_report(l.report, now);
    }
  }

  // After a daemon restart the table would be empty until phones renew: Kea's lease file has them.
  void seed_from_memfile() {
    const auto path = kea_paths(*config_).leases;
    const auto now = Clock::now();
    const auto active = read_active_leases(path, *config_, now);
    for (const auto& l : active) table_.seed(l, now);
    if (!active.empty()) log_->info("{} active lease(s) read from {}", active.size(), path.string());
  }

  void open_event_socket() {
    close_event_socket();
    const auto& path = config_->dhcp.kea.event_socket;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    fs::remove(path, ec);  // a stale socket file from a crashed daemon
    boost::system::error_code bec;
    socket_.open(boost::asio::local::datagram_protocol(), bec);
    if (!bec) socket_.bind(boost::asio::local::datagram_protocol::endpoint(path), bec);
    if (bec) {
      log_->error("cannot listen for Kea lease reports on {}: {}", path, bec.message());
      socket_.close(bec);
      return;
    }
    // Reports feed the journey and mac_for_ip, so not everyone may write them: owner and group.
    // A site running its own Kea as another user (Debian's _kea) puts it in the daemon's group.
    ::chmod(path.c_str(), 0660);
    bound_path_ = path;
    log_->info("lease reports on {}", path);
    receive();
  }

  void close_event_socket() {
    boost::system::error_code ec;
    socket_.close(ec);
    if (!bound_path_.empty()) {
      std::error_code fec;
      fs::remove(bound_path_, fec);
      bound_path_.clear();
    }
  }

  void receive() {
    socket_.async_receive(boost::asio::buffer(buffer_), [this](const boost::system::error_code& ec, std::size_t n) {
      if (ec == boost::asio::error::operation_aborted || !socket_.is_open()) return;
      if (!ec) on_datagram(std::span(buffer_.data(), n));
      receive();
    });
  }

  void on_datagram(std::span<const std::uint8_t> datagram) {
    auto report = decode_lease_report(datagram);
    if (!report) {
      ++reports_malformed_;
      // Only local processes can write here, but the input is still untrusted: count, warn rarely.
      if (reports_malformed_ == 1 || reports_malformed_ % 1000 == 0)
        log_->warn("malformed lease report ({}), {} so far", to_string(report.error()), reports_malformed_);
      return;
    }
    ++reports_received_;
    handle_report(*report, Clock::now());
  }

  void handle_report(const LeaseReport& r, Clock::time_point now) {
    const bool changed = table_.apply(r, now);
    const auto ip = format_ipv4(r.ip);
    log_->debug("{} {} {} {} phone={}", to_string(r.kind), r.mac.to_string(), ip, r.subnet, to_string(r.phone));
    if (r.phone == PhoneReason::NotPhone) return;  // the journey is for phones

    PhoneEvent ev;
    ev.mac = r.mac;
    ev.step = Step::Dhcp;
    // Kea's own time of the answer when the report has it (the phone may act on the answer before
    // we read the report); never a time in the future.
    ev.time = now;
    if (r.time_ms != 0) {
      const auto at = Clock::time_point(std::chrono::milliseconds(r.time_ms));
      if (at < now) ev.time = at;
    }
    ev.ip = ip;
    // Kept in the history, but an offer arriving after the phone's ACK does not turn its bound
    // step 4 back into "offered" (seen in CI when a loaded phone retransmitted its DISCOVER).
    ev.history_only = !changed;
    switch (r.kind) {
      case LeaseEventKind::Offer:
        ev.outcome = Outcome::Info;
        ev.detail = fmt::format("offered {}", ip);
        break;
      case LeaseEventKind::Ack:
        ev.outcome = Outcome::Ok;
        ev.detail = fmt::format("bound {} in {} for {} s", ip, r.subnet.empty() ? "?" : r.subnet, r.lifetime_s);
        break;
      case LeaseEventKind::Release:
        ev.outcome = Outcome::Info;
        ev.detail = fmt::format("released {}", ip);
        break;
      case LeaseEventKind::Decline:
        ev.outcome = Outcome::Failed;
        ev.detail = fmt::format("declined {} (address in use on the wire)", ip);
        break;
      case LeaseEventKind::Expire:
        ev.outcome = Outcome::Info;
        ev.detail = fmt::format("lease {} expired", ip);
        break;
    }
    if (r.kind == LeaseEventKind::Ack)
      log_->info("{} ({}) bound {} in {}", r.mac.sep_name(), to_string(r.phone), ip, r.subnet);
    events_.report(std::move(ev));
  }

  config::SiteConfigPtr config_;
  EventSink& events_;
  ServiceInterface service_interface_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::local::datagram_protocol::socket socket_;
  std::array<std::uint8_t, kMaxReportBytes + 1> buffer_{};  // +1: an oversized datagram is seen as such
  std::string bound_path_;
  KeaSupervisor kea_;
  bool kea_running_ = false;
  std::string hook_library_;  // the one Kea loads (resolve_hook_library)
  LeaseTable table_;
  std::uint64_t reports_received_ = 0;
  std::uint64_t reports_malformed_ = 0;
  std::uint64_t reports_recovered_ = 0;  // bindings taken from Kea's lease file: lost reports
  std::uintmax_t memfile_size_seen_ = 0;
  boost::asio::steady_timer reconcile_timer_;
  boost::asio::steady_timer early_reconcile_timer_;
  bool early_reconcile_armed_ = false;
  std::chrono::steady_clock::time_point last_early_reconcile_{};
};

Manager::Manager(boost::asio::io_context& io, config::SiteConfigPtr config, EventSink& events,
                 ServiceInterface service_interface)
    : impl_(std::make_unique<Impl>(io, std::move(config), events, std::move(service_interface))) {}
Manager::~Manager() = default;
void Manager::start() { impl_->start(); }
void Manager::reconfigure(const config::SiteConfigPtr& config) { impl_->reconfigure(config); }
void Manager::stop() { impl_->stop(); }
nlohmann::json Manager::leases() const { return impl_->leases(); }
nlohmann::json Manager::status() const { return impl_->status(); }
std::optional<MacAddress> Manager::mac_for_ip(const std::string& ip) { return impl_->mac_for_ip(ip); }

}  // namespace ve::dhcp
