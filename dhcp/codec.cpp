// ve_dhcp_codec: phone classification, option 150/66 building, the lease-report format and Kea's
// memfile lease file.
// Input here comes from DHCP clients (option 60/55) and from a datagram socket: every length is
// checked, nothing throws.
#include <algorithm>
#include <charconv>
#include <map>

#include <nlohmann/json.hpp>

#include "dhcp/codec.hpp"

namespace ve::dhcp {

std::string_view to_string(PhoneReason r) {
  switch (r) {
    case PhoneReason::NotPhone: return "no";
    case PhoneReason::VendorClass: return "vendor-class";
    case PhoneReason::Oui: return "oui";
    case PhoneReason::Listed: return "listed";
  }
  return "?";
}

namespace {

std::optional<PhoneReason> parse_phone_reason(std::string_view text) {
  for (auto r : {PhoneReason::NotPhone, PhoneReason::VendorClass, PhoneReason::Oui, PhoneReason::Listed})
    if (to_string(r) == text) return r;
  return std::nullopt;
}

}  // namespace

PhoneMatcher::PhoneMatcher(const config::PhoneMatch& match, const std::vector<config::Phone>& phones) {
  for (const auto& p : match.vendor_class_prefixes)
    if (!p.empty()) prefixes_.push_back(p);  // an empty prefix would make every client a phone
  for (const auto& o : match.ouis)
    if (auto parsed = Oui::parse(o)) ouis_.push_back(*parsed);
  for (const auto& p : phones) listed_.push_back(p.mac);
  std::sort(listed_.begin(), listed_.end());
}

PhoneReason PhoneMatcher::classify(const std::optional<MacAddress>& mac,
                                   std::span<const std::uint8_t> vendor_class) const {
  if (mac) {
    if (std::binary_search(listed_.begin(), listed_.end(), *mac)) return PhoneReason::Listed;
    for (const auto& oui : ouis_)
      if (oui.matches(*mac)) return PhoneReason::Oui;
  }
  for (const auto& prefix : prefixes_) {
    if (vendor_class.size() < prefix.size()) continue;
    if (std::equal(prefix.begin(), prefix.end(), vendor_class.begin(),
                   [](char a, std::uint8_t b) { return static_cast<std::uint8_t>(a) == b; }))
      return PhoneReason::VendorClass;
  }
  return PhoneReason::NotPhone;
}

RequestedOptions RequestedOptions::parse(std::span<const std::uint8_t> prl) {
  RequestedOptions r;
  for (auto code : prl) r.codes_.set(code);
  return r;
}

PhoneOptions build_phone_options(PhoneReason reason, const RequestedOptions& requested, const config::Subnet* subnet) {
  PhoneOptions out;
  if (reason == PhoneReason::NotPhone || subnet == nullptr || subnet->tftp_servers.empty()) return out;
  if (reason == PhoneReason::Listed || requested.contains(kOptionTftpServers)) {
    for (const auto& s : subnet->tftp_servers) out.tftp_servers.push_back(s.value);
  }
  if (requested.contains(kOptionTftpServerName)) out.tftp_server_name = format_ipv4(subnet->tftp_servers.front().value);
  return out;
}

std::vector<std::uint8_t> encode_option150(std::span<const std::uint32_t> servers) {
  std::vector<std::uint8_t> out;
  out.reserve(servers.size() * 4);
  for (auto s : servers) {
    out.push_back(static_cast<std::uint8_t>(s >> 24));
    out.push_back(static_cast<std::uint8_t>(s >> 16));
    out.push_back(static_cast<std::uint8_t>(s >> 8));
    out.push_back(static_cast<std::uint8_t>(s));
  }
  return out;
}

const config::Subnet* find_subnet(const std::vector<config::Subnet>& subnets, std::uint32_t network, int length) {
  for (const auto& s : subnets)
    if (s.prefix.length == length && (s.prefix.network.value & s.prefix.mask()) == (network & s.prefix.mask()))
      return &s;
  return nullptr;
}

const config::Subnet* find_subnet_containing(const std::vector<config::Subnet>& subnets, std::uint32_t address) {
  const config::Subnet* best = nullptr;
  for (const auto& s : subnets) {
    if ((address & s.prefix.mask()) != (s.prefix.network.value & s.prefix.mask())) continue;
    if (best == nullptr || s.prefix.length > best->prefix.length) best = &s;  // longest match
  }
  return best;
}

std::string printable(std::span<const std::uint8_t> bytes, std::size_t max_len) {
  std::string out;
  const std::size_t n = std::min(bytes.size(), max_len);
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = bytes[i];
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  return out;
}

std::string printable(std::string_view text, std::size_t max_len) {
  return printable(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), max_len);
}

