// Secret scrubbing. Same-length masks keep packet lengths (and so every other field) intact.
#include <algorithm>
#include <cctype>
#include <map>
#include <tuple>

#include "diag/diag.hpp"

namespace ve::diag {
namespace {

template <typename Buffer>
void scrub_buffer(Buffer& data, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.empty() || secret.size() > data.size()) continue;
    auto begin = data.begin();
    while (true) {
      auto it = std::search(begin, data.end(), secret.begin(), secret.end(),
                            [](auto a, char b) { return static_cast<char>(a) == b; });
      if (it == data.end()) break;
      std::fill(it, it + static_cast<long>(secret.size()), '*');
      begin = it + static_cast<long>(secret.size());
    }
  }
}

bool names_secret(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find("password") != std::string::npos || lower.find("secret") != std::string::npos ||
         lower.find("passwd") != std::string::npos;
}

}  // namespace

void scrub(std::string& text, const std::vector<std::string>& secrets) { scrub_buffer(text, secrets); }
void scrub(Bytes& data, const std::vector<std::string>& secrets) { scrub_buffer(data, secrets); }

void scrub(std::vector<Packet>& packets, const std::vector<std::string>& secrets) {
  for (auto& p : packets) scrub(p.data, secrets);
  // Across boundaries: per flow, the payloads in order as one stream (TFTP DATA headers skipped),
  // with a map back to (packet, offset) for every byte.
  using Flow = std::tuple<std::uint32_t, std::uint32_t, std::uint8_t, std::uint16_t, std::uint16_t>;
  struct Piece {
    std::size_t packet;
    std::size_t offset;
    std::size_t length;
  };
  std::map<Flow, std::vector<Piece>> flows;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    auto info = classify_frame(packets[i].data);
    if (!info || !info->ipv4 || info->payload_length == 0) continue;
    std::size_t off = info->payload_offset;
    std::size_t len = std::min(info->payload_length, packets[i].data.size() - std::min(off, packets[i].data.size()));
    if (info->ip_protocol == 17 && len >= 4 && packets[i].data[off] == 0 && packets[i].data[off + 1] == 3) {
      off += 4;  // TFTP DATA: opcode + block number
      len -= 4;
    }
    if (len == 0) continue;
    flows[{info->ip_source, info->ip_destination, info->ip_protocol, info->source_port, info->destination_port}]
        .push_back({i, off, len});
  }
  for (auto& [flow, pieces] : flows) {
    if (pieces.size() < 2) continue;
    for (std::size_t k = 0; k + 1 < pieces.size(); ++k) {
      // Each pair of neighbours: the tail of one and the head of the next.
      const Piece& a = pieces[k];
      const Piece& b = pieces[k + 1];
      for (const auto& secret : secrets) {
        if (secret.size() < 2) continue;
        const std::size_t take_a = std::min(a.length, secret.size() - 1);
        const std::size_t take_b = std::min(b.length, secret.size() - 1);
        std::string joined(packets[a.packet].data.begin() + static_cast<long>(a.offset + a.length - take_a),
                           packets[a.packet].data.begin() + static_cast<long>(a.offset + a.length));
        joined.append(packets[b.packet].data.begin() + static_cast<long>(b.offset),
                      packets[b.packet].data.begin() + static_cast<long>(b.offset + take_b));
        std::size_t pos = 0;
        while ((pos = joined.find(secret, pos)) != std::string::npos) {
          for (std::size_t j = pos; j < pos + secret.size(); ++j) {
            if (j < take_a)
              packets[a.packet].data[a.offset + a.length - take_a + j] = '*';
            else
              packets[b.packet].data[b.offset + (j - take_a)] = '*';
          }
          pos += secret.size();
        }
      }
    }
  }
}

std::string mask_xml_passwords(const std::string& xml) {
  std::string out;
  out.reserve(xml.size());
  std::size_t i = 0;
  while (i < xml.size()) {
    const std::size_t lt = xml.find('<', i);
    if (lt == std::string::npos) {
      out.append(xml, i, std::string::npos);
      break;
    }
    out.append(xml, i, lt - i);
    const std::size_t gt = xml.find('>', lt);
    if (gt == std::string::npos) {
      out.append(xml, lt, std::string::npos);
      break;
    }
    std::string tag = xml.substr(lt, gt - lt + 1);
    // Attributes: name="value" with a secret-like name.
    std::size_t eq = 0;
    while ((eq = tag.find('=', eq)) != std::string::npos) {
      std::size_t name_end = eq;
      std::size_t name_begin = name_end;
      while (name_begin > 0 && (std::isalnum(static_cast<unsigned char>(tag[name_begin - 1])) ||
                                tag[name_begin - 1] == '_' || tag[name_begin - 1] == '-'))
        --name_begin;
      const std::size_t q = eq + 1;
      if (q < tag.size() && (tag[q] == '"' || tag[q] == '\'')) {
        const std::size_t close = tag.find(tag[q], q + 1);
        if (close != std::string::npos && names_secret(tag.substr(name_begin, name_end - name_begin)))
          tag.replace(q + 1, close - q - 1, "********");
      }
      ++eq;
    }
    out += tag;
    i = gt + 1;
    const bool opening =
        tag.size() > 2 && tag[1] != '/' && tag[1] != '?' && tag[1] != '!' && tag[tag.size() - 2] != '/';
    if (!opening) continue;
    std::size_t name_end = 1;
    while (name_end < tag.size() && !std::isspace(static_cast<unsigned char>(tag[name_end])) && tag[name_end] != '>')
      ++name_end;
    const std::string name = tag.substr(1, name_end - 1);
    if (!names_secret(name)) continue;
    const std::size_t next = xml.find('<', i);
    if (next == std::string::npos) continue;
    if (next > i) out += "********";
    i = next;
  }
  return out;
}

}  // namespace ve::diag
