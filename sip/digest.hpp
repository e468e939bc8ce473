#pragma once
// HTTP digest for SIP (RFC 2617 / RFC 7616, MD5, qop=auth) and self-validating nonces.
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "sip/sip.hpp"

namespace ve::sip {

std::string md5_hex(std::string_view data);

// Expected `response` for credentials `c` given the user's password and the request method.
std::string digest_response(const DigestCredentials& c, std::string_view password, std::string_view method);

// Nonces carry their creation time and a keyed hash of it, so the server keeps no nonce table
// and a nonce from another process (a restart) fails validation and is answered stale=true.
class NonceSource {
 public:
  NonceSource();  // random key
  explicit NonceSource(std::string key) : key_(std::move(key)) {}
  std::string make(std::chrono::system_clock::time_point now) const;
  enum class Check { Valid, Stale, Forged };
  Check check(std::string_view nonce, std::chrono::system_clock::time_point now, std::chrono::seconds lifetime) const;

 private:
  std::string key_;
};

// Constant-time comparison of two hex strings.
bool equal_secret(std::string_view a, std::string_view b);

}  // namespace ve::sip
