#include "daemon/status_render.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "ve/device_status.hpp"

namespace ve::daemon::status {
namespace {

using nlohmann::json;

// Steps a phone must pass to register (as JourneyTracker::diagnose counts them).
constexpr std::array<int, 8> kRequiredSteps = {1, 3, 4, 5, 6, 7, 10, 11};

bool required(int step) {
  return std::find(kRequiredSteps.begin(), kRequiredSteps.end(), step) != kRequiredSteps.end();
}

// Short column titles for the strip (the full name is in the cell's title).
constexpr std::array<std::string_view, kStepCount> kStepShort = {"power",    "boot",   "vlan", "dhcp", "ctl",
                                                                 "itl",      "config", "load", "dial", "cm",
                                                                 "register", "locale", "keys", "rings"};

std::string iso_time(Clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(Clock::to_time_t(t)), ms);
}

std::int64_t to_ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump(-1, ' ', false, json::error_handler_t::replace);
}

bool flag(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
}

double number(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return 0.0;
  return j[key].get<double>();
}

std::string fact(const PhoneJourney* p, Fact f) { return p ? p->fact(f) : std::string(); }

// A key that sorts "p2" before "p10": every digit run zero-padded to 8 places.
std::string natural_key(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] >= '0' && s[i] <= '9') {
      std::size_t j = i;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      const auto run = s.substr(i, j - i);
      if (run.size() < 8) out.append(8 - run.size(), '0');
      out.append(run);
      i = j;
    } else {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(s[i]))));
      ++i;
    }
  }
  return out;
}

// The model number inside a model string: "7841" in "CP-7841" and in "Cisco IP Phone 7841".
std::string model_number(std::string_view s) {
  std::string best;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] >= '0' && s[i] <= '9') {
      std::size_t j = i;
      while (j < s.size() && ((s[j] >= '0' && s[j] <= '9') || std::isalpha(static_cast<unsigned char>(s[j])))) ++j;
      if (j - i >= 3 && j - i > best.size()) {
        best.clear();
        for (std::size_t k = i; k < j; ++k)
          best.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(s[k]))));
      }
      i = j;
    } else {
      ++i;
    }
  }
  return best;
}

std::string outcome_word(const StepState& s) {
  if (!s.seen) return "none";
  switch (s.outcome) {
    case Outcome::Ok: return "ok";
    case Outcome::Expected: return "expected";
    case Outcome::Failed: return "failed";
    case Outcome::Info: return "in-progress";
  }
  return "none";
}

std::string_view outcome_label(std::string_view o) {
  if (o == "ok") return "ok";
  if (o == "expected") return "expected (normal)";
  if (o == "failed") return "failed";
  if (o == "missing") return "missing";
  if (o == "in-progress") return "in progress";
  return "not reached";
}

std::string state_label(std::string_view state) {
  if (state == "registered") return "Registered";
  if (state == "booting") return "Booting";
  if (state == "stuck") return "Stuck";
  if (state == "never-seen") return "Never seen";
  return std::string(state);
}

std::string row_id(const json& phone) { return "row-" + str(phone, "name"); }

std::string or_dash(const std::string& s) { return s.empty() ? "—" : html_escape(s); }

std::string seconds_text(double s) {
  if (s < 10) return fmt::format("{:.2f} s", s);
  if (s < 100) return fmt::format("{:.1f} s", s);
  return fmt::format("{:.0f} s", s);
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters from the wire have no business on the page.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n')
          out += "\xEF\xBF\xBD";  // U+FFFD
        else
          out.push_back(c);
    }
  }
  return out;
}

std::string clock_time(std::string_view iso) {
  const auto t = iso.find('T');
  if (t == std::string_view::npos || iso.size() < t + 9) return std::string(iso);
  return std::string(iso.substr(t + 1, 8));
}

std::string model_mismatch(std::string_view site_model, std::string_view reported_model) {
  if (site_model.empty() || reported_model.empty()) return "";
  const auto a = model_number(site_model);
  const auto b = model_number(reported_model);
  if (a.empty() || b.empty() || a == b) return "";
  return fmt::format("site file says {}, CDP/LLDP reports {}", site_model, reported_model);
}

