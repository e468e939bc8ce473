// The site file's schema: which keys exist, their types, ranges and defaults, and the checks that
// span keys (pools inside prefixes, duplicates). Defaults live in config.hpp's member initialisers
// and are documented in docs/config.md; this file only overrides them with what the file says.
//
// Every problem is collected as a ConfigError with the position of the offending node, so a user
// sees all of them at once.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "config/config.hpp"

namespace ve::config {
namespace {

class Reader {
 public:
  Reader(std::string file, std::filesystem::path base_dir) : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  void error(const YAML::Mark& mark, const std::string& path, const std::string& message) {
    ConfigError e;
    e.file = file_;
    if (mark.line >= 0) {
      e.line = mark.line + 1;  // yaml-cpp marks are 0-based
      e.column = mark.column + 1;
    }
    e.key_path = path;
    e.message = path.empty() ? message : fmt::format("{}: {}", path, message);
    errors_.push_back(std::move(e));
  }
  void error(const YAML::Node& node, const std::string& path, const std::string& message) {
    error(node.Mark(), path, message);
  }

  void warning(const YAML::Mark& mark, const std::string& path, const std::string& message) {
    error(mark, path, message);
    warnings_.push_back(std::move(errors_.back()));
    errors_.pop_back();
  }

  std::vector<ConfigError>& errors() { return errors_; }
  std::vector<ConfigError>& warnings() { return warnings_; }
  const std::filesystem::path& base_dir() const { return base_dir_; }

 private:
  std::string file_;
  std::filesystem::path base_dir_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }
std::string index(const std::string& path, std::size_t i) { return fmt::format("{}[{}]", path, i); }

// A YAML mapping with a fixed set of allowed keys. Unknown and duplicate keys are errors at
// the key's own position.
class MapView {
 public:
  MapView(Reader& r, const YAML::Node& node, std::string path, std::initializer_list<const char*> allowed)
      : r_(r), node_(node), path_(std::move(path)) {
    if (!node || node.IsNull()) return;
    if (!node.IsMap()) {
      r_.error(node, path_, "expected a mapping");
      return;
    }
    ok_ = true;
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const auto key = kv.first.Scalar();
      if (!seen.insert(key).second) {
        r_.error(kv.first, join(path_, key), "duplicate key");
        continue;
      }
      if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) == allowed.end()) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        r_.error(kv.first, join(path_, key), fmt::format("unknown key (allowed here: {})", list));
      }
    }
  }

  bool present() const { return ok_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  YAML::Node child(const char* key) const { return ok_ ? node_[key] : YAML::Node(); }
  bool has(const char* key) const {
    if (!ok_) return false;
    auto n = node_[key];
    return n && !n.IsNull();
  }
  std::string child_path(const char* key) const { return join(path_, key); }

  void require(const char* key) {
    if (ok_ && !has(key)) r_.error(node_, path_, fmt::format("missing required key '{}'", key));
  }

  bool get_string(const char* key, std::string& out) {
    auto n = child(key);
    if (!n || n.IsNull()) return false;
    if (!n.IsScalar()) {
      r_.error(n, child_path(key), "expected a string");
      return false;
    }
    out = n.Scalar();
    return true;
  }

  bool get_bool(const char* key, bool& out) {
    auto n = child(key);
    if (!n || n.IsNull()) return false;
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
      r_.error(n, child_path(key), fmt::format("expected true or false, got '{}'", scalar_or(n)));
      return false;
    }
    out = v;
    return true;
  }

  bool get_int(const char* key, int& out, long lo, long hi) {
    auto n = child(key);
    if (!n || n.IsNull()) return false;
    long v = 0;
    if (!n.IsScalar() || !parse_long(n.Scalar(), v)) {
      r_.error(n, child_path(key), fmt::format("expected an integer, got '{}'", scalar_or(n)));
      return false;
    }
    if (v < lo || v > hi) {
      r_.error(n, child_path(key), fmt::format("{} is out of range {}-{}", v, lo, hi));
      return false;
    }
    out = static_cast<int>(v);
    return true;
  }

  bool get_double(const char* key, double& out, double lo, double hi) {
    auto n = child(key);
    if (!n || n.IsNull()) return false;
    double v = 0;
    if (!n.IsScalar() || !parse_double(n.Scalar(), v)) {
      r_.error(n, child_path(key), fmt::format("expected a number, got '{}'", scalar_or(n)));
      return false;
    }
    if (v < lo || v > hi) {
      r_.error(n, child_path(key), fmt::format("{} is out of range {}-{}", v, lo, hi));
      return false;
    }
    out = v;
    return true;
  }

  template <typename E>
  bool get_enum(const char* key, E& out, std::initializer_list<std::pair<const char*, E>> choices) {
    std::string s;
    auto n = child(key);
    if (!get_string(key, s)) return false;
    for (const auto& [name, value] : choices) {
      if (s == name) {
        out = value;
        return true;
      }
    }
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + std::string(c.first);
    r_.error(n, child_path(key), fmt::format("'{}' is not one of: {}", s, list));
    return false;
  }

  // A sequence of scalars; reports non-scalars.
  std::vector<std::pair<std::string, YAML::Node>> get_scalar_list(const char* key) {
    std::vector<std::pair<std::string, YAML::Node>> out;
    auto n = child(key);
    if (!n || n.IsNull()) return out;
    if (!n.IsSequence()) {
      r_.error(n, child_path(key), "expected a list");
      return out;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        r_.error(n[i], index(child_path(key), i), "expected a string");
        continue;
      }
      out.emplace_back(n[i].Scalar(), n[i]);
    }
    return out;
  }

  YAML::Node get_list(const char* key) {
    auto n = child(key);
    if (!n || n.IsNull()) return YAML::Node();
    if (!n.IsSequence()) {
      r_.error(n, child_path(key), "expected a list");
      return YAML::Node();
    }
    return n;
  }

  static bool parse_long(const std::string& s, long& out) {
    if (s.empty()) return false;
    std::size_t pos = 0;
    try {
      out = std::stol(s, &pos, 10);
    } catch (...) {
      return false;
    }
    return pos == s.size();
  }
  static bool parse_double(const std::string& s, double& out) {
    if (s.empty()) return false;
    std::size_t pos = 0;
    try {
      out = std::stod(s, &pos);
    } catch (...) {
      return false;
    }
    return pos == s.size();
  }
  static std::string scalar_or(const YAML::Node& n) {
    if (n.IsScalar()) return n.Scalar();
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "nothing";
  }

 private:
  Reader& r_;
  YAML::Node node_;
  std::string path_;
  bool ok_ = false;
};

