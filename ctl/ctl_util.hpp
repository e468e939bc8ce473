#pragma once
// Pieces every renderer uses, and the daemon's own commands (version, reload, phones, journey).
#include <string>

#include <nlohmann/json.hpp>

#include "ctl/ctl_registry.hpp"

namespace ve::ctl {

// A JSON field as display text: strings as they are, numbers and booleans printed, null/absent "".
std::string field(const nlohmann::json& j, const char* key);

void add_core_commands(CommandTable& table);

}  // namespace ve::ctl