json phone_model(const JourneyTracker& journey, const PhoneJourney* seen, const config::Phone* listed,
                 const config::SiteConfig* site, Clock::time_point now) {
  const MacAddress mac = seen ? seen->mac : listed->mac;
  json j;
  j["mac"] = mac.to_string();
  j["name"] = mac.sep_name();
  j["listed"] = listed != nullptr;
  j["seen"] = seen != nullptr;
  std::string port = fact(seen, Fact::Port);
  if (port.empty() && listed) port = listed->port;
  j["port"] = port;
  j["port_key"] = natural_key(port);
  j["ip"] = fact(seen, Fact::Ip);
  json extensions = json::array();
  if (listed)
    for (const auto& l : listed->lines) extensions.push_back(l.extension);
  j["extensions"] = extensions;
  j["description"] = listed ? listed->description : "";
  const std::string site_model = listed ? listed->model : "";
  const std::string reported = fact(seen, Fact::Model);
  j["site_model"] = site_model;
  j["reported_model"] = reported;
  j["model"] = reported.empty() ? site_model : reported;
  j["model_hint"] = model_mismatch(site_model, reported);
  j["load"] = fact(seen, Fact::ActiveLoad);
  std::string wanted = listed ? listed->load : "";
  if (wanted.empty() && site) wanted = site->provisioning.default_load;
  j["wanted_load"] = wanted;
  // Filled by whoever learns them (the SIP side for registrations, the call side for calls);
  // empty until then, and the page shows a dash.
  j["registered_with"] = fact(seen, Fact::RegisteredWith);
  j["registration_mode"] = fact(seen, Fact::RegistrationMode);
  j["last_call"] = fact(seen, Fact::LastCall);
  j["last_call_time"] = fact(seen, Fact::LastCallTime);
  j["power_w"] = fact(seen, Fact::PowerW);
  j["vlan"] = fact(seen, Fact::Vlan);

  json steps = json::array();
  if (!seen) {
    j["registered"] = false;
    j["state"] = "never-seen";
    j["stuck_step"] = nullptr;
    j["reason"] = "never seen: no power, CDP/LLDP, DHCP or TFTP request from this MAC yet";
    j["registration"] = "Not registered";
    j["first_seen"] = "";
    j["last_seen"] = "";
    j["last_seen_ms"] = 0;
    for (int n = 1; n <= kStepCount; ++n)
      steps.push_back({{"step", n},
                       {"name", std::string(to_string(static_cast<Step>(n)))},
                       {"outcome", "none"},
                       {"detail", ""},
                       {"time", ""}});
    j["steps"] = steps;
    return j;
  }

  const bool registered = seen->registered();
  const bool active = now - seen->last_seen < kQuietAfter;
  const auto diag = journey.diagnose(*seen);
  const int due = diag.step ? static_cast<int>(*diag.step) : 0;
  int highest = 0;
  for (int n = 1; n <= kStepCount; ++n)
    if (seen->steps[static_cast<std::size_t>(n) - 1].seen) highest = n;
  const bool port_known = seen->facts.contains(Fact::Port);
  // The next required step after the furthest one reached: being worked on while the phone
  // talks, missing once it went quiet.
  bool any_failed = false;
  for (const auto& s : seen->steps) any_failed = any_failed || (s.seen && s.outcome == Outcome::Failed);
  int next = 0;
  for (int n : kRequiredSteps)
    if (any_failed)
      break;
    else if (n > highest && (n != 1 || port_known)) {
      next = n;
      break;
    }
  for (int n = 1; n <= kStepCount; ++n) {
    const auto& s = seen->steps[static_cast<std::size_t>(n) - 1];
    std::string outcome = outcome_word(s);
    if (!s.seen && !registered) {
      if (required(n) && n < highest && (n != 1 || port_known))
        outcome = "missing";
      else if (n == next)
        outcome = active ? "in-progress" : "missing";
    }
    steps.push_back({{"step", n},
                     {"name", std::string(to_string(static_cast<Step>(n)))},
                     {"outcome", outcome},
                     {"detail", s.detail},
                     {"time", iso_time(s.first)}});
  }
  j["steps"] = steps;
  j["registered"] = registered;
  // A failed step is a dead end whatever the phone does next; silence past kQuietAfter is one too.
  j["state"] = registered ? "registered" : (active && !any_failed ? "booting" : "stuck");
  j["stuck_step"] = registered || !diag.step ? json(nullptr) : json(due);
  j["reason"] = registered ? "" : diag.reason;
  if (registered) {
    const auto with = fact(seen, Fact::RegisteredWith);
    j["registration"] = with.empty() ? "Registered" : "Registered with " + with;
  } else {
    j["registration"] = "Not registered";
  }
  j["first_seen"] = iso_time(seen->first_seen);
  j["last_seen"] = iso_time(seen->last_seen);
  j["last_seen_ms"] = to_ms(seen->last_seen);
  return j;
}

json phones_model(const JourneyTracker& journey, const config::SiteConfig* site, Clock::time_point now) {
  json out = json::array();
  for (const auto& [mac, p] : journey.phones())
    out.push_back(phone_model(journey, &p, site ? site->find_phone(mac) : nullptr, site, now));
  if (site) {
    for (const auto& listed : site->phones)
      if (!journey.phones().contains(listed.mac)) out.push_back(phone_model(journey, nullptr, &listed, site, now));
  }
  std::stable_sort(out.begin(), out.end(), [](const json& a, const json& b) {
    const auto pa = str(a, "port_key"), pb = str(b, "port_key");
    if (pa.empty() != pb.empty()) return pb.empty();  // phones with a port first
    if (pa != pb) return pa < pb;
    return str(a, "name") < str(b, "name");
  });
  return out;
}

