// voiceedgectl phone restart|reset|power-cycle MAC: what was sent to the phone and its answer.
#include <fmt/format.h>

#include "ctl/ctl_registry.hpp"
#include "ctl/ctl_util.hpp"
#include "ve/control_commands.hpp"

namespace ve::ctl {
namespace {

using nlohmann::json;

// The NOTIFY waits for the phone up to 64*T1 (32 s); the command's answer comes after it.
constexpr int kNotifyWait_s = 40;

std::string render_push(const json& data, const json&) {
  std::string out = fmt::format("{} ({}): service-control NOTIFY action={}\n", field(data, "phone"), field(data, "mac"),
                                field(data, "action"));
  if (data.contains("sent")) {
    const auto& s = data["sent"];
    out += fmt::format("  sent over      {} (registration {}, Call-ID {})\n", field(s, "destination"),
                       field(s, "registration"), field(s, "register_call_id"));
  }
  out += fmt::format("  versionStamp   {}\n", field(data, "config_version"));
  out += fmt::format("  answer         {}\n", field(data, "result"));
  return out;
}

std::string render_power_cycle(const json& data, const json&) {
  return fmt::format("{} ({}): {} ({})\n", field(data, "phone"), field(data, "mac"), field(data, "result"),
                     field(data, "port_from"));
}

}  // namespace

void add_phonectl_commands(CommandTable& table) {
  Command restart{command::words(command::kPhoneRestart),
                  {"phone"},
                  "tell a registered phone to fetch its config again (SIP NOTIFY action=restart)",
                  render_push};
  restart.min_timeout_s = kNotifyWait_s;
  table.add(restart);
  Command reset{command::words(command::kPhoneReset),
                {"phone"},
                "tell a registered phone to reboot (SIP NOTIFY action=reset)",
                render_push};
  reset.min_timeout_s = kNotifyWait_s;
  table.add(reset);
  Command cycle{command::words(command::kPhonePowerCycle),
                {"phone"},
                "turn the phone's PoE port off, then on again (default 5 s off)",
                render_power_cycle};
  cycle.options = {"seconds"};
  cycle.option_values = {{"seconds", "N"}};
  cycle.min_timeout_s = 70;
  table.add(cycle);
}

}  // namespace ve::ctl