std::optional<Ipv4> read_ipv4(Reader& r, const YAML::Node& n, const std::string& path, const std::string& text) {
  auto a = Ipv4::parse(text);
  if (!a) r.error(n, path, fmt::format("'{}' is not an IPv4 address", text));
  return a;
}

std::optional<Endpoint> parse_endpoint(Reader& r, const YAML::Node& n, const std::string& path, const std::string& text,
                                       bool with_transport) {
  std::string rest = text;
  Endpoint ep;
  if (with_transport) {
    auto colon = rest.find(':');
    if (colon == std::string::npos) {
      r.error(n, path, fmt::format("'{}' is not TRANSPORT:ADDRESS:PORT (e.g. udp:0.0.0.0:5060)", text));
      return std::nullopt;
    }
    ep.transport = rest.substr(0, colon);
    rest = rest.substr(colon + 1);
    if (ep.transport != "udp" && ep.transport != "tcp") {
      r.error(n, path, fmt::format("transport '{}' is not udp or tcp", ep.transport));
      return std::nullopt;
    }
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    r.error(n, path, fmt::format("'{}' is not ADDRESS:PORT", text));
    return std::nullopt;
  }
  ep.host = rest.substr(0, colon);
  if (!Ipv4::parse(ep.host)) {
    r.error(n, path, fmt::format("'{}' is not an IPv4 address", ep.host));
    return std::nullopt;
  }
  long port = 0;
  if (!MapView::parse_long(rest.substr(colon + 1), port) || port < 0 || port > 65535) {
    r.error(n, path, fmt::format("'{}' is not a port number 0-65535", rest.substr(colon + 1)));
    return std::nullopt;
  }
  ep.port = static_cast<std::uint16_t>(port);
  return ep;
}

void read_endpoint(Reader& r, MapView& m, const char* key, Endpoint& out, const char* transport) {
  std::string s;
  if (!m.get_string(key, s)) return;
  if (auto ep = parse_endpoint(r, m.child(key), m.child_path(key), s, false)) {
    ep->transport = transport;
    out = *ep;
  }
}

void read_site(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["site"], "site", {"name", "timezone", "locale"});
  m.get_string("name", c.site.name);
  m.get_string("timezone", c.site.timezone);
  m.get_string("locale", c.site.locale);
  if (c.site.name.empty()) r.error(m.child("name"), "site.name", "must not be empty");
}

void read_control(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["control"], "control", {"socket", "http", "read_group", "admin_group"});
  m.get_string("socket", c.control.socket);
  // POSIX portable user/group names (useradd's rule) or a numeric GID.
  const auto group_ok = [](const std::string& g) {
    if (g.empty()) return true;
    if (std::all_of(g.begin(), g.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return g.size() <= 10;
    if (g.size() > 32 || g.front() == '-') return false;
    return std::all_of(g.begin(), g.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
             ch == '-' || ch == '.';
    });
  };
  for (const char* key : {"read_group", "admin_group"}) {
    std::string& value = std::string_view(key) == "read_group" ? c.control.read_group : c.control.admin_group;
    if (m.get_string(key, value) && !group_ok(value))
      r.error(m.child(key), std::string("control.") + key, "'" + value + "' is not a group name or numeric GID");
  }
  if (c.control.socket.size() >= 108) r.error(m.child("socket"), "control.socket", "path longer than 107 bytes");
  std::string http;
  if (m.get_string("http", http) && !http.empty() && http != "off") {
    if (auto ep = parse_endpoint(r, m.child("http"), "control.http", http, false)) {
      ep->transport = "tcp";
      c.control.http = *ep;
    }
  }
}