json counters_model(const json& phones) {
  std::size_t registered = 0, booting = 0, stuck = 0, never = 0, unknown = 0;
  std::map<int, std::size_t> by_step;
  for (const auto& p : phones) {
    const auto state = str(p, "state");
    if (state == "registered") ++registered;
    if (state == "booting") ++booting;
    if (state == "never-seen") ++never;
    if (state == "stuck") {
      ++stuck;
      if (p["stuck_step"].is_number_integer()) ++by_step[p["stuck_step"].get<int>()];
    }
    if (!flag(p, "listed")) ++unknown;
  }
  json steps = json::array();
  for (const auto& [n, c] : by_step)
    steps.push_back({{"step", n}, {"name", std::string(to_string(static_cast<Step>(n)))}, {"count", c}});
  return {{"phones", phones.size()}, {"registered", registered}, {"booting", booting},    {"stuck", stuck},
          {"never_seen", never},     {"unknown", unknown},       {"stuck_by_step", steps}};
}

json ports_model(const config::SiteConfig* site, const json& poe, const json& cdp, const json& net,
                 const JourneyTracker& journey) {
  json out;
  out["poe_available"] = poe.is_object();
  out["driver"] = str(poe, "driver");
  out["budget_w"] = number(poe, "budget_w");
  out["allocated_w"] = number(poe, "allocated_w");
  out["used_w"] = number(poe, "used_w");
  out["remaining_w"] = number(poe, "remaining_w");
  std::map<std::string, const PhoneJourney*> phone_on_port;
  for (const auto& [mac, p] : journey.phones()) {
    auto it = p.facts.find(Fact::Port);
    if (it != p.facts.end()) {
      auto& slot = phone_on_port[it->second];
      if (!slot || p.last_seen > slot->last_seen) slot = &p;
    }
  }
  auto find_in = [](const json& list, const char* key, const std::string& name) -> const json* {
    if (!list.is_array()) return nullptr;
    for (const auto& e : list)
      if (str(e, key) == name) return &e;
    return nullptr;
  };
  json ports = json::array();
  if (site) {
    for (const auto& port : site->ports) {
      json p{{"name", port.name},
             {"voice_vlan", port.voice_vlan},
             {"data_vlan", port.data_vlan},
             {"poe_mode", std::string(config::to_string(port.poe.mode))},
             {"max_w", port.poe.max_watts}};
      const json* pp = poe.is_object() ? find_in(poe["ports"], "interface", port.name) : nullptr;
      p["poe_oper"] = pp ? str(*pp, "oper") : "";
      p["power_w"] = pp ? number(*pp, "power_w") : 0.0;
      p["allocated_w"] = pp ? number(*pp, "allocated_w") : 0.0;
      p["poe_class"] = pp && (*pp)["class"].is_number() ? (*pp)["class"] : json(nullptr);
      p["poe_detail"] = pp ? str(*pp, "detail") : "";
      const json* np = net.is_object() ? find_in(net["ports"], "name", port.name) : nullptr;
      std::string link = np ? str(*np, "link") : "";
      json neighbours = json::array();
      if (cdp.is_object() && cdp["neighbors"].is_array()) {
        for (const auto& n : cdp["neighbors"]) {
          if (str(n, "local_port") != port.name) continue;
          neighbours.push_back(
              {{"protocol", str(n, "protocol")},
               {"device_id", str(n, "device_id")},
               {"platform", str(n, "platform")},
               {"port_id", str(n, "port_id")},
               {"address", n["addresses"].is_array() && !n["addresses"].empty() && n["addresses"][0].is_string()
                               ? n["addresses"][0].get<std::string>()
                               : ""}});
        }
      }
      // Without a link monitor, a neighbour talking or a powered device means the link is up.
      if (link.empty()) link = !neighbours.empty() || p["poe_oper"] == "on" ? "up" : "unknown";
      p["link"] = link;
      p["neighbors"] = neighbours;
      auto ph = phone_on_port.find(port.name);
      if (ph != phone_on_port.end()) {
        p["phone"] = ph->second->mac.sep_name();
        p["phone_registered"] = ph->second->registered();
      } else {
        p["phone"] = "";
        p["phone_registered"] = false;
      }
      ports.push_back(std::move(p));
    }
  }
  out["ports"] = std::move(ports);
  return out;
}

std::string render_step_cells(const json& steps, bool labelled) {
  std::string b;
  for (const auto& s : steps) {
    const int n = s.value("step", 0);
    const auto outcome = str(s, "outcome");
    const auto name = str(s, "name");
    const auto detail = str(s, "detail");
    const auto time = str(s, "time");
    std::string title = fmt::format("{} {}: {}", n, name, outcome_label(outcome));
    if (!detail.empty()) title += " — " + detail;
    if (!time.empty()) title += " (" + clock_time(time) + ")";
    const auto label =
        labelled && n >= 1 && n <= kStepCount ? std::string(kStepShort[static_cast<std::size_t>(n) - 1]) : "";
    b += fmt::format("<span class=\"st o-{0}\" data-step=\"{1}\" data-outcome=\"{0}\" title=\"{2}\">{1}{3}</span>",
                     html_escape(outcome), n, html_escape(title),
                     label.empty() ? "" : "<small>" + html_escape(label) + "</small>");
  }
  return b;
}

