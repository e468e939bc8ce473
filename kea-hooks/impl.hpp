#pragma once
// The hooks library's real work, behind the extern "C" surface in callouts.cpp: classify the
// client, add options 150/66 to a phone's response, report lease events to the daemon.
// State is read-only after construction (site config, matcher) plus the thread-safe reporter,
// so callouts may run on Kea's packet threads concurrently.
#include <memory>
#include <string>

#include <hooks/hooks.h>

#include "config/config.hpp"
#include "kea-hooks/kea_hooks.hpp"

namespace ve::kea_hooks {

struct HookParameters {
  std::string site_file;     // "site-file": the voiceedge site YAML (required)
  std::string event_socket;  // "event-socket": the daemon's datagram socket; empty = from site file
};

class HookImpl {
 public:
  // Reads and validates the site file. Throws std::runtime_error with a readable reason: this runs
  // inside load(), which turns it into VOICEEDGE_LOAD_ERROR and a refused load.
  explicit HookImpl(const HookParameters& params);

  const config::SiteConfig& site() const { return *site_; }
  const LeaseReporter& reporter() const { return reporter_; }
  // Waits (bounded) for the sender to deliver or drop what is queued.
  void flush_reports() { reporter_.flush(std::chrono::seconds(2)); }

  // Callout bodies. They may throw; callouts.cpp catches and logs.
  void on_pkt4_send(isc::hooks::CalloutHandle& handle);
  void on_lease4_release(isc::hooks::CalloutHandle& handle);
  void on_lease4_decline(isc::hooks::CalloutHandle& handle);
  void on_lease4_expire(isc::hooks::CalloutHandle& handle);

 private:
  void report(dhcp::LeaseReport r);

  config::SiteConfigPtr site_;
  dhcp::PhoneMatcher matcher_;
  LeaseReporter reporter_;
};

}  // namespace ve::kea_hooks
