#pragma once
// dhcp/: DHCP for the branch, answered by ISC Kea (kea-dhcp4) with our hooks library (kea-hooks/,
// libdhcp_voiceedge.so).
//
// Three layers:
//  - the codec (pure, dhcp/codec.hpp, ve_dhcp_codec): phone matcher, option 150/66 builder,
//    lease-report datagram, Kea's memfile lease file; the hook links it too, the fuzzers build it;
//  - Kea's configuration from the site file (make_kea_config) and the files it keeps (kea_paths);
//  - `Manager`, for the daemon: runs Kea (dhcp.kea.manage: true), receives the hook's lease reports
//    on a unix datagram socket, keeps the lease table (mac_for_ip, show.dhcp.leases) and turns
//    lease events of phones into step-4 phone events.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "dhcp/codec.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"

namespace ve::dhcp {

// The files the managed kea-dhcp4 keeps in <state_dir>/kea/.
struct KeaPaths {
  std::filesystem::path dir;             // <state_dir>/kea: KEA_PIDFILE_DIR and KEA_LOCKFILE_DIR
  std::filesystem::path config;          // kea-dhcp4.json (kea-dhcp4 -c)
  std::filesystem::path leases;          // kea-leases4.csv (memfile)
  std::filesystem::path control_socket;  // kea4-ctrl.sock
  std::filesystem::path pid_file;        // kea-dhcp4.kea-dhcp4.pid (Kea's own name: <config stem>.<process>.pid)
  std::filesystem::path log;             // kea-dhcp4.log (the daemon tails it into its log)
};

KeaPaths kea_paths(const config::SiteConfig& site);

// Kea's JSON configuration, generated from the site file: the whole {"Dhcp4": {...}} document, or
// with `hook_part_only` just {"hooks-libraries": [...]} for sites that run their own Kea
// (voiceedged --print-kea-config with manage: false).
nlohmann::json make_kea_config(const config::SiteConfig& site, bool hook_part_only);

// The daemon's DHCP part, on its io_context (single-threaded: every call from the loop's thread).
class Manager {
 public:
  // Where Kea must serve `subnet` now (the interface that carries its router address, from net/);
  // empty: the subnet's `interface` in the site file.
  using ServiceInterface = std::function<std::string(const config::Subnet& subnet)>;

  Manager(boost::asio::io_context& io, config::SiteConfigPtr config, EventSink& events,
          ServiceInterface service_interface = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Seeds the lease table from Kea's lease file, listens for reports, starts (or adopts) Kea when
  // the site manages it.
  void start();
  void reconfigure(const config::SiteConfigPtr& config);
  // Stops the managed Kea (blocking, at shutdown) and closes the report socket.
  void stop();

  // show.dhcp.leases: one row per address, and the counters and Kea's state.
  nlohmann::json leases() const;
  nlohmann::json status() const;
  // The MAC that holds lease `ip` (dotted quad), if known. A miss makes the lease file be read
  // again soon: the report of a lease the phone already uses may have been lost.
  std::optional<MacAddress> mac_for_ip(const std::string& ip);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ve::dhcp