std::string render_row(const json& p) {
  const auto name = str(p, "name");
  const auto state = str(p, "state");
  std::string ext;
  std::string ext_key;
  if (p["extensions"].is_array()) {
    for (const auto& e : p["extensions"]) {
      if (!e.is_string()) continue;
      if (!ext.empty()) ext += " ";
      ext += "<span class=ext>" + html_escape(e.get<std::string>()) + "</span>";
      if (ext_key.empty()) ext_key = natural_key(e.get<std::string>());
    }
  }
  const auto mac = str(p, "mac");
  std::string mac_compact;
  for (char c : mac)
    if (c != ':') mac_compact.push_back(c);
  const auto search = fmt::format("{} {} {} {}", name, mac, mac_compact, state);
  std::string model = or_dash(str(p, "model"));
  if (!str(p, "model_hint").empty())
    model += fmt::format(" <span class=warn title=\"{}\">≠ site</span>", html_escape(str(p, "model_hint")));
  std::string load = or_dash(str(p, "load"));
  if (!str(p, "load").empty() && !str(p, "wanted_load").empty() && str(p, "load") != str(p, "wanted_load"))
    load +=
        fmt::format(" <span class=warn title=\"site file wants {}\">≠ site</span>", html_escape(str(p, "wanted_load")));
  std::string reg = fmt::format("<span class=\"badge s-{}\">{}</span>", html_escape(state), state_label(state));
  if (!str(p, "registered_with").empty() && flag(p, "registered"))
    reg += " <span class=sub>" + html_escape(str(p, "registered_with")) + "</span>";
  if (!str(p, "registration_mode").empty())
    reg += " <span class=sub>(" + html_escape(str(p, "registration_mode")) + ")</span>";
  std::string call = "—";
  if (!str(p, "last_call").empty()) {
    call = html_escape(str(p, "last_call"));
    if (!str(p, "last_call_time").empty())
      call += " <span class=sub title=\"" + html_escape(str(p, "last_call_time")) + "\">" +
              html_escape(clock_time(str(p, "last_call_time"))) + "</span>";
  }
  const auto reason = str(p, "reason");
  const auto last_seen = str(p, "last_seen");
  const int stuck = p["stuck_step"].is_number_integer() ? p["stuck_step"].get<int>() : 99;
  const int state_rank = state == "stuck" ? 0 : state == "booting" ? 1 : state == "never-seen" ? 2 : 3;
  return fmt::format(
      "<tr id=\"{id}\" data-mac=\"{mac}\" data-state=\"{state}\" data-listed=\"{listed}\" data-stuck=\"{stuck}\" "
      "data-search=\"{search}\">"
      "<td data-v=\"{name}\"><a href=\"/phone/{name}\">{name}</a><div class=sub>{desc}</div></td>"
      "<td data-v=\"{port_key}\" class=nw>{port}</td>"
      "<td data-v=\"{srank:02d}{stuck:02d}\" class=steps><div class=strip>{cells}</div>{reason}</td>"
      "<td data-v=\"{ip_key}\" class=nw>{ip}</td>"
      "<td data-v=\"{ext_key}\">{ext}</td>"
      "<td data-v=\"{model_v}\">{model}</td>"
      "<td data-v=\"{load_v}\" class=load>{load}</td>"
      "<td data-v=\"{srank}\">{reg}</td>"
      "<td data-v=\"{call_v}\">{call}</td>"
      "<td data-v=\"{seen_ms:013d}\" class=nw title=\"{seen}\">{seen_clock}</td></tr>",
      fmt::arg("id", html_escape(row_id(p))), fmt::arg("mac", html_escape(mac)), fmt::arg("state", html_escape(state)),
      fmt::arg("listed", flag(p, "listed") ? "yes" : "no"), fmt::arg("search", html_escape(search)),
      fmt::arg("name", html_escape(name)),
      fmt::arg("desc", flag(p, "listed") ? or_dash(str(p, "description"))
                                         : std::string("<span class=warn>not in site file</span>")),
      fmt::arg("port_key", html_escape(str(p, "port_key"))), fmt::arg("port", or_dash(str(p, "port"))),
      fmt::arg("srank", state_rank), fmt::arg("stuck", stuck), fmt::arg("cells", render_step_cells(p["steps"], false)),
      fmt::arg("reason", reason.empty() ? std::string()
                                        : "<div class=reason title=\"" + html_escape(reason) + "\">" +
                                              html_escape(reason) + "</div>"),
      fmt::arg("ip_key", html_escape(natural_key(str(p, "ip")))), fmt::arg("ip", or_dash(str(p, "ip"))),
      fmt::arg("ext_key", html_escape(ext_key)), fmt::arg("ext", ext.empty() ? "—" : ext),
      fmt::arg("model_v", html_escape(str(p, "model"))), fmt::arg("model", model),
      fmt::arg("load_v", html_escape(str(p, "load"))), fmt::arg("load", load), fmt::arg("reg", reg),
      fmt::arg("call_v", html_escape(str(p, "last_call_time"))), fmt::arg("call", call),
      fmt::arg("seen_ms", p.value("last_seen_ms", std::int64_t{0})), fmt::arg("seen", html_escape(last_seen)),
      fmt::arg("seen_clock", or_dash(clock_time(last_seen))));
}

std::string render_rows(const json& phones) {
  std::string b;
  for (const auto& p : phones) b += render_row(p);
  return b;
}