void read_ports(Reader& r, const YAML::Node& root, SiteConfig& c) {
  auto list = root["ports"];
  if (!list || list.IsNull()) return;
  if (!list.IsSequence()) {
    r.error(list, "ports", "expected a list");
    return;
  }
  std::map<std::string, YAML::Node> names;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto path = index("ports", i);
    MapView m(r, list[i], path, {"name", "voice_vlan", "data_vlan", "poe"});
    if (!m.present()) {
      if (!list[i].IsMap()) continue;
    }
    m.require("name");
    Port p;
    m.get_string("name", p.name);
    if (!p.name.empty() && (p.name.size() > 15 || p.name.find('/') != std::string::npos)) {
      r.error(m.child("name"), m.child_path("name"), fmt::format("'{}' is not a valid interface name", p.name));
    }
    m.get_int("voice_vlan", p.voice_vlan, 1, 4094);
    m.get_int("data_vlan", p.data_vlan, 1, 4094);
    if (p.voice_vlan != 0 && p.voice_vlan == p.data_vlan) {
      r.error(m.child("voice_vlan"), m.child_path("voice_vlan"),
              fmt::format("voice VLAN {} equals the data VLAN", p.voice_vlan));
    }
    MapView poe(r, m.child("poe"), m.child_path("poe"), {"mode", "priority", "max_watts"});
    poe.get_enum("mode", p.poe.mode, {{"auto", PoeMode::Auto}, {"off", PoeMode::Off}, {"static", PoeMode::Static}});
    poe.get_enum("priority", p.poe.priority,
                 {{"critical", PoePriority::Critical}, {"high", PoePriority::High}, {"low", PoePriority::Low}});
    poe.get_double("max_watts", p.poe.max_watts, 0.0, 100.0);
    if (!p.name.empty()) {
      auto [it, inserted] = names.emplace(p.name, m.child("name"));
      if (!inserted) {
        r.error(m.child("name"), m.child_path("name"),
                fmt::format("duplicate port '{}' (first at line {})", p.name, it->second.Mark().line + 1));
      }
    }
    c.ports.push_back(std::move(p));
  }
}

void read_cdp_lldp(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView cdp(r, root["cdp"], "cdp", {"enabled", "interval_s", "holdtime_s", "fast_start_count"});
  cdp.get_bool("enabled", c.cdp.enabled);
  cdp.get_int("interval_s", c.cdp.interval_s, 5, 900);
  cdp.get_int("holdtime_s", c.cdp.holdtime_s, 10, 255);  // CDP's TTL is one byte
  cdp.get_int("fast_start_count", c.cdp.fast_start_count, 0, 10);
  if (c.cdp.holdtime_s < c.cdp.interval_s) {
    r.error(cdp.has("holdtime_s") ? cdp.child("holdtime_s") : cdp.node(), "cdp.holdtime_s",
            fmt::format("holdtime {} s is shorter than the interval {} s: neighbours would expire between frames",
                        c.cdp.holdtime_s, c.cdp.interval_s));
  }
  MapView lldp(r, root["lldp"], "lldp", {"enabled", "med", "voice_priority", "voice_dscp"});
  lldp.get_bool("enabled", c.lldp.enabled);
  lldp.get_bool("med", c.lldp.med);
  lldp.get_int("voice_priority", c.lldp.voice_priority, 0, 7);
  lldp.get_int("voice_dscp", c.lldp.voice_dscp, 0, 63);
}

void read_diagnostics(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["diagnostics"], "diagnostics",
            {"boot_capture_per_phone_kib", "boot_capture_total_mib", "boot_timeout_s"});
  m.get_int("boot_capture_per_phone_kib", c.diagnostics.boot_capture_per_phone_kib, 16, 65536);
  m.get_int("boot_capture_total_mib", c.diagnostics.boot_capture_total_mib, 1, 65536);
  m.get_int("boot_timeout_s", c.diagnostics.boot_timeout_s, 30, 86400);
}

void read_poe(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["poe"], "poe", {"driver", "budget_watts", "sim", "sim_pse"});
  std::string driver;
  if (m.get_string("driver", driver)) {
    if (driver != "sim" && driver != "linux-pse") {
      r.error(m.child("driver"), "poe.driver", fmt::format("'{}' is not one of: sim, linux-pse", driver));
    } else {
      c.poe.driver = driver;
    }
  }
  m.get_double("budget_watts", c.poe.budget_watts, 0.0, 10000.0);
  if (auto pse = m.child("sim_pse"); pse && !pse.IsNull()) {
    MapView pm(r, pse, "poe.sim_pse", {"prio_max", "domain_budget_watts"});
    pm.get_int("prio_max", c.poe.sim_pse.prio_max, 0, 255);
    pm.get_double("domain_budget_watts", c.poe.sim_pse.domain_budget_watts, 0.0, 10000.0);
  }
  auto sim = m.child("sim");
  if (!sim || sim.IsNull()) return;
  if (!sim.IsMap()) {
    r.error(sim, "poe.sim", "expected a mapping of port name to {class, draw_watts}");
    return;
  }
  for (const auto& kv : sim) {
    const auto port = kv.first.Scalar();
    const auto path = "poe.sim." + port;
    MapView pm(r, kv.second, path, {"class", "draw_watts", "connected", "domain"});
    PoeSimPort sp;
    pm.get_int("class", sp.power_class, 0, 8);
    pm.get_double("draw_watts", sp.draw_watts, 0.0, 100.0);
    pm.get_bool("connected", sp.connected);
    pm.get_int("domain", sp.domain, 0, 255);
    if (!c.find_port(port)) r.error(kv.first, path, fmt::format("port '{}' is not in ports", port));
    c.poe.sim[port] = sp;
  }
}

