#pragma once
// Kea's JSON configuration, generated from the site file (dhcp.kea.manage: true), and the files
// the managed kea-dhcp4 keeps in <state_dir>/kea/.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace ve::daemon {

struct KeaPaths {
  std::filesystem::path dir;             // <state_dir>/kea: KEA_PIDFILE_DIR and KEA_LOCKFILE_DIR
  std::filesystem::path config;          // kea-dhcp4.json (kea-dhcp4 -c)
  std::filesystem::path leases;          // kea-leases4.csv (memfile)
  std::filesystem::path control_socket;  // kea4-ctrl.sock
  std::filesystem::path pid_file;        // kea-dhcp4.kea-dhcp4.pid (Kea's own name: <config stem>.<process>.pid)
  std::filesystem::path log;             // kea-dhcp4.log (the daemon tails it into its log)
};

KeaPaths kea_paths(const config::SiteConfig& site);

// The whole {"Dhcp4": {...}} document, or with `hook_part_only` just {"hooks-libraries": [...]} for
// sites that run their own Kea (voiceedged --print-kea-config with manage: false).
nlohmann::json make_kea_config(const config::SiteConfig& site, bool hook_part_only);

}  // namespace ve::daemon
