#pragma once
// One named spdlog logger per component ("cdp", "poe", "dhcp", "provision", "sip", "journey",
// "control", "net"). The daemon sets the sink and level once; components only ask for their logger.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace ve {

inline std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  auto created = spdlog::default_logger()->clone(name);
  spdlog::register_logger(created);
  return created;
}

}  // namespace ve