std::string_view to_string(LeaseEventKind k) {
  switch (k) {
    case LeaseEventKind::Offer: return "offer";
    case LeaseEventKind::Ack: return "ack";
    case LeaseEventKind::Release: return "release";
    case LeaseEventKind::Decline: return "decline";
    case LeaseEventKind::Expire: return "expire";
  }
  return "?";
}

std::optional<LeaseEventKind> parse_lease_event_kind(std::string_view text) {
  for (auto k : {LeaseEventKind::Offer, LeaseEventKind::Ack, LeaseEventKind::Release, LeaseEventKind::Decline,
                 LeaseEventKind::Expire})
    if (to_string(k) == text) return k;
  return std::nullopt;
}

std::string_view to_string(ReportError e) {
  switch (e) {
    case ReportError::Empty: return "empty datagram";
    case ReportError::TooLarge: return "datagram too large";
    case ReportError::NotJson: return "not JSON";
    case ReportError::NotObject: return "not a JSON object";
    case ReportError::BadVersion: return "unknown report version";
    case ReportError::MissingField: return "missing field";
    case ReportError::BadField: return "bad field";
  }
  return "?";
}

namespace {

// `"key":"text"` for printable ASCII text, escaped as JSON (only '"' and '\\' need it).
void append_string(std::string& out, std::string_view key, std::string_view text) {
  out += '"';
  out += key;
  out += "\":\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_number(std::string& out, std::string_view key, std::uint64_t value) {
  out += '"';
  out += key;
  out += "\":";
  out += std::to_string(value);
}

}  // namespace

std::string encode_lease_report(const LeaseReport& r) {
  // Written directly rather than through a JSON DOM: Kea's thread encodes two reports per DORA,
  // and the DOM was 17 % of Kea's instructions per DORA (bench/dhcp MODE=instructions). Keys in
  // the order nlohmann's object keeps them, so the bytes are what json::dump() gave (tested).
  // Strings are printable ASCII and bounded, so the datagram stays under kMaxReportBytes.
  std::string out;
  out.reserve(256);
  out += '{';
  append_string(out, "event", to_string(r.kind));
  out += ',';
  append_string(out, "hostname", printable(r.hostname));
  out += ',';
  append_string(out, "ip", format_ipv4(r.ip));
  out += ',';
  append_number(out, "lifetime", r.lifetime_s);
  out += ',';
  append_string(out, "mac", r.mac.to_string());
  out += ',';
  append_string(out, "phone", to_string(r.phone));
  out += ',';
  append_string(out, "subnet", printable(r.subnet, 18));
  if (r.time_ms != 0) {
    out += ',';
    append_number(out, "time_ms", r.time_ms);
  }
  out += ',';
  append_number(out, "v", 1);
  out += ',';
  append_string(out, "vendor_class", printable(r.vendor_class));
  out += '}';
  return out;
}

