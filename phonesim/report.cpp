// Results as one text line or one JSON object per phone, and the run's summary.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "phonesim/internal.hpp"

namespace ve::phonesim {

std::string_view to_string(StepOutcome o) {
  switch (o) {
    case StepOutcome::Ok: return "ok";
    case StepOutcome::Expected: return "expected";
    case StepOutcome::Missing: return "missing";
    case StepOutcome::Failed: return "failed";
    case StepOutcome::Skipped: return "skipped";
  }
  return "?";
}

std::string_view to_string(CallDirection d) { return d == CallDirection::Placed ? "placed" : "received"; }

bool call_completed(const CallRecord& c) {
  return c.direction == CallDirection::Placed && c.final_code >= 200 && c.final_code < 300 && c.answered &&
         c.bye_code == 200;
}

std::string call_line(const CallRecord& c) {
  std::string line =
      fmt::format("call {} {} ", to_string(c.direction), c.direction == CallDirection::Placed ? "to" : "from");
  line += c.peer.empty() ? "?" : c.peer;
  if (c.final_code > 0) {
    line += fmt::format(": {} {}", c.final_code, c.reason);
    if (c.setup) line += fmt::format(" in {} ms", c.setup->count());
  } else {
    line += ": no final response";
  }
  if (c.ringing) line += ", rang";
  if (c.answered) line += ", answered";
  if (!c.ended_by.empty()) line += ", ended by the " + c.ended_by;
  if (c.bye_code > 0) line += fmt::format(", BYE {}", c.bye_code);
  if (!c.detail.empty() && c.detail != fmt::format("{} {}", c.final_code, c.reason)) line += " (" + c.detail + ")";
  return line;
}

namespace detail {
nlohmann::json calls_json(const std::vector<CallRecord>& calls) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : calls) {
    out.push_back({{"direction", to_string(c.direction)},
                   {"peer", c.peer},
                   {"call_id", c.call_id},
                   {"final_code", c.final_code > 0 ? nlohmann::json(c.final_code) : nlohmann::json(nullptr)},
                   {"reason", c.reason},
                   {"ringing", c.ringing},
                   {"answered", c.answered},
                   {"ended_by", c.ended_by.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.ended_by)},
                   {"bye_code", c.bye_code > 0 ? nlohmann::json(c.bye_code) : nlohmann::json(nullptr)},
                   {"setup_ms", c.setup ? nlohmann::json(c.setup->count()) : nlohmann::json(nullptr)},
                   {"detail", c.detail.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.detail)}});
  }
  return out;
}
}  // namespace detail

namespace {

nlohmann::json phone_json(const PhoneResult& r) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : r.steps) {
    steps.push_back({{"step", static_cast<int>(s.step)},
                     {"name", to_string(s.step)},
                     {"outcome", to_string(s.outcome)},
                     {"detail", s.detail},
                     {"at_ms", s.at.count()},
                     {"ms", s.took.count()}});
  }
  nlohmann::json j = {
      {"mac", r.mac.to_string()},
      {"name", r.mac.sep_name()},
      {"model", r.model},
      {"ip", r.ip.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.ip)},
      {"voice_vlan", r.voice_vlan ? nlohmann::json(*r.voice_vlan) : nlohmann::json(nullptr)},
      {"config_file", r.config_file},
      {"registered", r.registered},
      {"registered_with", r.registered_with},
      {"lines", r.lines},
      {"active_load", r.active_load},
      {"inactive_load", r.inactive_load},
      {"reached_step", r.reached_step},
      {"started_ms", r.started_at.count()},
      {"time_to_registered_ms",
       r.time_to_registered ? nlohmann::json(r.time_to_registered->count()) : nlohmann::json(nullptr)},
      {"failed_step", r.failed_step ? nlohmann::json(static_cast<int>(*r.failed_step)) : nlohmann::json(nullptr)},
      {"failure", r.failure.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.failure)},
      {"refresh_ok", r.refresh_ok},
      {"refresh_failed", r.refresh_failed},
      {"registered_at_end", r.registered_at_end},
      {"calls", detail::calls_json(r.calls)},
      {"steps", steps}};
  return j;
}

}  // namespace

std::string result_json(const PhoneResult& r) { return phone_json(r).dump(); }

std::string result_line(const PhoneResult& r, bool verbose) {
  std::string line;
  if (r.registered) {
    line = fmt::format("{} registered  ip={} vlan={} with={} lines={} in {} ms", r.mac.sep_name(), r.ip,
                       r.voice_vlan ? std::to_string(*r.voice_vlan) : "-", r.registered_with, fmt::join(r.lines, ","),
                       r.time_to_registered ? r.time_to_registered->count() : 0);
  } else {
    line = fmt::format("{} FAILED      ip={} reached step {}: {}", r.mac.sep_name(), r.ip.empty() ? "-" : r.ip,
                       r.reached_step, r.failure.empty() ? "not finished" : r.failure);
  }
  for (const auto& c : r.calls) line += "; " + call_line(c);
  if (verbose) {
    for (const auto& s : r.steps) {
      line += fmt::format("\n    {:>2} {:<19} {:<8} {:>6} ms  {}", static_cast<int>(s.step), to_string(s.step),
                          to_string(s.outcome), s.took.count(), s.detail);
    }
  }
  return line;
}