void read_dhcp(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["dhcp"], "dhcp", {"kea", "subnets", "phone_match"});
  MapView kea(r, m.child("kea"), "dhcp.kea",
              {"manage", "binary", "hook_library", "event_socket", "valid_lifetime_s", "socket_receive_buffer_kib"});
  kea.get_bool("manage", c.dhcp.kea.manage);
  kea.get_string("binary", c.dhcp.kea.binary);
  kea.get_string("hook_library", c.dhcp.kea.hook_library);
  kea.get_string("event_socket", c.dhcp.kea.event_socket);
  kea.get_int("valid_lifetime_s", c.dhcp.kea.valid_lifetime_s, 60, 31536000);
  kea.get_int("socket_receive_buffer_kib", c.dhcp.kea.socket_receive_buffer_kib, 0, 262144);
  if (c.dhcp.kea.event_socket.size() >= 108)
    r.error(kea.child("event_socket"), "dhcp.kea.event_socket", "path longer than 107 bytes");

  auto subnets = m.get_list("subnets");
  std::map<int, YAML::Node> vlans;
  for (std::size_t i = 0; subnets && i < subnets.size(); ++i) {
    const auto path = index("dhcp.subnets", i);
    MapView s(r, subnets[i], path, {"vlan", "interface", "prefix", "pool", "router", "dns", "tftp_servers"});
    if (!s.present()) continue;
    for (const char* k : {"vlan", "interface", "prefix", "pool", "router"}) s.require(k);
    Subnet sn;
    s.get_int("vlan", sn.vlan, 1, 4094);
    s.get_string("interface", sn.interface);
    std::string text;
    bool prefix_ok = false;
    if (s.get_string("prefix", text)) {
      const auto parsed = parse_ipv4_prefix(text);
      if (!parsed) {
        r.error(s.child("prefix"), s.child_path("prefix"),
                fmt::format("'{}' is not an IPv4 prefix like 10.10.100.0/24", text));
      } else {
        sn.prefix.network = Ipv4{parsed->address};
        sn.prefix.length = parsed->length;
        if ((parsed->address & sn.prefix.mask()) != parsed->address) {
          r.error(s.child("prefix"), s.child_path("prefix"),
                  fmt::format("'{}' has host bits set (network is {})", text,
                              Ipv4{parsed->address & sn.prefix.mask()}.to_string()));
        } else {
          prefix_ok = true;
        }
      }
    }
    if (s.get_string("pool", text)) {
      auto dash = text.find('-');
      std::optional<Ipv4> a, b;
      if (dash != std::string::npos) {
        auto trim = [](std::string t) {
          t.erase(0, t.find_first_not_of(' '));
          t.erase(t.find_last_not_of(' ') + 1);
          return t;
        };
        a = Ipv4::parse(trim(text.substr(0, dash)));
        b = Ipv4::parse(trim(text.substr(dash + 1)));
      }
      if (!a || !b) {
        r.error(s.child("pool"), s.child_path("pool"),
                fmt::format("'{}' is not FIRST-LAST like 10.10.100.100-10.10.100.199", text));
      } else if (a->value > b->value) {
        r.error(s.child("pool"), s.child_path("pool"), fmt::format("pool '{}' starts after it ends", text));
      } else {
        sn.pool_first = *a;
        sn.pool_last = *b;
        if (prefix_ok && (!sn.prefix.contains(*a) || !sn.prefix.contains(*b))) {
          r.error(s.child("pool"), s.child_path("pool"),
                  fmt::format("pool '{}' is not inside prefix {}", text, sn.prefix.to_string()));
        }
      }
    }
    if (s.get_string("router", text)) {
      if (auto a = read_ipv4(r, s.child("router"), s.child_path("router"), text)) {
        sn.router = *a;
        if (prefix_ok && !sn.prefix.contains(*a)) {
          r.error(s.child("router"), s.child_path("router"),
                  fmt::format("router {} is not inside prefix {}", text, sn.prefix.to_string()));
        }
        if (sn.pool_first.value != 0 && a->value >= sn.pool_first.value && a->value <= sn.pool_last.value) {
          r.error(s.child("router"), s.child_path("router"), fmt::format("router {} is inside the pool", text));
        }
      }
    }
    for (const auto& [v, n] : s.get_scalar_list("dns"))
      if (auto a = read_ipv4(r, n, s.child_path("dns"), v)) sn.dns.push_back(*a);
    std::set<std::uint32_t> seen_tftp;
    for (const auto& [v, n] : s.get_scalar_list("tftp_servers")) {
      if (auto a = read_ipv4(r, n, s.child_path("tftp_servers"), v)) {
        if (!seen_tftp.insert(a->value).second) {
          r.error(n, s.child_path("tftp_servers"), fmt::format("{} is listed twice", v));
          continue;
        }
        sn.tftp_servers.push_back(*a);
      }
    }
    if (sn.vlan != 0) {
      auto [it, inserted] = vlans.emplace(sn.vlan, s.child("vlan"));
      if (!inserted) {
        r.error(s.child("vlan"), s.child_path("vlan"),
                fmt::format("VLAN {} already has a subnet (line {})", sn.vlan, it->second.Mark().line + 1));
      }
    }
    for (std::size_t j = 0; prefix_ok && j < c.dhcp.subnets.size(); ++j) {
      const auto& other = c.dhcp.subnets[j];
      const int shorter = std::min(other.prefix.length, sn.prefix.length);
      const std::uint32_t mask = shorter == 0 ? 0 : ~std::uint32_t{0} << (32 - shorter);
      if ((other.prefix.network.value & mask) == (sn.prefix.network.value & mask)) {
        r.error(s.child("prefix"), s.child_path("prefix"),
                fmt::format("prefix {} overlaps dhcp.subnets[{}] ({})", sn.prefix.to_string(), j,
                            other.prefix.to_string()));
      }
    }
    c.dhcp.subnets.push_back(std::move(sn));
  }

  MapView pm(r, m.child("phone_match"), "dhcp.phone_match", {"vendor_class_prefixes", "ouis"});
  if (pm.has("vendor_class_prefixes")) {
    c.dhcp.phone_match.vendor_class_prefixes.clear();
    for (const auto& [v, n] : pm.get_scalar_list("vendor_class_prefixes")) {
      if (v.empty())
        r.error(n, "dhcp.phone_match.vendor_class_prefixes", "an empty prefix would match every client");
      else
        c.dhcp.phone_match.vendor_class_prefixes.push_back(v);
    }
  }
  for (const auto& [v, n] : pm.get_scalar_list("ouis")) {
    // Stored as 00:11:22, whichever spelling the file used.
    const auto oui = Oui::parse(v);
    if (!oui) {
      r.error(n, "dhcp.phone_match.ouis", fmt::format("'{}' is not a MAC prefix like 00:11:22", v));
      continue;
    }
    c.dhcp.phone_match.ouis.push_back(oui->to_string());
  }
}

