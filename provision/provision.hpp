#pragma once
// Provisioning: one virtual file tree (phone configs rendered from the site file + static files
// under provisioning.root) served over TFTP (udp/69) and HTTP (tcp/6970). Every request becomes a
// PhoneEvent for the boot step the file belongs to (steps 5-9, 12-14).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "config/config.hpp"
#include "provision/tftp_codec.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace ve::provision {

// ---------------------------------------------------------------- rendering

// File names the rendered configs point at; the files themselves are static files in the root.
inline constexpr std::string_view kDialTemplateFile = "dialplan.xml";
inline constexpr std::string_view kSoftKeyFile = "softkeys.xml";

// SEP<MAC>.cnf.xml for one phone of the site. Carries the line passwords: never log it.
std::string render_phone_config(const config::SiteConfig& site, const config::Phone& phone);
// The versionStamp render_phone_config writes: a fingerprint of the rest of the file, so it
// changes exactly when the phone's config does (phone control puts it in ConfigVersionStamp).
std::string phone_config_version(const config::SiteConfig& site, const config::Phone& phone);
// The load a phone is told to run (loadInformation): its own, else provisioning.default_load.
std::string phone_load(const config::SiteConfig& site, const config::Phone& phone);
// XMLDefault.cnf.xml: call-manager group and default load, for phones not in `phones:`.
std::string render_default_config(const config::SiteConfig& site);
// "English_United_States" -> "United_States" (the network locale named in the user locale).
std::string network_locale_for(std::string_view user_locale);

// ---------------------------------------------------------------- the file tree

using Bytes = std::shared_ptr<const std::vector<std::byte>>;

// Which boot step a requested file belongs to; nullopt for files outside the 14 steps.
std::optional<Step> classify(std::string_view filename);
// SEP<12 hex digits> anywhere in the name (CTLSEP…tlv, ITLSEP…tlv, SEP….cnf.xml), any case.
std::optional<MacAddress> mac_in_name(std::string_view filename);
// The phone whose own config this name is (SEP<MAC>.cnf.xml or .cnf.xml.sgn, any case, any
// directory): such files carry the line passwords and are served only to that phone (see
// provisioning.config_access). nullopt for every other file (XMLDefault, loads, locales, …).
std::optional<MacAddress> config_owner(std::string_view filename);

struct File {
  std::string name;  // generated name, or the path relative to the root as found on disk
  Bytes bytes;
  bool generated = false;
};

struct LookupError {
  enum class Kind { NotFound, Refused };
  Kind kind = Kind::NotFound;
  // Not found is the normal answer here (CTL/ITL/.sgn on a non-secure site).
  bool expected = false;
  std::string reason;  // for logs: "escapes root", "path has ..", …
};

// Static files are read once and shared by every transfer; the cache is keyed by path and
// revalidated by mtime+size on each lookup. Entries still in use survive eviction.
class StaticFileCache {
 public:
  explicit StaticFileCache(std::size_t max_bytes = std::size_t{1} << 30) : max_bytes_(max_bytes) {}
  // `path` must already be canonical and checked to lie in the root.
  Result<Bytes, std::string> get(const std::filesystem::path& path);
  std::size_t cached_bytes() const;
  std::size_t reads() const;  // how many times a file was read from disk

 private:
  struct Entry {
    std::filesystem::file_time_type mtime;
    std::uintmax_t size = 0;
    Bytes bytes;
    std::uint64_t last_use = 0;
  };
  void evict_locked();
  mutable std::mutex mutex_;  // the daemon is single-threaded; tests read counters from another thread
  std::map<std::string, Entry> entries_;
  std::size_t max_bytes_;
  std::size_t total_ = 0;
  std::size_t reads_ = 0;
  std::uint64_t clock_ = 0;
};

inline constexpr std::size_t kMaxRequestName = 255;

