#pragma once
// Digest authentication shared by the registrar (401 / WWW-Authenticate) and the proxy
// (407 / Proxy-Authenticate): a bounded table of short-lived nonces bound to the address that got
// them (RFC 7616 3.3: nc must grow per nonce; stale=true on an expired nonce), the digest uri
// checked against the Request-URI, and password-guess throttling per source and per user
// (modelled on Kamailio's pike + htable bans). No sockets and no clock of its own: the caller
// passes `now`, so tests drive time.
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ve::sip {

struct AuthPolicy {
  // Long enough to answer a challenge over a slow link, short enough that a captured nonce is
  // useless soon. A phone that refreshes later is challenged again with stale=true.
  std::chrono::seconds nonce_lifetime{30};
  std::size_t max_nonces = 8192;            // oldest evicted first
  std::size_t max_nonces_per_source = 16;   // one host cannot evict the others' nonces
  std::uint32_t max_failures = 5;           // wrong user/password within failure_window ...
  std::chrono::seconds failure_window{60};  // ... blocks the source (and the user name)
  std::chrono::seconds first_block{30};     // doubled for each further block, up to max_block
  std::chrono::seconds max_block{900};
  std::size_t max_tracked = 8192;  // sources and user names with failures, oldest dropped
  std::chrono::seconds summary_interval{60};
};

// Why verify() decided what it did; response_for() maps it to what to send.
enum class AuthOutcome {
  Ok,
  NoCredentials,  // no Digest credentials for our realm (absent, other scheme, other realm)
  Unsupported,    // an algorithm other than MD5
  UnknownNonce,   // not issued by us, evicted, or already used
  ExpiredNonce,
  WrongSource,    // issued to another address: a replay
  ReplayedNc,     // nc not above the last one seen with this nonce: a replay
  UriMismatch,    // digest uri is not the Request-URI
  BadParameters,  // qop other than auth, or auth without cnonce/nc
  WrongUser,      // no such user (indistinguishable from WrongPassword on the wire)
  WrongPassword,
  SourceBlocked,
  UserBlocked,
};
std::string_view to_string(AuthOutcome o);

enum class AuthResponse {
  Accept,      // authenticated
  Challenge,   // 401/407 with a fresh nonce
  Stale,       // 401/407 with a fresh nonce and stale=true
  BadRequest,  // 400
  Forbidden,   // 403
  Drop,        // blocked: send nothing
};
AuthResponse response_for(AuthOutcome o);

struct AuthRequest {
  std::vector<std::string_view> credentials;  // every Authorization (or Proxy-Authorization) value
  std::string_view method;
  std::string_view request_uri;
  std::string_view source_ip;
};

struct AuthResult {
  AuthOutcome outcome = AuthOutcome::NoCredentials;
  std::string username;  // the digest username, when credentials were found
};

struct AuthCounters {
  std::uint64_t challenges = 0;
  std::uint64_t failures = 0;  // wrong user or password
  std::uint64_t stale = 0;     // unknown or expired nonce
  std::uint64_t replays = 0;   // wrong source, nc replayed, uri mismatch
  std::uint64_t blocked = 0;   // requests refused while blocked
  std::uint64_t blocks = 0;    // blocks imposed
  std::uint64_t nonces_evicted = 0;
};

class Authenticator {
 public:
  using Clock = std::chrono::system_clock;
  // The password of a digest username, or nullopt when there is no such user. The view must stay
  // valid for the duration of the call.
  using PasswordLookup = std::function<std::optional<std::string_view>(std::string_view username)>;

  explicit Authenticator(std::string realm, AuthPolicy policy = {});
  void set_realm(std::string realm) { realm_ = std::move(realm); }
  const std::string& realm() const { return realm_; }

  // A WWW-Authenticate / Proxy-Authenticate value with a new nonce bound to `source_ip`.
  std::string challenge(std::string_view source_ip, bool stale, Clock::time_point now);
  // The same value appended to `out` (a response being built).
  void append_challenge(std::string& out, std::string_view source_ip, bool stale, Clock::time_point now);
  AuthResult verify(const AuthRequest& request, const PasswordLookup& password, Clock::time_point now);
  // True while `source_ip` is blocked (callers may drop before parsing further).
  bool source_blocked(std::string_view source_ip, Clock::time_point now) const;

  // One line describing failures and blocks since the last summary, at most once per
  // summary_interval and only if something happened. Call from a periodic timer.
  std::optional<std::string> summary(Clock::time_point now);
  const AuthCounters& counters() const { return counters_; }
  std::size_t nonces() const { return nonces_.size(); }

 private:
  // Tables keyed by std::string, looked up by string_view without building a key (C++20
  // heterogeneous lookup).
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  template <class T>
  using Table = std::unordered_map<std::string, T, KeyHash, std::equal_to<>>;
  struct Nonce {
    std::string source;
    Clock::time_point issued;
    std::uint64_t last_nc = 0;
  };
  struct Strikes {
    std::uint32_t failures = 0;
    Clock::time_point window_start{};
    Clock::time_point blocked_until{};
    std::uint32_t blocks = 0;  // for the doubling back-off
    Clock::time_point last_seen{};
  };
  void record_failure(Table<Strikes>& table, std::string_view key, Clock::time_point now);
  static bool blocked(const Table<Strikes>& table, std::string_view key, Clock::time_point now);
  void forget_nonce(std::string_view nonce);

  std::string realm_;
  AuthPolicy policy_;
  Table<Nonce> nonces_;
  std::deque<std::string> nonce_order_;  // issue order; entries may be already forgotten
  Table<std::deque<std::string>> nonces_by_source_;
  Table<Strikes> sources_;
  Table<Strikes> users_;
  // The address each user last authenticated from: a user-name block does not lock it out.
  Table<std::string> trusted_source_;
  AuthCounters counters_;
  AuthCounters summarized_;
  // Nonce bytes from the CSPRNG, fetched for many nonces at once (one RAND_bytes call per nonce
  // was a tenth of a registration's CPU); each byte is handed out once and then wiped.
  std::array<unsigned char, 1024> random_pool_{};
  std::size_t random_used_ = random_pool_.size();
  void append_random_nonce(std::string& out);
  Clock::time_point last_summary_{};
};

}  // namespace ve::sip