void read_provisioning(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["provisioning"], "provisioning",
            {"root", "tftp", "http", "secure", "call_manager_group", "default_load", "auto_register", "config_access"});
  m.get_string("root", c.provisioning.root);
  MapView tftp(r, m.child("tftp"), "provisioning.tftp", {"listen", "max_transfers", "max_per_client"});
  read_endpoint(r, tftp, "listen", c.provisioning.tftp.listen, "udp");
  tftp.get_int("max_transfers", c.provisioning.tftp.max_transfers, 1, 100000);
  tftp.get_int("max_per_client", c.provisioning.tftp.max_per_client, 1, 10000);
  MapView http(r, m.child("http"), "provisioning.http", {"listen", "max_connections"});
  read_endpoint(r, http, "listen", c.provisioning.http.listen, "tcp");
  http.get_int("max_connections", c.provisioning.http.max_connections, 1, 100000);
  m.get_bool("secure", c.provisioning.secure);
  m.get_string("default_load", c.provisioning.default_load);
  m.get_bool("auto_register", c.provisioning.auto_register);
  m.get_enum("config_access", c.provisioning.config_access,
             {{"lease", ConfigAccess::Lease}, {"open", ConfigAccess::Open}});

  auto group = m.get_list("call_manager_group");
  std::set<std::string> names;
  std::set<int> priorities;
  for (std::size_t i = 0; group && i < group.size(); ++i) {
    const auto path = index("provisioning.call_manager_group", i);
    MapView cm(r, group[i], path, {"name", "host", "sip_port", "priority"});
    if (!cm.present()) continue;
    cm.require("name");
    cm.require("host");
    CallManager mgr;
    cm.get_string("name", mgr.name);
    cm.get_string("host", mgr.host);
    int port = 5060;
    if (cm.get_int("sip_port", port, 1, 65535)) mgr.sip_port = static_cast<std::uint16_t>(port);
    cm.get_int("priority", mgr.priority, 0, 4);  // Cisco's callManagerGroup allows 0-4
    if (!mgr.host.empty() && !Ipv4::parse(mgr.host)) {
      r.error(cm.child("host"), cm.child_path("host"), fmt::format("'{}' is not an IPv4 address", mgr.host));
    }
    if (!mgr.name.empty() && !names.insert(mgr.name).second)
      r.error(cm.child("name"), cm.child_path("name"), fmt::format("duplicate call manager '{}'", mgr.name));
    if (!priorities.insert(mgr.priority).second)
      r.error(cm.has("priority") ? cm.child("priority") : cm.node(), cm.child_path("priority"),
              fmt::format("priority {} is used twice: phones could not tell primary from backup", mgr.priority));
    c.provisioning.call_manager_group.push_back(std::move(mgr));
  }
  if (group && group.size() > 5)
    r.error(group, "provisioning.call_manager_group", "at most 5 members (priorities 0-4)");
  std::stable_sort(c.provisioning.call_manager_group.begin(), c.provisioning.call_manager_group.end(),
                   [](const CallManager& a, const CallManager& b) { return a.priority < b.priority; });
}