// Immutable view of one site file's tree; a reload builds a new one sharing the cache.
// A phone's SEP<MAC>.cnf.xml is rendered when it is asked for, not held for every phone: the
// rendering lives as long as a transfer (or any other holder of File::bytes) keeps it, and
// requests for the same config meanwhile share it. XMLDefault.cnf.xml (one for all) is held.
class FileTree {
 public:
  FileTree(config::SiteConfigPtr site, std::shared_ptr<StaticFileCache> cache);
  Result<File, LookupError> open(std::string_view requested) const;
  // Names of the generated files, upper-cased (SEP….CNF.XML for each phone, XMLDEFAULT.CNF.XML).
  std::vector<std::string> generated_names() const;
  std::size_t phone_configs() const { return phone_index_.size(); }
  // How many times a phone's config was rendered (a request found no live shared copy).
  std::size_t renders() const;
  // Phone configs some holder keeps rendered right now.
  std::size_t live_renderings() const;
  const config::SiteConfig& site() const { return *site_; }

 private:
  Result<File, LookupError> open_static(std::string_view relative) const;
  Bytes phone_config(std::size_t index) const;
  config::SiteConfigPtr site_;
  std::shared_ptr<StaticFileCache> cache_;
  std::filesystem::path root_;  // canonical, empty if it does not exist
  // Upper-cased SEP<MAC>.CNF.XML -> index into site_->phones.
  std::map<std::string, std::size_t> phone_index_;
  Bytes default_config_;
  // One slot per phone of the site: the rendering some transfer still holds, if any.
  mutable std::mutex rendered_mutex_;
  mutable std::vector<std::weak_ptr<const std::vector<std::byte>>> rendered_;
  mutable std::size_t renders_ = 0;
};

// ---------------------------------------------------------------- activity

enum class Protocol { Tftp, Http };
std::string_view to_string(Protocol p);

struct TransferRecord {
  Protocol protocol = Protocol::Tftp;
  std::string client_ip;
  std::optional<MacAddress> mac;
  std::string file;
  std::optional<Step> step;
  Outcome outcome = Outcome::Ok;
  std::string result;  // "ok", "not-found", "refused", "timeout", "client-error", "busy", …
  std::uint64_t bytes = 0;
  std::chrono::milliseconds duration{0};
  std::chrono::system_clock::time_point time;
  // `mac` comes from the address's DHCP lease or a phone's `ip:` binding, not from the file name.
  // Only verified records set the phone's IP in its timeline.
  bool verified = false;
};

struct Counters {
  std::uint64_t tftp_requests = 0;
  std::uint64_t tftp_ok = 0;
  std::uint64_t tftp_not_found = 0;
  std::uint64_t tftp_refused = 0;
  std::uint64_t tftp_failed = 0;
  std::uint64_t tftp_busy = 0;
  std::uint64_t tftp_malformed = 0;
  std::uint64_t tftp_retransmits = 0;
  std::uint64_t tftp_config_refused = 0;   // SEP<MAC>.cnf.xml asked for from another address
  std::uint64_t tftp_options_ignored = 0;  // options left out of the OACK (RFC 2347)
  std::uint64_t tftp_lifetime_exceeded = 0;
  std::uint64_t tftp_busy_memory = 0;  // netascii copy over the memory budget (also in tftp_busy)
  std::uint64_t netascii_conversions = 0;
  std::uint64_t http_requests = 0;
  std::uint64_t http_ok = 0;
  std::uint64_t http_not_found = 0;
  std::uint64_t http_refused = 0;
  std::uint64_t http_bad_method = 0;
  std::uint64_t http_busy = 0;
  std::uint64_t http_malformed = 0;
  std::uint64_t http_failed = 0;
  std::uint64_t http_config_refused = 0;
  std::uint64_t bytes_sent = 0;
};

using MacLookup = std::function<std::optional<MacAddress>(const std::string& ip)>;

// ---------------------------------------------------------------- the servers

