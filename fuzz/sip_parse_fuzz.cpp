// Feeds arbitrary bytes to the SIP parser the way the registrar and the proxy do: whole-message
// parse, the request checks, the lazy typed parsers on every header (the proxy's paths for an
// INVITE and its responses: Via branch and sent-by, From/To tags, Route and Record-Route lists,
// Proxy-Authorization, the Request-URI's user and host), the salvage path for 400s, and the TCP
// framer with the input cut into reads at data-dependent points. Seeds include the RFC 4475
// torture messages.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sip/sip.hpp"

using namespace ve::sip;

namespace {

void touch_headers(const Message& m) {
  for (const auto& h : m.headers) {
    switch (h.type) {
      case HeaderType::Via:
        for (auto v : split_list(h.value)) {
          if (auto via = parse_via(v)) (void)via->branch();
        }
        break;
      case HeaderType::From:
      case HeaderType::To:
      case HeaderType::Contact:
      case HeaderType::Route:
      case HeaderType::RecordRoute:
        for (auto v : split_list(h.value)) {
          if (auto na = parse_name_addr(v); na && !na->star) {
            (void)na->tag();
            if (auto u = parse_uri(na->uri)) (void)find_param(u->params, "lr");
          }
        }
        break;
      case HeaderType::CSeq: (void)parse_cseq(h.value); break;
      case HeaderType::Expires:
      case HeaderType::ContentLength:
      case HeaderType::MaxForwards: (void)parse_uint(h.value); break;
      case HeaderType::Authorization:
      case HeaderType::ProxyAuthorization: (void)parse_digest_credentials(h.value); break;
      default: (void)collapse_whitespace(h.value); break;
    }
  }
  if (m.is_request) {
    (void)parse_uri(m.request_uri);
    (void)request_defect(m);  // the registrar's checks before method dispatch
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Limits limits;
  if (auto m = parse_message(bytes, limits)) {
    touch_headers(*m);
  } else if (auto s = salvage_request(bytes, limits)) {
    touch_headers(*s);
  }

  StreamFramer framer(limits);
  std::size_t pos = 0;
  std::size_t step = size == 0 ? 1 : 1 + data[0] % 64;
  while (pos < size) {
    const auto n = std::min(step, size - pos);
    framer.append(bytes.substr(pos, n));
    pos += n;
    while (true) {
      auto f = framer.next();
      if (!f) return 0;  // the stream would be closed
      if (!*f) break;
      if ((*f)->kind == StreamFramer::Frame::Kind::Message) {
        if (auto m = parse_message((*f)->bytes, limits)) touch_headers(*m);
      }
      framer.consume();
    }
  }
  return 0;
}