Result<LeaseReport, ReportError> decode_lease_report(std::span<const std::uint8_t> datagram) {
  if (datagram.empty()) return unexpected(ReportError::Empty);
  if (datagram.size() > kMaxReportBytes) return unexpected(ReportError::TooLarge);
  // No exceptions: a parse error yields a "discarded" value.
  const auto j = nlohmann::json::parse(datagram.begin(), datagram.end(), nullptr, false);
  if (j.is_discarded()) return unexpected(ReportError::NotJson);
  if (!j.is_object()) return unexpected(ReportError::NotObject);

  auto str = [&](const char* key) -> const std::string* {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return nullptr;
    return it->get_ptr<const std::string*>();
  };
  auto version = j.find("v");
  if (version == j.end() || !version->is_number_unsigned() || version->get<std::uint64_t>() != 1)
    return unexpected(ReportError::BadVersion);

  const auto* event = str("event");
  const auto* mac = str("mac");
  const auto* ip = str("ip");
  if (event == nullptr || mac == nullptr || ip == nullptr) return unexpected(ReportError::MissingField);

  LeaseReport r;
  auto kind = parse_lease_event_kind(*event);
  auto parsed_mac = MacAddress::parse(*mac);
  auto parsed_ip = parse_ipv4(*ip);
  if (!kind || !parsed_mac || !parsed_ip) return unexpected(ReportError::BadField);
  r.kind = *kind;
  r.mac = *parsed_mac;
  r.ip = *parsed_ip;
  if (const auto* s = str("subnet")) {
    if (!s->empty() && !parse_ipv4_prefix(*s)) return unexpected(ReportError::BadField);
    r.subnet = *s;
  }
  if (const auto* s = str("hostname")) r.hostname = printable(*s);
  if (const auto* s = str("vendor_class")) r.vendor_class = printable(*s);
  if (const auto* s = str("phone")) {
    auto reason = parse_phone_reason(*s);
    if (!reason) return unexpected(ReportError::BadField);
    r.phone = *reason;
  }
  if (auto it = j.find("lifetime"); it != j.end()) {
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() > 0xffffffffu) return unexpected(ReportError::BadField);
    r.lifetime_s = static_cast<std::uint32_t>(it->get<std::uint64_t>());
  }
  if (auto it = j.find("time_ms"); it != j.end()) {
    if (!it->is_number_unsigned()) return unexpected(ReportError::BadField);
    r.time_ms = it->get<std::uint64_t>();
  }
  return r;
}

namespace {

std::vector<std::string_view> split_csv_row(std::string_view line) {
  // Kea escapes commas inside fields (&#x2c), so a plain split is exact.
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto comma = line.find(',', start);
    out.push_back(line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && next == text.data() + text.size();
}

}  // namespace

std::vector<MemfileLease> parse_memfile_leases(std::string_view csv) {
  std::map<std::uint32_t, MemfileLease> by_address;
  std::vector<std::string> columns;
  int col_address = -1, col_hwaddr = -1, col_valid = -1, col_expire = -1, col_hostname = -1, col_state = -1;
  std::size_t pos = 0;
  while (pos < csv.size()) {
    auto nl = csv.find('\n', pos);
    auto line = csv.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? csv.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const auto fields = split_csv_row(line);
    if (col_address < 0) {  // header
      for (std::size_t i = 0; i < fields.size(); ++i) {
        const int idx = static_cast<int>(i);
        if (fields[i] == "address")
          col_address = idx;
        else if (fields[i] == "hwaddr")
          col_hwaddr = idx;
        else if (fields[i] == "valid_lifetime")
          col_valid = idx;
        else if (fields[i] == "expire")
          col_expire = idx;
        else if (fields[i] == "hostname")
          col_hostname = idx;
        else if (fields[i] == "state")
          col_state = idx;
      }
      if (col_address < 0 || col_hwaddr < 0 || col_valid < 0 || col_expire < 0) return {};
      continue;
    }
    auto field = [&](int idx) -> std::string_view {
      return idx >= 0 && static_cast<std::size_t>(idx) < fields.size() ? fields[static_cast<std::size_t>(idx)] : "";
    };
    MemfileLease l;
    auto ip = parse_ipv4(field(col_address));
    auto mac = MacAddress::parse(field(col_hwaddr));
    if (!ip || !mac || !parse_number(field(col_valid), l.valid_lifetime_s) ||
        !parse_number(field(col_expire), l.expire))
      continue;
    l.ip = *ip;
    l.mac = *mac;
    l.hostname = printable(field(col_hostname));
    if (!field(col_state).empty() && !parse_number(field(col_state), l.state)) continue;
    by_address[l.ip] = std::move(l);
  }
  std::vector<MemfileLease> out;
  out.reserve(by_address.size());
  for (auto& [ip, l] : by_address) out.push_back(std::move(l));
  return out;
}

}  // namespace ve::dhcp
