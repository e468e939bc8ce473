// The call manager's service-control NOTIFY, as a Cisco phone takes it: answer 200 (unless
// --ignore-notify plays a hung phone), then action=restart fetches the config files again and
// registers anew, action=reset reboots through the whole sequence (CDP, DHCP, files, REGISTER).
#include <fmt/format.h>

#include "phonesim/internal.hpp"

namespace ve::phonesim::detail {

namespace {

using nlohmann::json;

// The value of `key=` in the text/plain body, without the braces Cisco puts around it.
std::string body_value(std::string_view body, std::string_view key) {
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    auto line = sip::trim(body.substr(pos, end - pos));
    pos = end + 1;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || !sip::iequals(sip::trim(line.substr(0, eq)), key)) continue;
    auto value = sip::trim(line.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '{' && value.back() == '}') value = value.substr(1, value.size() - 2);
    return std::string(value);
  }
  return {};
}

}  // namespace

void Phone::on_service_control(const sip::Message& m, const std::function<void(int, std::string)>& reply) {
  const auto action = body_value(m.body, "action");
  const auto registration = body_value(m.body, "RegisterCallId");
  json ev{{"mac", mac_.to_string()},
          {"action", action},
          {"register_call_id", registration},
          {"config_version", body_value(m.body, "ConfigVersionStamp")}};
  auto emit = [&](json e) {
    if (shared_.on_control) shared_.on_control(json{{"control", std::move(e)}});
  };
  if (shared_.options.ignore_notify) {
    ev["answered"] = nullptr;
    ev["detail"] = "ignored (--ignore-notify)";
    return emit(std::move(ev));
  }
  if (action != "restart" && action != "reset") {
    reply(400, "Bad Request");
    ev["answered"] = 400;
    ev["detail"] = "no action=restart or action=reset in the body";
    return emit(std::move(ev));
  }
  // A phone acts only for a registration it holds (a stale or forged NOTIFY changes nothing).
  const bool ours =
      std::any_of(lines_.begin(), lines_.end(), [&](const LineState& l) { return l.call_id == registration; });
  if (!ours) {
    reply(481, "Call/Transaction Does Not Exist");
    ev["answered"] = 481;
    ev["detail"] = "RegisterCallId is none of this phone's registrations";
    return emit(std::move(ev));
  }
  reply(200, "OK");
  ev["answered"] = 200;
  if (!control_action_.empty()) {
    ev["detail"] = "already doing a " + control_action_;
    return emit(std::move(ev));
  }
  control_action_ = action;
  control_event_ = ev;
  emit(std::move(ev));
  wake();  // keep_registered() carries it out
}

asio::awaitable<void> Phone::carry_out_control() {
  const std::string action = std::exchange(control_action_, std::string());
  json ev = std::exchange(control_event_, json());
  // The 200 OK is queued on the connection about to be closed: let it leave first.
  co_await pause(std::chrono::milliseconds(200));
  const auto began = Clock::now();
  for (auto& [id, call] : incoming_) call.ring->cancel();
  incoming_.clear();
  if (sip_) sip_->close();
  result_.registered = false;
  result_.lines.clear();
  registered_cm_.reset();
  bool ok = false;
  if (action == "reset") {
    // The whole boot again; its steps replace the first boot's in the result.
    result_.steps.clear();
    result_.failed_step.reset();
    result_.failure.clear();
    result_.reached_step = 0;
    rebooting_ = true;
    co_await boot();
    rebooting_ = false;
    ok = result_.registered;
  } else {
    start_ = Clock::now();
    deadline_ = start_ + shared_.options.timeout;
    const auto& opt = shared_.options;
    FetchSettings fs;
    fs.transport = opt.transport;
    fs.timeout = opt.fetch_timeout;
    fs.user_agent = user_agent_for(opt.model, result_.active_load);
    files_ = std::make_unique<FileClient>(shared_.io.get_executor(), ip_, tftp_servers_, fs);
    ok = co_await step_files();
    if (ok) ok = co_await step_register();
    files_.reset();
  }
  result_.registered_at_end = result_.registered;
  ev["config_file"] = result_.config_file;
  ev["registered"] = ok;
  ev["lines"] = result_.lines;
  ev["took_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count();
  if (!ok) ev["failure"] = result_.failure;
  if (shared_.on_control) shared_.on_control(json{{"control", std::move(ev)}});
}

}  // namespace ve::phonesim::detail