std::string render_counters(const json& c) {
  auto count = [&](const char* k) { return c.value(k, std::size_t{0}); };
  std::string b = "<div id=counters class=counters>";
  b += fmt::format("<div class=\"ctr\" data-counter=phones><b>{}</b>phones</div>", count("phones"));
  b += fmt::format("<div class=\"ctr c-ok\" data-counter=registered><b>{}</b>registered</div>", count("registered"));
  b += fmt::format("<div class=\"ctr c-prog\" data-counter=booting><b>{}</b>booting</div>", count("booting"));
  b += fmt::format("<div class=\"ctr{}\" data-counter=stuck><b>{}</b>stuck", count("stuck") ? " c-bad" : "",
                   count("stuck"));
  if (c["stuck_by_step"].is_array() && !c["stuck_by_step"].empty()) {
    b += "<span class=bystep>";
    for (const auto& s : c["stuck_by_step"])
      b += fmt::format(
          "<a class=chip data-filter=\"stuck:{0}\" data-stuck-step=\"{0}\" href=\"#\">step {0} {1}: "
          "<b>{2}</b></a>",
          s.value("step", 0), html_escape(str(s, "name")), s.value("count", std::size_t{0}));
    b += "</span>";
  }
  b += "</div>";
  b += fmt::format("<div class=\"ctr{}\" data-counter=unknown><b>{}</b>unknown (not in site file)</div>",
                   count("unknown") ? " c-warn" : "", count("unknown"));
  b += fmt::format("<div class=\"ctr\" data-counter=never-seen><b>{}</b>listed, never seen</div>", count("never_seen"));
  b += "</div>";
  return b;
}

std::string render_ports(const json& m) {
  std::string b = "<section id=ports class=ports><h2>Ports</h2>";
  if (flag(m, "poe_available")) {
    const double budget = number(m, "budget_w");
    const double allocated = number(m, "allocated_w");
    b += fmt::format(
        "<div class=budget><span>PoE budget <b data-budget-w=\"{0:.1f}\">{0:.1f} W</b></span>"
        "<meter min=0 max=\"{0:.1f}\" low=\"{4:.1f}\" high=\"{5:.1f}\" optimum=0 value=\"{1:.1f}\"></meter>"
        "<span>allocated <b data-allocated-w=\"{1:.1f}\">{1:.1f} W</b></span>"
        "<span>drawn <b data-used-w=\"{2:.1f}\">{2:.1f} W</b></span>"
        "<span>left <b data-remaining-w=\"{3:.1f}\">{3:.1f} W</b></span>"
        "<span class=sub>driver {6}</span></div>",
        budget, allocated, number(m, "used_w"), number(m, "remaining_w"), budget * 0.75, budget * 0.9,
        html_escape(str(m, "driver")));
  } else {
    b += "<div class=budget><span class=sub>PoE: no driver (power not managed here)</span></div>";
  }
  b += "<div class=faceplate>";
  if (m["ports"].is_array()) {
    for (const auto& p : m["ports"]) {
      const auto name = str(p, "name");
      const auto link = str(p, "link");
      const auto oper = str(p, "poe_oper");
      const double w = number(p, "power_w");
      std::string nb;
      if (p["neighbors"].is_array()) {
        for (const auto& n : p["neighbors"]) {
          nb += fmt::format("<div class=nb title=\"{0} {1} port {2} {3}\"><span class=proto>{0}</span> {1}</div>",
                            html_escape(str(n, "protocol")), html_escape(str(n, "device_id")),
                            html_escape(str(n, "port_id")), html_escape(str(n, "platform")));
          if (!str(n, "platform").empty()) nb += "<div class=\"nb sub\">" + html_escape(str(n, "platform")) + "</div>";
        }
      }
      if (nb.empty()) nb = "<div class=\"nb sub\">no neighbour</div>";
      std::string phone;
      if (!str(p, "phone").empty())
        phone = fmt::format("<a class=\"ph{}\" href=\"/phone/{}\">{}</a>", flag(p, "phone_registered") ? " reg" : "",
                            html_escape(str(p, "phone")), html_escape(str(p, "phone")));
      std::string klass = p["poe_class"].is_number() ? fmt::format(" class {}", p["poe_class"].get<int>()) : "";
      b += fmt::format(
          "<div class=\"port l-{link} p-{oper}\" data-port=\"{name}\" data-link=\"{link}\" data-poe=\"{oper}\" "
          "data-watts=\"{w:.1f}\" title=\"{name}: link {link}, PoE {oper_t}{klass}, {alloc:.1f} W allocated of "
          "{max:.1f} W max{detail}\">"
          "<div class=pn><span class=led></span>{name}</div>"
          "<div class=jack><span class=poe-ico>⚡</span></div>"
          "<div class=w>{w_text}</div>"
          "<div class=vl>V{vv} · D{dv}</div>{nb}{phone}</div>",
          fmt::arg("link", html_escape(link)), fmt::arg("oper", html_escape(oper.empty() ? "none" : oper)),
          fmt::arg("name", html_escape(name)), fmt::arg("w", w),
          fmt::arg("oper_t", html_escape(oper.empty() ? "—" : oper)), fmt::arg("klass", html_escape(klass)),
          fmt::arg("alloc", number(p, "allocated_w")), fmt::arg("max", number(p, "max_w")),
          fmt::arg("detail", str(p, "poe_detail").empty() ? "" : " — " + html_escape(str(p, "poe_detail"))),
          fmt::arg("w_text", oper.empty() ? std::string("—") : fmt::format("{:.1f} W", w)),
          fmt::arg("vv", p.value("voice_vlan", 0) ? std::to_string(p.value("voice_vlan", 0)) : "—"),
          fmt::arg("dv", p.value("data_vlan", 0)), fmt::arg("nb", nb), fmt::arg("phone", phone));
    }
    if (m["ports"].empty()) b += "<p class=sub>The site file lists no ports.</p>";
  }
  b += "</div></section>";
  return b;
}