namespace detail {

nlohmann::json summary_json(const std::vector<const PhoneResult*>& results, int phones,
                            std::chrono::milliseconds elapsed, bool held, bool interrupted,
                            const std::string& tagging) {
  int registered = 0, failed = 0, refresh_ok = 0, refresh_failed = 0, lost = 0;
  int placed = 0, completed = 0, received = 0, received_answered = 0;
  std::vector<long> ttr;
  long all_registered_at = 0;
  std::map<std::string, int> by_step;
  for (const auto* r : results) {
    for (const auto& c : r->calls) {
      if (c.direction == CallDirection::Placed) {
        ++placed;
        if (call_completed(c)) ++completed;
      } else {
        ++received;
        if (c.answered) ++received_answered;
      }
    }
    refresh_ok += r->refresh_ok;
    refresh_failed += r->refresh_failed;
    if (r->registered) {
      ++registered;
      ttr.push_back(r->time_to_registered->count());
      all_registered_at = std::max(all_registered_at, r->started_at.count() + r->time_to_registered->count());
      if (held && !r->registered_at_end) ++lost;
    } else {
      ++failed;
      ++by_step[r->failed_step ? fmt::format("{}-{}", static_cast<int>(*r->failed_step), to_string(*r->failed_step))
                               : std::string("unfinished")];
    }
  }
  std::sort(ttr.begin(), ttr.end());
  auto pct = [&](double p) -> nlohmann::json {
    if (ttr.empty()) return nullptr;
    const auto i = static_cast<std::size_t>(p * static_cast<double>(ttr.size() - 1) + 0.5);
    return ttr[std::min(i, ttr.size() - 1)];
  };
  return {{"summary",
           {{"phones", phones},
            {"finished", results.size()},
            {"registered", registered},
            {"failed", failed},
            {"not_registered_at_end", lost},
            {"elapsed_ms", elapsed.count()},
            {"all_registered_ms", registered == phones ? nlohmann::json(all_registered_at) : nlohmann::json(nullptr)},
            {"time_to_registered_ms",
             {{"p50", pct(0.5)},
              {"p95", pct(0.95)},
              {"max", ttr.empty() ? nlohmann::json(nullptr) : nlohmann::json(ttr.back())}}},
            {"failed_by_step", by_step},
            {"refresh_ok", refresh_ok},
            {"refresh_failed", refresh_failed},
            {"calls",
             {{"placed", placed},
              {"placed_completed", completed},
              {"received", received},
              {"received_answered", received_answered}}},
            {"vlan_tagging", tagging},
            {"interrupted", interrupted}}}};
}

std::string summary_text(const nlohmann::json& j) {
  const auto& s = j["summary"];
  std::string out = fmt::format("phones {}: {} registered, {} failed", s["phones"].get<int>(),
                                s["registered"].get<int>(), s["failed"].get<int>());
  const int finished = s["finished"].get<int>();
  if (finished < s["phones"].get<int>()) out += fmt::format(", {} not finished", s["phones"].get<int>() - finished);
  out += fmt::format(" in {} ms", s["elapsed_ms"].get<long>());
  if (!s["all_registered_ms"].is_null())
    out += fmt::format("; all registered at {} ms", s["all_registered_ms"].get<long>());
  const auto& t = s["time_to_registered_ms"];
  if (!t["p50"].is_null()) {
    out += fmt::format("; time to registered p50 {} ms, p95 {} ms, max {} ms", t["p50"].get<long>(),
                       t["p95"].get<long>(), t["max"].get<long>());
  }
  if (!s["failed_by_step"].empty()) {
    out += "; failed at";
    for (const auto& [k, v] : s["failed_by_step"].items()) out += fmt::format(" {}={}", k, v.get<int>());
  }
  if (s["refresh_ok"].get<int>() + s["refresh_failed"].get<int>() > 0) {
    out += fmt::format("; refreshes ok {} failed {}", s["refresh_ok"].get<int>(), s["refresh_failed"].get<int>());
    if (s["not_registered_at_end"].get<int>() > 0) {
      out += fmt::format(", {} not registered at the end", s["not_registered_at_end"].get<int>());
    }
  }
  if (s.contains("calls")) {
    const auto& c = s["calls"];
    if (c["placed"].get<int>() + c["received"].get<int>() > 0) {
      out += fmt::format("; calls placed {} ({} completed), received {} ({} answered)", c["placed"].get<int>(),
                         c["placed_completed"].get<int>(), c["received"].get<int>(), c["received_answered"].get<int>());
    }
  }
  out += "\nvlan: " + s["vlan_tagging"].get<std::string>();
  if (s["interrupted"].get<bool>()) {
    out += finished < s["phones"].get<int>() ? "\ninterrupted before every phone finished"
                                             : "\ninterrupted while holding the registrations";
  }
  return out;
}

}  // namespace detail
}  // namespace ve::phonesim