struct TftpOptions {
  config::Endpoint listen{"udp", "0.0.0.0", 69};  // port 0: any free port (tests)
  int max_transfers = 1000;
  int max_per_client = 16;
  std::chrono::milliseconds retransmit_timeout{1000};  // unless the client asks (RFC 2349)
  int max_retries = 5;
  tftp::NegotiationLimits limits;
  // Slots only addresses of the site's phones (by lease or `ip:` binding) may take, so a host
  // filling the table cannot make phones get "Server busy". -1: a quarter of max_transfers.
  int reserved_for_phones = -1;
  // A transfer ends after this long whatever the client does (a slow-ACK client cannot keep a
  // slot); one that never got its first ACK gives up after first_ack_timeout.
  std::chrono::seconds max_lifetime{900};
  std::chrono::milliseconds first_ack_timeout{10000};
  // Threads that run the transfers (the request socket stays on the io_context). 0: four per
  // CPU, at most 8: each competes with every other runnable thread for the CPU, so a few per core
  // keep the transfers' share on a busy box (bench/tftp, 100 lockstep clients on 2 cores: 2 → 8
  // workers took 31.8 → 42.1 MB/s). An idle worker sleeps in epoll_wait.
  int workers = 0;
  // Send a window in one sendmsg with UDP GSO; off (or refused by the kernel): sendmmsg.
  bool gso = true;
  // Netascii copies (one per file version, shared by every transfer of it) live in this budget.
  std::size_t netascii_budget = std::size_t{64} << 20;
  int reserved() const { return reserved_for_phones >= 0 ? reserved_for_phones : max_transfers / 4; }
};

struct HttpOptions {
  config::Endpoint listen{"tcp", "0.0.0.0", 6970};
  int max_connections = 1000;
  // One address cannot take them all (a phone uses one or two).
  int max_per_client = 16;
  std::size_t header_limit = 8192;
  std::chrono::seconds idle_timeout{30};
};

struct ProvisionerOptions {
  TftpOptions tftp;
  HttpOptions http;
  std::size_t cache_bytes = std::size_t{1} << 30;
  std::size_t recent_records = 200;
  // A phone's config asked for by an address with no lease yet: how long to wait for the DHCP
  // lease to be known (lease reports can be lost in a storm and are recovered from Kea's lease
  // file within ~2 s) before answering "not found". Applies alike to configs that exist and to
  // those that do not, so the wait tells an attacker nothing.
  std::chrono::milliseconds lease_wait{4000};
};

// Options from the site file (listen endpoints and limits); the rest stay at their defaults.
ProvisionerOptions options_from(const config::SiteConfig& site);

// Owns the tree, both servers and the activity log. Runs on one io_context thread.
class Provisioner {
 public:
  Provisioner(boost::asio::io_context& io, config::SiteConfigPtr site, ProvisionerOptions options, EventSink& events,
              MacLookup mac_for_ip = {});
  ~Provisioner();
  Provisioner(const Provisioner&) = delete;
  Provisioner& operator=(const Provisioner&) = delete;

  // Binds both sockets. An error names the endpoint and the reason (e.g. port in use).
  Result<void, std::string> start();
  void stop();
  // New site file: rebuilds the rendered files; transfers in flight finish with what they have.
  void reconfigure(config::SiteConfigPtr site);
  // Listen endpoints and limits; applied by the next start().
  void set_options(ProvisionerOptions options);
  // Reload in two steps. prepare_options() binds the listeners whose endpoint changes beside the
  // live ones; on error (port taken) everything stays as it was. commit_options() swaps them in
  // (a listener whose endpoint stays but whose limits change is restarted in place);
  // abandon_options() closes them instead.
  Result<void, std::string> prepare_options(ProvisionerOptions options);
  void commit_options();
  void abandon_options();
  const ProvisionerOptions& options() const;

  std::uint16_t tftp_port() const;
  std::uint16_t http_port() const;
  Counters counters() const;
  std::vector<TransferRecord> recent() const;  // oldest first
  std::size_t active_tftp_transfers() const;
  std::size_t open_http_connections() const;
  std::size_t netascii_bytes() const;  // netascii copies held by transfers now
  // Prometheus text for /metrics.
  std::string metrics() const;
  std::shared_ptr<const FileTree> tree() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ve::provision