namespace {

std::string page_head(std::string_view title) {
  return "<!doctype html><html lang=en><head><meta charset=utf-8>"
         "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
         "<link rel=icon href=\"data:,\"><link rel=stylesheet href=\"/static/app.css\">"
         "<script src=\"/static/app.js\" defer></script><title>" +
         html_escape(title) + "</title></head>";
}

std::string top_bar(std::string_view site_name, std::string_view here) {
  return fmt::format(
      "<header class=top><a class=brand href=\"/\">voiceedge</a><span class=site>{}</span><span "
      "class=here>{}</span><span id=live class=live data-state=connecting title=\"live updates\">connecting…</span>"
      "</header>",
      html_escape(site_name), html_escape(here));
}

}  // namespace

std::string render_dashboard(const json& phones, const json& ports, std::string_view site_name) {
  std::string b = page_head(std::string(site_name) + " — phones");
  b += "<body data-page=dashboard>" + top_bar(site_name, "Phones and ports");
  b += "<main>";
  b += render_counters(counters_model(phones));
  b += "<section class=phones><div class=tools><h2>Phones</h2><input id=filter type=search "
       "placeholder=\"filter: name, MAC, port, address, extension, model, state…\" aria-label=filter "
       "autocomplete=off><span id=shown class=sub></span>"
       "<span class=legend>";
  for (auto o : kOutcomes) b += fmt::format("<span class=\"st o-{0}\"></span>{1} ", o, outcome_label(o));
  b += "</span></div><div class=tablewrap><table id=phones class=grid><thead><tr>"
       "<th data-sort=0>Phone</th><th data-sort=1>Port</th><th data-sort=2>Boot steps 1–14</th>"
       "<th data-sort=3>Address</th><th data-sort=4>Lines</th><th data-sort=5>Model</th>"
       "<th data-sort=6>Load</th><th data-sort=7>Registration</th><th data-sort=8>Last call</th>"
       "<th data-sort=9>Last seen</th></tr></thead><tbody id=rows>";
  b += render_rows(phones);
  b += "</tbody></table></div>";
  if (phones.empty()) b += "<p id=empty class=sub>No phone seen yet and none listed in the site file.</p>";
  b += "</section>";
  b += render_ports(ports);
  b += "</main></body></html>";
  return b;
}

