// voiceedged: the voiceedge daemon.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>

#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "dhcp/dhcp.hpp"

namespace {

constexpr const char* kDescription =
    "voiceedged - access and registration stack for IP phones in a branch office\n"
    "\n"
    "Powers phone ports (PoE), advertises the voice VLAN over CDP and LLDP-MED, runs ISC Kea\n"
    "with the voiceedge hook (option 150/66), serves TFTP and HTTP 6970 provisioning, registers\n"
    "phones over SIP, and keeps one timeline per phone across all fourteen boot steps.";

constexpr const char* kFooter =
    "SIGNALS\n"
    "  SIGHUP   re-read the site file; on any error the running configuration is kept and the\n"
    "           errors are logged (voiceedgectl reload returns them)\n"
    "  SIGTERM  stop cleanly; phone power is never cut by a stop or restart\n"
    "\n"
    "FILES\n"
    "  /etc/voiceedge/site.yaml         the site file (see docs/config.md)\n"
    "  <state_dir>/journey.sqlite       phone timelines\n"
    "  <state_dir>/poe-state.json       PoE allocations and overrides across restarts\n"
    "  <state_dir>/NAME.corrupt-<time>  a damaged state file, set aside at start (the daemon\n"
    "                                   starts empty instead); kept for inspection, safe to delete\n"
    "  <control.socket>                 control socket used by voiceedgectl; root, the daemon's\n"
    "                                   user and control.admin_group may change things,\n"
    "                                   control.read_group may run show commands\n"
    "\n"
    "RESOURCES\n"
    "  The soft RLIMIT_NOFILE is raised to the hard limit at start (LimitNOFILE in the unit). A\n"
    "  reserve is kept for the control socket, state files and Kea; every connection limit (SIP\n"
    "  TCP, HTTP 6970, TFTP transfers, status page) is lowered to its share of the rest. On\n"
    "  EMFILE/ENFILE a listener pauses accepting briefly and logs one line per 10 s.\n"
    "\n"
    "LOGGING\n"
    "  To the journal when started by systemd (JOURNAL_STREAM set), else to standard error.\n"
    "\n"
    "EXIT STATUS\n"
    "  0  clean stop, or --check-config found no error (warnings are printed but do not fail it)\n"
    "  1  invalid site file, or a resource the daemon needs could not be opened\n"
    "  2  bad command line\n"
    "\n"
    "EXAMPLES\n"
    "  voiceedged --config /etc/voiceedge/site.yaml --check-config\n"
    "  voiceedged --config /etc/voiceedge/site.yaml --log-level debug";

void setup_logging(const std::string& level) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  // systemd sets JOURNAL_STREAM for services whose output goes to the journal.
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    sink = std::make_shared<spdlog::sinks::systemd_sink_mt>("voiceedged");
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::logger>("voiceedged", sink);
  logger->set_pattern(std::getenv("JOURNAL_STREAM") ? "%n: %v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %n: %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(kDescription, "voiceedged");
  app.footer(kFooter);
  std::string config_path = "/etc/voiceedge/site.yaml";
  bool check_only = false;
  bool print_kea = false;
  bool show_version = false;
  std::string level = "info";
  app.add_option("-c,--config", config_path, "Site file to run (YAML)")->capture_default_str();
  app.add_flag("--check-config", check_only,
               "Validate the site file, print FILE:LINE:COL: message per error, exit 0 or 1");
  app.add_flag("--print-kea-config", print_kea,
               "Print the kea-dhcp4 configuration generated from the site file (the hook's part, for sites "
               "that run their own Kea with dhcp.kea.manage: false) and exit");
  app.add_option("-l,--log-level", level, "trace, debug, info, warn, error or critical")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_flag("-V,--version", show_version, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (show_version) {
    std::cout << "voiceedged " << VE_VERSION << "\n";
    return 0;
  }
  setup_logging(level);

  auto loaded = ve::config::load_file(config_path);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::cerr << e.to_string() << "\n";
    std::cerr << loaded.error().size() << " error(s) in " << config_path << "\n";
    return 1;
  }
  for (const auto& w : (*loaded)->warnings) {
    if (check_only)
      std::cerr << "warning: " << w.to_string() << "\n";
    else
      spdlog::warn("{}", w.to_string());
  }
  if (check_only) {
    std::cout << config_path << ": OK (" << (*loaded)->ports.size() << " ports, " << (*loaded)->phones.size()
              << " phones)\n";
    return 0;
  }
  if (print_kea) {
    std::cout << ve::dhcp::make_kea_config(**loaded, !(*loaded)->dhcp.kea.manage).dump(2) << "\n";
    return 0;
  }
  ve::daemon::Daemon daemon(config_path, loaded.value());
  return daemon.run();
}
