#pragma once
// The status page's HTML, built from plain JSON models so that every byte a phone, a neighbour
// or the site file can influence passes one escaping function. Pure functions: no sockets, no
// clock (callers pass `now`), unit-tested on hostile strings.
//
// Contract kept for tests and scripts: every boot-step cell is an element with
// data-step="1".."14" and data-outcome="<outcome>", outcome one of kOutcomes.
#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "daemon/journey.hpp"

namespace ve::daemon::status {

using Clock = std::chrono::system_clock;

// ok, expected, failed: what the component reported. in-progress: reported as information only,
// or the step a phone that was active a moment ago is due at. missing: a required step skipped,
// or the step a phone that went quiet is stuck at. none: not (yet) reached, or not needed.
inline constexpr std::array<std::string_view, 6> kOutcomes = {"ok",      "expected",    "failed",
                                                              "missing", "in-progress", "none"};

// A phone that sent nothing for this long while not registered is stuck, not booting.
inline constexpr std::chrono::seconds kQuietAfter{30};

std::string html_escape(std::string_view text);
// "12:03:44" from an ISO time "2026-12-01T12:03:44.123Z" (empty stays empty).
std::string clock_time(std::string_view iso);

// What the site file says about one phone's model against what CDP/LLDP saw: a hint when the
// model numbers differ ("site file says CP-7841, CDP reports Cisco IP Phone 8851"), else "".
std::string model_mismatch(std::string_view site_model, std::string_view reported_model);

// Downloads other parts of the daemon serve under /phone/<MAC>/<file> (the links are shown only
// for those registered).
struct DownloadLink {
  std::string file;   // "report.tar.gz"
  std::string label;  // "download report"
};

// Models (JSON, the same data /api/dashboard serves).
// One row: the phone as the journey knows it, the site file's view, and the per-step cells.
nlohmann::json phone_model(const JourneyTracker& journey, const PhoneJourney* seen, const config::Phone* listed,
                           const config::SiteConfig* site, Clock::time_point now);
// Every phone seen, then every listed phone never seen, sorted by port then name.
nlohmann::json phones_model(const JourneyTracker& journey, const config::SiteConfig* site, Clock::time_point now);
// The site's ports with PoE (`poe`: data of show.power.inline, may be null), neighbours
// (`cdp`: data of show.cdp.neighbors, may be null) and links (`net`: show.interfaces, may be null).
nlohmann::json ports_model(const config::SiteConfig* site, const nlohmann::json& poe, const nlohmann::json& cdp,
                           const nlohmann::json& net, const JourneyTracker& journey);
// Counts for the top of the dashboard.
nlohmann::json counters_model(const nlohmann::json& phones);

// Fragments (swapped in place by the page script on live updates).
std::string render_row(const nlohmann::json& phone);
std::string render_rows(const nlohmann::json& phones);
std::string render_counters(const nlohmann::json& counters);
std::string render_ports(const nlohmann::json& ports);
std::string render_step_cells(const nlohmann::json& steps, bool labelled);

// Whole pages.
std::string render_dashboard(const nlohmann::json& phones, const nlohmann::json& ports, std::string_view site_name);
// `journey`: journey_json() of the phone (null for a listed phone never seen), `phone`: its row.
std::string render_phone_main(const nlohmann::json& phone, const nlohmann::json& journey,
                              const std::vector<DownloadLink>& downloads);
std::string render_phone_page(const nlohmann::json& phone, const nlohmann::json& journey,
                              const std::vector<DownloadLink>& downloads, std::string_view site_name);
// The time chart: steps (rows) against seconds since power-on (x), one mark per event.
std::string render_timeline_svg(const nlohmann::json& journey);

}  // namespace ve::daemon::status
