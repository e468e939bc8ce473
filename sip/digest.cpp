// Digest authentication with OpenSSL's MD5.
#include "sip/digest.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <initializer_list>
#include <random>

namespace ve::sip {
namespace {

std::string to_hex(const unsigned char* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

// OpenSSL 3 looks the algorithm up on every EVP_md5() use; fetch it once. Immutable afterwards.
const EVP_MD* md5_algorithm() {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "MD5", nullptr);
    return fetched ? fetched : EVP_md5();
  }();
  return md;
}

}  // namespace

std::string md5_hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md5_algorithm(), nullptr) != 1) return {};
  return to_hex(out, len);
}

namespace {
// One MD5 context for the three hashes of a response (EVP_Digest makes and frees one per hash);
// the parts are hashed in place, so A1, which holds the password, is never copied into a string.
class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) {}
  ~Md5() { EVP_MD_CTX_free(ctx_); }
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  // Lowercase hex of MD5(parts...) into out[0..32); false when OpenSSL fails.
  bool hex(std::initializer_list<std::string_view> parts, char* out) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, md5_algorithm(), nullptr) != 1) return false;
    for (auto p : parts)
      if (EVP_DigestUpdate(ctx_, p.data(), p.size()) != 1) return false;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_, digest, &len) != 1 || len != 16) return false;
    static constexpr char kDigits[] = "0123456789abcdef";
    for (unsigned i = 0; i < 16; ++i) {
      out[2 * i] = kDigits[digest[i] >> 4];
      out[2 * i + 1] = kDigits[digest[i] & 0xf];
    }
    OPENSSL_cleanse(digest, sizeof digest);
    return true;
  }

 private:
  EVP_MD_CTX* ctx_;
};
}  // namespace

std::string digest_response(const DigestCredentials& c, std::string_view password, std::string_view method) {
  Md5 md5;
  char ha1[32], ha2[32], response[32];
  bool ok = md5.hex({c.username, ":", c.realm, ":", password}, ha1) && md5.hex({method, ":", c.uri}, ha2);
  const std::string_view h1(ha1, 32), h2(ha2, 32);
  if (ok) {
    ok = c.qop.empty() ? md5.hex({h1, ":", c.nonce, ":", h2}, response)
                       : md5.hex({h1, ":", c.nonce, ":", c.nc, ":", c.cnonce, ":", c.qop, ":", h2}, response);
  }
  // Scrub the password-derived intermediate before the stack frame is reused.
  OPENSSL_cleanse(ha1, sizeof ha1);
  if (!ok) return {};
  return std::string(response, 32);
}

NonceSource::NonceSource() {
  std::random_device rd;
  std::string key;
  for (int i = 0; i < 4; ++i) {
    const auto v = rd();
    key.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  key_ = to_hex(reinterpret_cast<const unsigned char*>(key.data()), key.size());
}

std::string NonceSource::make(std::chrono::system_clock::time_point now) const {
  const auto secs =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  unsigned char ts[8];
  for (int i = 0; i < 8; ++i) ts[i] = static_cast<unsigned char>(secs >> (56 - 8 * i));
  std::string stamp = to_hex(ts, 8);
  return stamp + md5_hex(stamp + ":" + key_);
}

NonceSource::Check NonceSource::check(std::string_view nonce, std::chrono::system_clock::time_point now,
                                      std::chrono::seconds lifetime) const {
  if (nonce.size() != 16 + 32) return Check::Forged;
  const auto stamp = nonce.substr(0, 16);
  std::uint64_t secs = 0;
  for (char c : stamp) {
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) return Check::Forged;
    secs = secs << 4 | static_cast<std::uint64_t>(v);
  }
  if (!equal_secret(nonce.substr(16), md5_hex(std::string(stamp) + ":" + key_))) return Check::Forged;
  const auto now_s =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  if (secs > now_s + 5) return Check::Forged;  // from the future: not ours
  if (now_s - std::min(now_s, secs) > static_cast<std::uint64_t>(lifetime.count())) return Check::Stale;
  return Check::Valid;
}

bool equal_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'F') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'F') y = static_cast<char>(y - 'A' + 'a');
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace ve::sip
