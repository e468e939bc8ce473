// Digest verification with a nonce table and guess throttling (see authenticator.hpp).
#include "sip/authenticator.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "sip/digest.hpp"
#include "sip/sip.hpp"

namespace ve::sip {
namespace {

// A user name as a table key: bounded, so a 8 KB username cannot make the table expensive.
std::string_view user_key(std::string_view username) { return username.substr(0, 64); }

std::optional<std::uint64_t> parse_nc(std::string_view nc) {
  if (nc.empty() || nc.size() > 8) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : nc) {
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  return v;
}

// RFC 3261 22.4: the digest uri is the Request-URI. Compared as written, or as equal URIs when a
// client normalised case, dropped a default, or added the port it sent to (sipp writes
// sip:HOST:PORT for a Request-URI of sip:HOST). Scheme, user and host must always agree.
bool uri_matches(std::string_view digest_uri, std::string_view request_uri) {
  if (digest_uri == request_uri) return true;
  auto a = parse_uri(digest_uri);
  auto b = parse_uri(request_uri);
  if (!a || !b) return false;
  return iequals(a->scheme, b->scheme) && a->user == b->user && iequals(a->host, b->host) &&
         (!a->port || !b->port || *a->port == *b->port);
}

}  // namespace

std::string_view to_string(AuthOutcome o) {
  switch (o) {
    case AuthOutcome::Ok: return "ok";
    case AuthOutcome::NoCredentials: return "no credentials";
    case AuthOutcome::Unsupported: return "unsupported algorithm";
    case AuthOutcome::UnknownNonce: return "unknown nonce";
    case AuthOutcome::ExpiredNonce: return "expired nonce";
    case AuthOutcome::WrongSource: return "nonce issued to another address";
    case AuthOutcome::ReplayedNc: return "nonce count replayed";
    case AuthOutcome::UriMismatch: return "digest uri is not the Request-URI";
    case AuthOutcome::BadParameters: return "bad qop parameters";
    case AuthOutcome::WrongUser: return "wrong user";
    case AuthOutcome::WrongPassword: return "wrong password";
    case AuthOutcome::SourceBlocked: return "source blocked";
    case AuthOutcome::UserBlocked: return "user blocked";
  }
  return "?";
}

AuthResponse response_for(AuthOutcome o) {
  switch (o) {
    case AuthOutcome::Ok: return AuthResponse::Accept;
    case AuthOutcome::NoCredentials:
    case AuthOutcome::Unsupported: return AuthResponse::Challenge;
    case AuthOutcome::UnknownNonce:
    case AuthOutcome::ExpiredNonce:
    case AuthOutcome::WrongSource:
    case AuthOutcome::ReplayedNc: return AuthResponse::Stale;
    case AuthOutcome::UriMismatch:
    case AuthOutcome::BadParameters: return AuthResponse::BadRequest;
    case AuthOutcome::WrongUser:
    case AuthOutcome::WrongPassword: return AuthResponse::Forbidden;
    case AuthOutcome::SourceBlocked:
    case AuthOutcome::UserBlocked: return AuthResponse::Drop;
  }
  return AuthResponse::Drop;
}

Authenticator::Authenticator(std::string realm, AuthPolicy policy) : realm_(std::move(realm)), policy_(policy) {}

void Authenticator::forget_nonce(std::string_view nonce) {
  auto it = nonces_.find(nonce);
  if (it == nonces_.end()) return;
  auto src = nonces_by_source_.find(it->second.source);
  if (src != nonces_by_source_.end()) {
    auto& list = src->second;
    list.erase(std::remove(list.begin(), list.end(), nonce), list.end());
    if (list.empty()) nonces_by_source_.erase(src);
  }
  nonces_.erase(it);
}

void Authenticator::append_random_nonce(std::string& out) {
  constexpr std::size_t kBytes = 16;
  if (random_used_ + kBytes > random_pool_.size()) {
    if (RAND_bytes(random_pool_.data(), static_cast<int>(random_pool_.size())) != 1) {
      std::random_device rd;
      for (auto& b : random_pool_) b = static_cast<unsigned char>(rd());
    }
    random_used_ = 0;
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < kBytes; ++i) {
    unsigned char& b = random_pool_[random_used_ + i];
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
    b = 0;
  }
  random_used_ += kBytes;
}

std::string Authenticator::challenge(std::string_view source_ip, bool stale, Clock::time_point now) {
  std::string out;
  append_challenge(out, source_ip, stale, now);
  return out;
}

void Authenticator::append_challenge(std::string& out, std::string_view source_ip, bool stale, Clock::time_point now) {
  ++counters_.challenges;
  // Per source first: a host asking for nonces in a loop only evicts its own.
  auto own_it = nonces_by_source_.find(source_ip);
  if (own_it == nonces_by_source_.end()) own_it = nonces_by_source_.try_emplace(std::string(source_ip)).first;
  auto& own = own_it->second;
  while (own.size() >= policy_.max_nonces_per_source) {
    const std::string oldest = own.front();
    own.pop_front();
    nonces_.erase(oldest);
    ++counters_.nonces_evicted;
  }
  while (nonces_.size() >= policy_.max_nonces && !nonce_order_.empty()) {
    const std::string oldest = nonce_order_.front();
    nonce_order_.pop_front();
    if (nonces_.count(oldest)) {
      forget_nonce(oldest);
      ++counters_.nonces_evicted;
    }
  }
  // The order list keeps names of nonces already used; keep it proportional to the table.
  if (nonce_order_.size() > 2 * policy_.max_nonces + 16) {
    std::erase_if(nonce_order_, [&](const std::string& n) { return !nonces_.count(n); });
  }
  std::string nonce;
  nonce.reserve(32);
  append_random_nonce(nonce);
  // (forget_nonce() above may have dropped this source's list: looked up again.)
  auto mine = nonces_by_source_.find(source_ip);
  if (mine == nonces_by_source_.end()) mine = nonces_by_source_.try_emplace(std::string(source_ip)).first;
  mine->second.push_back(nonce);
  nonce_order_.push_back(nonce);
  out += "Digest realm=\"";
  out += realm_;
  out += "\", nonce=\"";
  out += nonce;
  out += "\", qop=\"auth\", algorithm=MD5";
  if (stale) out += ", stale=true";
  nonces_.insert_or_assign(std::move(nonce), Nonce{std::string(source_ip), now, 0});
}

bool Authenticator::blocked(const Table<Strikes>& table, std::string_view key, Clock::time_point now) {
  auto it = table.find(key);
  return it != table.end() && it->second.blocked_until > now;
}

bool Authenticator::source_blocked(std::string_view source_ip, Clock::time_point now) const {
  return blocked(sources_, source_ip, now);
}

void Authenticator::record_failure(Table<Strikes>& table, std::string_view key, Clock::time_point now) {
  auto it = table.find(key);
  if (it == table.end()) {
    if (table.size() >= policy_.max_tracked) {
      // Forget what no longer matters; if everything still does, drop one unblocked entry.
      std::erase_if(table, [&](const auto& kv) {
        return kv.second.blocked_until <= now && now - kv.second.last_seen > policy_.failure_window;
      });
      if (table.size() >= policy_.max_tracked) {
        auto victim =
            std::find_if(table.begin(), table.end(), [&](const auto& kv) { return kv.second.blocked_until <= now; });
        if (victim == table.end()) return;  // all blocked: this key waits for a slot
        table.erase(victim);
      }
    }
    it = table.emplace(std::string(key), Strikes{}).first;
  }
  auto& s = it->second;
  if (now - s.window_start > policy_.failure_window) {
    s.window_start = now;
    s.failures = 0;
  }
  s.last_seen = now;
  if (++s.failures >= policy_.max_failures) {
    // Back-off: each further block of the same key lasts twice as long.
    auto length = policy_.first_block * (1u << std::min<std::uint32_t>(s.blocks, 16));
    if (length > policy_.max_block) length = policy_.max_block;
    s.blocked_until = now + length;
    ++s.blocks;
    s.failures = 0;
    s.window_start = now;
    ++counters_.blocks;
  }
}

AuthResult Authenticator::verify(const AuthRequest& request, const PasswordLookup& password, Clock::time_point now) {
  AuthResult result;
  if (blocked(sources_, request.source_ip, now)) {
    ++counters_.blocked;
    result.outcome = AuthOutcome::SourceBlocked;
    return result;
  }
  // The first Digest credentials for our realm; other schemes and realms are not for us.
  std::optional<DigestCredentials> cred;
  for (auto value : request.credentials) {
    auto c = parse_digest_credentials(value);
    if (c && c->realm == realm_) {
      cred = *c;
      break;
    }
  }
  if (!cred) {
    result.outcome = AuthOutcome::NoCredentials;
    return result;
  }
  result.username = std::string(cred->username);
  if (!cred->algorithm.empty() && !iequals(cred->algorithm, "MD5")) {
    result.outcome = AuthOutcome::Unsupported;
    return result;
  }
  const bool with_qop = !cred->qop.empty();
  std::optional<std::uint64_t> nc;
  if (with_qop) {
    nc = parse_nc(cred->nc);
    if (!iequals(cred->qop, "auth") || cred->cnonce.empty() || !nc || *nc == 0) {
      result.outcome = AuthOutcome::BadParameters;
      return result;
    }
  }
  const std::string_view nonce_text = cred->nonce;  // into the request
  auto it = nonces_.find(nonce_text);
  if (it == nonces_.end()) {
    ++counters_.stale;
    result.outcome = AuthOutcome::UnknownNonce;
    return result;
  }
  Nonce& nonce = it->second;
  if (now - nonce.issued > policy_.nonce_lifetime || now < nonce.issued - std::chrono::seconds(5)) {
    ++counters_.stale;
    forget_nonce(nonce_text);
    result.outcome = AuthOutcome::ExpiredNonce;
    return result;
  }
  if (nonce.source != request.source_ip) {
    // Not forgotten: the address it was issued to may still answer with it.
    ++counters_.replays;
    result.outcome = AuthOutcome::WrongSource;
    return result;
  }
  if (with_qop ? *nc <= nonce.last_nc : nonce.last_nc != 0) {
    ++counters_.replays;
    result.outcome = AuthOutcome::ReplayedNc;
    return result;
  }
  if (!uri_matches(cred->uri, request.request_uri)) {
    ++counters_.replays;
    result.outcome = AuthOutcome::UriMismatch;
    return result;
  }
  const std::string_view user = user_key(cred->username);
  const auto trusted = trusted_source_.find(user);
  const bool from_trusted = trusted != trusted_source_.end() && trusted->second == request.source_ip;
  if (!from_trusted && blocked(users_, user, now)) {
    ++counters_.blocked;
    result.outcome = AuthOutcome::UserBlocked;
    return result;
  }
  // Each nonce answers at most one guess: a wrong answer consumes it.
  nonce.last_nc = with_qop ? *nc : 1;
  const auto secret = password(cred->username);
  // Unknown users cost the same hash as known ones, so timing does not tell them apart either.
  const std::string expected = digest_response(*cred, secret.value_or(std::string_view("\x01unknown")), request.method);
  // (An empty expected answer is a hashing failure, never a match for an empty response.)
  if (!secret || expected.empty() || !equal_secret(expected, cred->response)) {
    ++counters_.failures;
    forget_nonce(nonce_text);
    record_failure(sources_, request.source_ip, now);
    record_failure(users_, user, now);
    result.outcome = secret ? AuthOutcome::WrongPassword : AuthOutcome::WrongUser;
    return result;
  }
  if (trusted == trusted_source_.end()) {
    if (trusted_source_.size() >= policy_.max_tracked) trusted_source_.clear();
    trusted_source_.try_emplace(std::string(user), request.source_ip);
  } else if (trusted->second != request.source_ip) {
    trusted->second.assign(request.source_ip);
  }
  result.outcome = AuthOutcome::Ok;
  return result;
}

std::optional<std::string> Authenticator::summary(Clock::time_point now) {
  if (now - last_summary_ < policy_.summary_interval) return std::nullopt;
  const auto& c = counters_;
  const auto& s = summarized_;
  if (c.failures == s.failures && c.blocked == s.blocked && c.blocks == s.blocks && c.replays == s.replays) {
    return std::nullopt;
  }
  const auto blocked_now = [&](const Table<Strikes>& t) {
    return std::count_if(t.begin(), t.end(), [&](const auto& kv) { return kv.second.blocked_until > now; });
  };
  std::string line = fmt::format(
      "digest: {} failed, {} refused while blocked, {} new blocks, {} replays in the last {} s; "
      "{} sources and {} users blocked now",
      c.failures - s.failures, c.blocked - s.blocked, c.blocks - s.blocks, c.replays - s.replays,
      last_summary_ == Clock::time_point{}
          ? policy_.summary_interval.count()
          : std::chrono::duration_cast<std::chrono::seconds>(now - last_summary_).count(),
      blocked_now(sources_), blocked_now(users_));
  summarized_ = counters_;
  last_summary_ = now;
  return line;
}

}  // namespace ve::sip