// sip.upstream and sip.survivability (SRST). Names appear in show output, metrics labels and
// the phones' timelines, so they are short tokens; an upstream that is one of our own listeners
// would make the box probe and forward to itself.
void read_upstream(Reader& r, MapView& m, SiteConfig& c) {
  constexpr std::size_t kMaxUpstreams = 8;
  auto list = m.get_list("upstream");
  std::set<std::string> names;
  std::set<std::string> addresses;
  for (std::size_t i = 0; list && i < list.size(); ++i) {
    const auto path = index("sip.upstream", i);
    MapView um(r, list[i], path, {"name", "host", "port", "transport"});
    if (!um.present()) {
      if (!list[i] || list[i].IsNull()) r.error(list[i], path, "expected a mapping");
      continue;
    }
    um.require("name");
    um.require("host");
    Upstream u;
    um.get_string("name", u.name);
    um.get_string("host", u.host);
    int port = 5060;
    if (um.get_int("port", port, 1, 65535)) u.port = static_cast<std::uint16_t>(port);
    um.get_enum("transport", u.transport, {{"udp", std::string("udp")}, {"tcp", std::string("tcp")}});
    if (um.has("name")) {
      const bool token =
          !u.name.empty() && u.name.size() <= 32 && std::all_of(u.name.begin(), u.name.end(), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
          });
      if (!token)
        r.error(um.child("name"), um.child_path("name"),
                fmt::format("'{}' is not a name of 1-32 letters, digits, '-', '_' or '.'", u.name));
      else if (!names.insert(u.name).second)
        r.error(um.child("name"), um.child_path("name"), fmt::format("duplicate upstream '{}'", u.name));
    }
    if (um.has("host")) {
      if (!Ipv4::parse(u.host)) {
        r.error(um.child("host"), um.child_path("host"), fmt::format("'{}' is not an IPv4 address", u.host));
      } else {
        const auto where = fmt::format("{}:{}:{}", u.transport, u.host, u.port);
        if (!addresses.insert(where).second)
          r.error(um.child("host"), um.child_path("host"), fmt::format("{} is listed twice", where));
        for (const auto& ep : c.sip.listen) {
          if (ep.transport == u.transport && ep.port == u.port && ep.host == u.host)
            r.error(um.child("host"), um.child_path("host"),
                    fmt::format("{} is the box's own sip.listen: it would forward to itself", where));
        }
      }
    }
    c.sip.upstream.push_back(std::move(u));
  }
  if (list && list.size() > kMaxUpstreams)
    r.error(list, "sip.upstream", fmt::format("at most {} upstreams", kMaxUpstreams));
  MapView sm(r, m.child("survivability"), "sip.survivability",
             {"probe_interval_s", "probe_failures", "rehome_after_s"});
  sm.get_int("probe_interval_s", c.sip.survivability.probe_interval_s, 1, 3600);
  sm.get_int("probe_failures", c.sip.survivability.probe_failures, 1, 100);
  sm.get_int("rehome_after_s", c.sip.survivability.rehome_after_s, 0, 86400);
}

void read_sip(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["sip"], "sip",
            {"listen", "realm", "default_expires_s", "min_expires_s", "max_expires_s", "max_bindings_per_line",
             "ring_timeout_s", "upstream", "survivability"});
  if (m.has("listen")) {
    c.sip.listen.clear();
    std::set<std::string> seen;
    for (const auto& [v, n] : m.get_scalar_list("listen")) {
      if (auto ep = parse_endpoint(r, n, "sip.listen", v, true)) {
        if (!seen.insert(ep->to_string()).second) {
          r.error(n, "sip.listen", fmt::format("'{}' is listed twice", v));
          continue;
        }
        c.sip.listen.push_back(*ep);
      }
    }
  }
  m.get_string("realm", c.sip.realm);
  m.get_int("default_expires_s", c.sip.default_expires_s, 1, 86400 * 7);
  m.get_int("min_expires_s", c.sip.min_expires_s, 1, 86400 * 7);
  m.get_int("max_expires_s", c.sip.max_expires_s, 1, 86400 * 7);
  m.get_int("ring_timeout_s", c.sip.ring_timeout_s, 1, 3600);
  m.get_int("max_bindings_per_line", c.sip.max_bindings_per_line, 1, 100);
  if (c.sip.min_expires_s > c.sip.max_expires_s) {
    r.error(m.has("min_expires_s") ? m.child("min_expires_s") : m.node(), "sip.min_expires_s",
            fmt::format("min {} is above max {}", c.sip.min_expires_s, c.sip.max_expires_s));
  } else if (c.sip.default_expires_s < c.sip.min_expires_s || c.sip.default_expires_s > c.sip.max_expires_s) {
    r.error(m.has("default_expires_s") ? m.child("default_expires_s") : m.node(), "sip.default_expires_s",
            fmt::format("default {} is outside min {} - max {}", c.sip.default_expires_s, c.sip.min_expires_s,
                        c.sip.max_expires_s));
  }
  read_upstream(r, m, c);
}