std::string render_timeline_svg(const json& journey) {
  constexpr int kLeft = 150, kRight = 14, kTop = 10, kRow = 17, kWidth = 760;
  constexpr int kPlot = kWidth - kLeft - kRight;
  const int height = kTop + kRow * kStepCount + 28;
  struct Mark {
    int step;
    std::int64_t ms;
    std::string outcome;
    std::string text;
  };
  std::vector<Mark> marks;
  if (journey.is_object() && journey["history"].is_array()) {
    for (const auto& e : journey["history"]) {
      const int n = e.value("step", 0);
      if (n < 1 || n > kStepCount) continue;
      marks.push_back({n, e.value("time_ms", std::int64_t{0}), str(e, "outcome"),
                       fmt::format("{} {}: {} — {}", n, str(e, "name"), str(e, "outcome"), str(e, "detail"))});
    }
  }
  std::stable_sort(marks.begin(), marks.end(), [](const Mark& a, const Mark& b) { return a.ms < b.ms; });
  // This boot starts at the last power-on (or the first event when power is not ours).
  std::int64_t t0 = marks.empty() ? 0 : marks.front().ms;
  for (const auto& m : marks)
    if (m.step == 1 && m.outcome == "ok") t0 = m.ms;
  // It ends when the last step was first reached; later refreshes would squash the boot.
  std::int64_t end = t0;
  std::set<int> reached;
  std::size_t earlier = 0, later = 0;
  for (const auto& m : marks) {
    if (m.ms < t0) {
      ++earlier;
      continue;
    }
    if (reached.insert(m.step).second) end = std::max(end, m.ms);
  }
  const double span_s = std::max(0.5, static_cast<double>(end - t0) / 1000.0 * 1.05);
  // A round tick step giving 4..10 ticks.
  double tick = 0.1;
  for (double t : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0}) {
    tick = t;
    if (span_s / t <= 8) break;
  }
  auto x = [&](double s) { return kLeft + std::min(1.0, s / span_s) * kPlot; };
  std::string b = fmt::format(
      "<svg id=timeline class=timeline viewBox=\"0 0 {} {}\" role=img aria-label=\"boot timeline: steps against "
      "seconds since power-on\" xmlns=\"http://www.w3.org/2000/svg\">",
      kWidth, height);
  for (int n = 1; n <= kStepCount; ++n) {
    const int y = kTop + (n - 1) * kRow;
    b += fmt::format("<rect class=\"band{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>", n % 2 ? " odd" : "",
                     kLeft, y, kPlot, kRow);
    b += fmt::format("<text class=lbl x=\"{}\" y=\"{}\">{} {}</text>", kLeft - 6, y + kRow - 5, n,
                     html_escape(to_string(static_cast<Step>(n))));
  }
  const int axis_y = kTop + kRow * kStepCount;
  for (double t = 0; t <= span_s + 1e-9; t += tick) {
    const double px = x(t);
    b += fmt::format("<line class=tick x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\"/>", px, kTop, axis_y + 4);
    b += fmt::format("<text class=tl x=\"{:.1f}\" y=\"{}\">{}</text>", px, axis_y + 16,
                     tick < 1 ? fmt::format("{:.1f}", t) : fmt::format("{:.0f}", t));
  }
  b += fmt::format("<text class=axis x=\"{}\" y=\"{}\">seconds since power-on</text>", kLeft + kPlot, axis_y + 27);
  // Per step: a bar from first to last event of this boot, then the events as dots.
  std::map<int, std::pair<std::int64_t, std::int64_t>> extent;
  for (const auto& m : marks) {
    if (m.ms < t0) continue;
    if (m.ms > end) {
      ++later;
      continue;
    }
    auto [it, fresh] = extent.try_emplace(m.step, m.ms, m.ms);
    if (!fresh) it->second.second = m.ms;
  }
  for (const auto& [n, ext] : extent) {
    const double x1 = x(static_cast<double>(ext.first - t0) / 1000.0);
    const double x2 = x(static_cast<double>(ext.second - t0) / 1000.0);
    b += fmt::format("<rect class=span x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"5\"/>", x1,
                     kTop + (n - 1) * kRow + 6, std::max(1.0, x2 - x1));
  }
  std::string prev_outcome;
  for (const auto& m : marks) {
    if (m.ms < t0 || m.ms > end) continue;
    const double s = static_cast<double>(m.ms - t0) / 1000.0;
    b += fmt::format(
        "<circle class=\"ev o-{}\" data-step=\"{}\" cx=\"{:.1f}\" cy=\"{}\" r=\"4.5\"><title>+{} {}</title></circle>",
        html_escape(m.outcome == "info" ? "in-progress" : m.outcome), m.step, x(s), kTop + (m.step - 1) * kRow + 8,
        seconds_text(s), html_escape(m.text));
  }
  b += "</svg>";
  if (earlier || later)
    b += fmt::format("<p class=sub>{}{}{}</p>", earlier ? fmt::format("{} event(s) of earlier boots", earlier) : "",
                     earlier && later ? "; " : "",
                     later ? fmt::format("{} later event(s) (refreshes) past the chart's end", later) : "");
  return b;
}