void read_net(Reader& r, const YAML::Node& root, SiteConfig& c) {
  MapView m(r, root["net"], "net", {"mode", "bridge", "uplink"});
  m.get_enum("mode", c.net.mode,
             {{"none", NetMode::None}, {"bridge", NetMode::Bridge}, {"subinterface", NetMode::Subinterface}});
  m.get_string("bridge", c.net.bridge);
  m.get_string("uplink", c.net.uplink);
  if (c.net.bridge.empty() || c.net.bridge.size() > 15)
    r.error(m.has("bridge") ? m.child("bridge") : m.node(), "net.bridge", "bridge name must be 1-15 characters");
  if (c.net.mode == NetMode::Subinterface && c.net.uplink.empty())
    r.error(m.node(), "net.uplink", "subinterface mode needs net.uplink");
}

void read_phones(Reader& r, const YAML::Node& root, SiteConfig& c) {
  auto list = root["phones"];
  if (!list || list.IsNull()) return;
  if (!list.IsSequence()) {
    r.error(list, "phones", "expected a list");
    return;
  }
  std::map<MacAddress, int> macs;
  std::map<Ipv4, int> ips;
  std::map<std::string, std::string> extensions;  // extension -> where
  std::map<std::string, std::string> users;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto path = index("phones", i);
    MapView m(r, list[i], path, {"mac", "model", "description", "load", "port", "lines", "ip"});
    if (!m.present()) continue;
    m.require("mac");
    Phone p;
    std::string mac;
    if (m.get_string("mac", mac)) {
      if (auto parsed = MacAddress::parse(mac)) {
        p.mac = *parsed;
        auto [it, inserted] = macs.emplace(p.mac, static_cast<int>(i));
        if (!inserted)
          r.error(m.child("mac"), m.child_path("mac"),
                  fmt::format("MAC {} is already phones[{}]", p.mac.to_string(), it->second));
      } else {
        r.error(
            m.child("mac"), m.child_path("mac"),
            fmt::format("'{}' is not a MAC (00:11:22:33:44:55, 0011.2233.4455, 001122334455 or SEP001122334455)", mac));
      }
    }
    m.get_string("model", p.model);
    m.get_string("description", p.description);
    m.get_string("load", p.load);
    if (m.get_string("port", p.port) && !c.find_port(p.port))
      r.error(m.child("port"), m.child_path("port"), fmt::format("port '{}' is not in ports", p.port));
    if (std::string ip; m.get_string("ip", ip)) {
      p.ip = Ipv4::parse(ip);
      if (!p.ip) {
        r.error(m.child("ip"), m.child_path("ip"), fmt::format("'{}' is not an IPv4 address", ip));
      } else if (auto [it, inserted] = ips.emplace(*p.ip, static_cast<int>(i)); !inserted) {
        r.error(m.child("ip"), m.child_path("ip"),
                fmt::format("{} is already the address of phones[{}]", ip, it->second));
      }
    }
    auto lines = m.get_list("lines");
    std::set<int> buttons;
    for (std::size_t j = 0; lines && j < lines.size(); ++j) {
      const auto lpath = index(m.child_path("lines"), j);
      MapView lm(r, lines[j], lpath,
                 {"button", "extension", "display", "auth_user", "password", "password_file", "forward"});
      if (!lm.present()) continue;
      lm.require("extension");
      Line l;
      l.button = static_cast<int>(j) + 1;
      lm.get_int("button", l.button, 1, 64);
      lm.get_string("extension", l.extension);
      lm.get_string("display", l.display);
      lm.get_string("auth_user", l.auth_user);
      if (l.auth_user.empty()) l.auth_user = l.extension;
      MapView fm(r, lm.child("forward"), lm.child_path("forward"), {"all", "busy", "no_answer", "no_answer_s"});
      fm.get_string("all", l.forward.all);
      fm.get_string("busy", l.forward.busy);
      fm.get_string("no_answer", l.forward.no_answer);
      fm.get_int("no_answer_s", l.forward.no_answer_s, 1, 3600);
      if (!l.forward.all.empty() && l.forward.all == l.extension)
        r.error(fm.child("all"), fm.child_path("all"), "a line cannot forward to itself");
      if (!buttons.insert(l.button).second)
        r.error(lm.has("button") ? lm.child("button") : lm.node(), lm.child_path("button"),
                fmt::format("button {} is used twice on this phone", l.button));
      if (!l.extension.empty()) {
        auto [it, inserted] = extensions.emplace(l.extension, lpath);
        if (!inserted)
          r.error(lm.child("extension"), lm.child_path("extension"),
                  fmt::format("extension {} is already {}", l.extension, it->second));
      }
      if (!l.auth_user.empty()) {
        auto [it, inserted] = users.emplace(l.auth_user, lpath);
        if (!inserted && it->second != lpath)
          r.error(lm.has("auth_user") ? lm.child("auth_user") : lm.node(), lm.child_path("auth_user"),
                  fmt::format("auth_user {} is already {}", l.auth_user, it->second));
      }
      std::string pw, pw_file;
      const bool has_pw = lm.get_string("password", pw);
      const bool has_file = lm.get_string("password_file", pw_file);
      if (has_pw && has_file) {
        r.error(lm.child("password_file"), lm.child_path("password_file"), "give password or password_file, not both");
      } else if (has_file) {
        std::filesystem::path fp(pw_file);
        if (fp.is_relative()) fp = r.base_dir() / fp;
        std::ifstream in(fp);
        if (!in) {
          r.error(lm.child("password_file"), lm.child_path("password_file"),
                  fmt::format("cannot read '{}'", fp.string()));
        } else {
          std::getline(in, pw);  // first line; a trailing newline is not part of the secret
          if (pw.empty())
            r.error(lm.child("password_file"), lm.child_path("password_file"),
                    fmt::format("'{}' is empty", fp.string()));
        }
      } else if (!has_pw) {
        r.error(lm.node(), lpath, "missing password or password_file");
      } else if (pw.empty()) {
        // An empty digest password is no authentication at all.
        r.error(lm.child("password"), lm.child_path("password"), "password is empty");
      }
      l.password = Secret(pw);
      p.lines.push_back(std::move(l));
    }
    c.phones.push_back(std::move(p));
  }
}

// Settings that are valid but expose the line passwords or may starve phones of their config.
void check_config_access(Reader& r, const YAML::Node& root, const SiteConfig& c) {
  const auto provisioning = root["provisioning"];
  const auto access = provisioning && provisioning.IsMap() ? provisioning["config_access"] : YAML::Node();
  if (c.provisioning.config_access == ConfigAccess::Open) {
    std::size_t with_password = 0;
    for (const auto& p : c.phones)
      with_password += static_cast<std::size_t>(
          std::count_if(p.lines.begin(), p.lines.end(), [](const Line& l) { return !l.password.empty(); }));
    if (with_password > 0)
      r.warning(access.Mark(), "provisioning.config_access",
                fmt::format("'open' serves every SEP<MAC>.cnf.xml to any host on the voice VLAN: the passwords "
                            "of {} line(s) can be read by anyone there (use 'lease', and phones[].ip for phones "
                            "with static addresses)",
                            with_password));
  } else if (!c.dhcp.kea.manage && (!access.IsDefined() || access.IsNull())) {
    const auto unbound = std::count_if(c.phones.begin(), c.phones.end(), [](const Phone& p) { return !p.ip; });
    const auto dhcp = root["dhcp"];
    if (unbound > 0)
      r.warning(dhcp && dhcp.IsMap() && dhcp["kea"] ? dhcp["kea"].Mark() : YAML::Mark::null_mark(),
                "provisioning.config_access",
                fmt::format("dhcp.kea.manage is false: {} phone(s) without phones[].ip get their config only "
                            "if your Kea runs the voiceedge hook (leases reported to dhcp.kea.event_socket); "
                            "set provisioning.config_access to say so",
                            unbound));
  }
}

}  // namespace

LoadResult parse_document(const std::string& yaml, const std::string& name, const std::filesystem::path& base_dir) {
  Reader r(name, base_dir);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    r.error(e.mark, "", e.msg);
    return unexpected(std::move(r.errors()));
  }
  auto c = std::make_shared<SiteConfig>();
  c->source = name;
  if (!root || root.IsNull()) {
    r.error(YAML::Mark::null_mark(), "", "the site file is empty");
    return unexpected(std::move(r.errors()));
  }
  MapView top(r, root, "",
              {"site", "state_dir", "control", "ports", "cdp", "lldp", "poe", "dhcp", "provisioning", "sip", "net",
               "phones", "diagnostics"});
  if (!top.present()) return unexpected(std::move(r.errors()));
  read_site(r, root, *c);
  top.get_string("state_dir", c->state_dir);
  if (c->state_dir.empty() || c->state_dir[0] != '/')
    r.error(top.child("state_dir"), "state_dir", "must be an absolute path");
  read_control(r, root, *c);
  read_ports(r, root, *c);
  read_cdp_lldp(r, root, *c);
  read_poe(r, root, *c);
  read_dhcp(r, root, *c);
  read_provisioning(r, root, *c);
  read_sip(r, root, *c);
  read_net(r, root, *c);
  read_phones(r, root, *c);
  check_config_access(r, root, *c);
  read_diagnostics(r, root, *c);
  if (!r.errors().empty()) {
    std::stable_sort(r.errors().begin(), r.errors().end(), [](const ConfigError& a, const ConfigError& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    return unexpected(std::move(r.errors()));
  }
  c->warnings = std::move(r.warnings());
  return SiteConfigPtr(std::move(c));
}

LoadResult load_string(const std::string& yaml, const std::string& name) {
  return parse_document(yaml, name, std::filesystem::current_path());
}

LoadResult load_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigError e;
    e.file = path.string();
    e.message = fmt::format("cannot open: {}", std::strerror(errno));
    return unexpected(std::vector<ConfigError>{e});
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto result = parse_document(ss.str(), path.string(), std::filesystem::absolute(path).parent_path());
  return result;
}

}  // namespace ve::config