std::string render_phone_main(const json& p, const json& journey, const std::vector<DownloadLink>& downloads) {
  const auto name = str(p, "name");
  const auto state = str(p, "state");
  std::string b = "<div id=main>";
  b += fmt::format(
      "<div class=ph-head><h1>{}</h1><span class=\"badge s-{}\">{}</span><span class=sub>{}</span>", html_escape(name),
      html_escape(state), state_label(state),
      flag(p, "listed") ? html_escape(str(p, "description")) : std::string("<span class=warn>not in site file</span>"));
  if (!downloads.empty()) {
    b += "<span class=dl>";
    for (const auto& d : downloads)
      b += fmt::format("<a class=button href=\"/phone/{}/{}\" download>{}</a>", html_escape(str(p, "mac")),
                       html_escape(d.file), html_escape(d.label));
    b += "</span>";
  }
  b += "</div>";
  if (!str(p, "reason").empty())
    b += "<p class=\"reasonbox s-" + html_escape(state) + "\">" + html_escape(str(p, "reason")) + "</p>";
  b += "<div class=phone-grid><section class=ds><h2>Device Status</h2><dl>";
  // As the note shows it: Registration, IPv4 Address, Active/Inactive Load ID, Download Status.
  const json ds = journey.is_object() && journey.contains("phone") ? journey["phone"] : json::object();
  for (const auto& f : phone_screen_fields()) {
    std::string value = str(ds, std::string(f.key).c_str());
    if (value.empty() && f.key == "registration") value = "Not registered";
    if (value.empty() && f.key == "download_status") value = "None";
    b += fmt::format("<dt>{}</dt><dd>{}</dd>", f.label, or_dash(value));
  }
  b += "</dl><h3>Phone</h3><dl>";
  std::string lines;
  if (p["extensions"].is_array())
    for (const auto& e : p["extensions"])
      if (e.is_string()) lines += (lines.empty() ? "" : ", ") + html_escape(e.get<std::string>());
  std::string model = or_dash(str(p, "model"));
  if (!str(p, "model_hint").empty()) model += " <span class=warn>" + html_escape(str(p, "model_hint")) + "</span>";
  std::string port = or_dash(str(p, "port"));
  if (!str(p, "vlan").empty()) port += " · voice VLAN " + html_escape(str(p, "vlan"));
  if (!str(p, "power_w").empty()) port += " · " + html_escape(str(p, "power_w")) + " W";
  std::string call = or_dash(str(p, "last_call"));
  if (!str(p, "last_call_time").empty())
    call += " <span class=sub>" + html_escape(str(p, "last_call_time")) + "</span>";
  b += fmt::format(
      "<dt>MAC</dt><dd>{}</dd><dt>Model</dt><dd>{}</dd><dt>Lines</dt><dd>{}</dd>"
      "<dt>Port</dt><dd>{}</dd><dt>Registrar</dt><dd>{}{}</dd><dt>Last call</dt><dd>{}</dd>"
      "<dt>First seen</dt><dd class=nw>{}</dd><dt>Last seen</dt><dd class=nw>{}</dd>",
      html_escape(str(p, "mac")), model, lines.empty() ? "—" : lines, port, or_dash(str(p, "registered_with")),
      str(p, "registration_mode").empty() ? "" : " (" + html_escape(str(p, "registration_mode")) + ")", call,
      or_dash(str(p, "first_seen")), or_dash(str(p, "last_seen")));
  b += "</dl></section><section class=tlsec><h2>Boot timeline</h2><div class=\"strip big\">";
  b += render_step_cells(p["steps"], true);
  b += "</div>";
  b += render_timeline_svg(journey);
  b += "</section></div>";
  // Every event kept, newest first; how many older ones the bounded history let go.
  b += "<section class=events><h2>Events</h2>";
  const std::uint64_t dropped = journey.is_object() ? journey.value("history_dropped", std::uint64_t{0}) : 0;
  if (dropped > 0)
    b += fmt::format(
        "<p class=sub id=history-dropped data-dropped=\"{}\">{} older event(s) not kept (the history holds the newest, "
        "and this boot's power-on and first event of each step)</p>",
        dropped, dropped);
  b += "<div class=tablewrap><table class=grid><thead><tr><th>Time (UTC)</th>"
       "<th>+s</th><th>Step</th><th>Outcome</th><th>Detail</th><th>Facts</th></tr></thead><tbody id=events>";
  std::int64_t t0 = 0;
  if (journey.is_object() && journey["history"].is_array()) {
    const auto& h = journey["history"];
    for (const auto& e : h)
      if (e.value("step", 0) == 1 && str(e, "outcome") == "ok") t0 = e.value("time_ms", std::int64_t{0});
    if (t0 == 0 && !h.empty()) t0 = h.front().value("time_ms", std::int64_t{0});
    for (auto it = h.rbegin(); it != h.rend(); ++it) {
      const auto& e = *it;
      const auto outcome = str(e, "outcome");
      const auto word = outcome == "info" ? std::string("in-progress") : outcome;
      std::string facts;
      if (e["attributes"].is_object())
        for (const auto& [k, v] : e["attributes"].items())
          facts += "<span class=kv>" + html_escape(k) + "=" +
                   html_escape(v.is_string() ? v.get<std::string>()
                                             : v.dump(-1, ' ', false, json::error_handler_t::replace)) +
                   "</span> ";
      if (!str(e, "port").empty()) facts += "<span class=kv>port=" + html_escape(str(e, "port")) + "</span> ";
      if (!str(e, "ip").empty()) facts += "<span class=kv>ip=" + html_escape(str(e, "ip")) + "</span>";
      const double rel = static_cast<double>(e.value("time_ms", std::int64_t{0}) - t0) / 1000.0;
      const auto time = str(e, "time");
      b += fmt::format(
          "<tr><td class=nw title=\"{}\">{}</td><td class=\"nw num\">{}</td><td class=nw>{} {}</td>"
          "<td><span class=\"st o-{} inline\"></span>{}</td><td>{}</td><td class=facts>{}</td></tr>",
          html_escape(time), html_escape(time.size() > 11 ? time.substr(11, 12) : time),
          rel >= 0 ? "+" + seconds_text(rel) : "", e.value("step", 0), html_escape(str(e, "name")), html_escape(word),
          html_escape(outcome), html_escape(str(e, "detail")), facts);
    }
    if (h.empty()) b += "<tr><td colspan=6 class=sub>no events</td></tr>";
  } else {
    b += "<tr><td colspan=6 class=sub>This phone is listed in the site file but has not been seen.</td></tr>";
  }
  b += "</tbody></table></div></section></div>";
  return b;
}

std::string render_phone_page(const json& p, const json& journey, const std::vector<DownloadLink>& downloads,
                              std::string_view site_name) {
  std::string b = page_head(str(p, "name") + " — " + std::string(site_name));
  b += fmt::format("<body data-page=phone data-mac=\"{}\">", html_escape(str(p, "mac")));
  b += top_bar(site_name, "Phone " + str(p, "name"));
  b += "<main><p class=back><a href=\"/\">← all phones</a></p>";
  b += render_phone_main(p, journey, downloads);
  b += "</main></body></html>";
  return b;
}

}  // namespace ve::daemon::status
