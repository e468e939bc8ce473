// Phone control: what CUCM's "Apply Config", "Restart" and "Reset" do, for the box's phones.
// After a reload, every registered phone whose SEP<MAC>.cnf.xml the reload changed gets a SIP
// service-control NOTIFY (restart; reset when its load changed) over its registration; the
// "phone.restart", "phone.reset" and "phone.power-cycle" commands do the same (or cycle the PoE
// port) for one phone. Each push and the phone's answer go into its timeline. The glue over
// sip/ (Services::service_control), provision/ (the rendered files) and poe/ (power_cycle).
#include <fmt/format.h>

#include "daemon/daemon_registry.hpp"
#include "provision/provision.hpp"
#include "ve/control_commands.hpp"
#include "ve/log.hpp"

namespace ve::daemon {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::chrono::seconds kDefaultOff{5};
constexpr std::int64_t kMaxOffSeconds = 60;

// The line whose registration carries the NOTIFY: the phone's lowest button.
std::string first_line_user(const config::Phone& phone) {
  const config::Line* first = nullptr;
  for (const auto& l : phone.lines)
    if (!first || l.button < first->button) first = &l;
  if (!first) return {};
  return first->auth_user.empty() ? first->extension : first->auth_user;
}

std::string answer_text(const json& outcome) {
  if (outcome.value("answered", false))
    return fmt::format("phone answered {} {}", outcome.value("status", 0), outcome.value("reason", ""));
  const auto waited_s = (outcome.value("waited_ms", std::int64_t{0}) + 500) / 1000;
  return fmt::format("no answer after {} s ({} retransmissions)", waited_s, outcome.value("retransmissions", 0));
}

class PhoneControlComponent final : public Component {
 public:
  explicit PhoneControlComponent(Context& ctx) : ctx_(ctx), config_(ctx.config) {}

  std::string_view name() const override { return "phonectl"; }
  void start() override {}
  // Open pushes end with the SIP server (its transactions are dropped without callbacks).
  void stop() override {}

  // Runs after provision and sip took the new config: the files served are already the new ones.
  void reconfigure(const config::SiteConfigPtr& config) override {
    const auto old = std::exchange(config_, config);
    if (!old || !ctx_.services.service_control) return;
    std::size_t changed = 0;
    std::size_t pushed = 0;
    for (const auto& phone : config_->phones) {
      const config::Phone* before = old->find_phone(phone.mac);
      if (!before) continue;  // new in the site file: it has not been able to register its lines
      // The versionStamp is a fingerprint of the rest of the file: equal stamps, equal files (and
      // the phone itself would ignore a file with the stamp it has). One render per side.
      auto version = provision::phone_config_version(*config_, phone);
      if (provision::phone_config_version(*old, *before) == version) continue;
      ++changed;
      const bool load_changed = provision::phone_load(*old, *before) != provision::phone_load(*config_, phone);
      if (push(phone, load_changed ? "reset" : "restart", "after reload", std::move(version), nullptr)) ++pushed;
    }
    if (changed > 0)
      ve::logger("phonectl")
          ->info("reload changed the config of {} phone(s); {} registered, told to fetch it", changed, pushed);
  }

  // Sends the NOTIFY: what went out, or why nothing did (not registered). `answered` (may be
  // empty) gets the phone's answer and its one-line text.
  using Answered = std::function<void(const json& outcome, const std::string& text)>;
  Result<json, std::string> push(const config::Phone& phone, const std::string& action, const std::string& why,
                                 const std::string& version, Answered answered) {
    Services::ServiceControlCall call{phone.mac, action, version, first_line_user(phone)};
    const auto mac = phone.mac;
    auto sent = ctx_.services.service_control(
        call, [this, mac, action, why, answered, alive = std::weak_ptr<bool>(alive_)](const json& outcome) {
          if (alive.expired()) return;
          const auto text = answer_text(outcome);
          const bool ok = outcome.value("answered", false) && outcome.value("status", 0) / 100 == 2;
          report(mac, Step::ConfigFile, fmt::format("config push ({}) {}: {}", action, why, text));
          if (!ok) ve::logger("phonectl")->warn("{}: config push ({}) {}: {}", mac.sep_name(), action, why, text);
          if (answered) answered(outcome, text);
        });
    if (!sent) {
      report(
          mac, Step::ConfigFile,
          fmt::format("config changed {}, not pushed: {} (it gets the new file when it next asks)", why, sent.error()));
      return unexpected(sent.error());
    }
    report(mac, Step::ConfigFile,
           fmt::format("config pushed ({}) {} over {}, versionStamp {}", action, why,
                       sent->value("destination", std::string()), version));
    return sent;
  }

  // phone.restart / phone.reset: the same NOTIFY to one phone, answered when the phone answers.
  void command(const json& args, const std::string& action, ControlDone done) {
    if (!ctx_.services.service_control)
      return done(unexpected(ControlError{"unavailable", "the SIP registrar is not part of this daemon"}));
    auto phone = phone_arg(args);
    if (!phone) return done(unexpected(phone.error()));
    const config::Phone& p = **phone;
    const auto version = provision::phone_config_version(*config_, p);
    auto out = std::make_shared<json>(
        json{{"phone", p.mac.sep_name()}, {"mac", p.mac.to_string()}, {"action", action}, {"config_version", version}});
    auto sent =
        push(p, action, "by the administrator", version, [out, done](const json& outcome, const std::string& text) {
          (*out)["answer"] = outcome;
          (*out)["result"] = text;
          done(*out);
        });
    if (!sent) return done(unexpected(ControlError{"not-found", sent.error()}));
    (*out)["sent"] = *sent;
  }

  void power_cycle(const json& args, ControlDone done) {
    auto phone = phone_arg(args);
    if (!phone) return done(unexpected(phone.error()));
    const config::Phone& p = **phone;
    std::chrono::seconds off = kDefaultOff;
    if (args.contains("seconds")) {
      if (!args["seconds"].is_number_integer() || args["seconds"].get<std::int64_t>() < 1 ||
          args["seconds"].get<std::int64_t>() > kMaxOffSeconds)
        return done(unexpected(ControlError{"bad-request", fmt::format("--seconds must be 1 to {}", kMaxOffSeconds)}));
      off = std::chrono::seconds(args["seconds"].get<std::int64_t>());
    }
    if (!ctx_.services.power_cycle)
      return done(unexpected(ControlError{
          "unavailable", p.mac.sep_name() + " is on no PoE port the box controls: the PoE driver is unavailable"}));
    std::optional<std::string> port = ctx_.services.poe_port_of ? ctx_.services.poe_port_of(p.mac) : std::nullopt;
    const char* how = "learnt over CDP/LLDP";
    if (!port && !p.port.empty()) {
      port = p.port;
      how = "from the site file";
    }
    if (!port)
      return done(unexpected(ControlError{
          "failed", fmt::format("{} is on no PoE port the box controls: no port learnt over CDP/LLDP and none in the "
                                "site file (phones[].port); unplug it by hand",
                                p.mac.sep_name())}));
    const auto mac = p.mac;
    const auto port_name = *port;
    const std::string learnt = how;
    auto r = ctx_.services.power_cycle(
        port_name, off,
        [this, mac, port_name, off, learnt, done, alive = std::weak_ptr<bool>(alive_)](Result<void, std::string> on) {
          if (alive.expired()) return;
          if (!on) return done(unexpected(ControlError{"failed", on.error()}));
          report(mac, Step::Power,
                 fmt::format("power-cycled by the administrator: {} on again after {} s", port_name, off.count()));
          done(json{{"phone", mac.sep_name()},
                    {"mac", mac.to_string()},
                    {"port", port_name},
                    {"port_from", learnt},
                    {"off_s", off.count()},
                    {"result", fmt::format("{} off for {} s, power enabled again", port_name, off.count())}});
        });
    if (!r)
      return done(
          unexpected(ControlError{"failed", fmt::format("{} is on {} ({}), but the box cannot power-cycle it: {}",
                                                        mac.sep_name(), port_name, learnt, r.error())}));
    report(mac, Step::Power, fmt::format("power-cycle by the administrator: {} off", port_name));
  }

 private:
  Result<const config::Phone*, ControlError> phone_arg(const json& args) const {
    if (!args.contains("phone") || !args["phone"].is_string())
      return unexpected(ControlError{"bad-request", "needs a phone (MAC or SEP name)"});
    const auto text = args["phone"].get<std::string>();
    const auto mac = MacAddress::parse(text);
    if (!mac) return unexpected(ControlError{"bad-request", "'" + text + "' is not a MAC address or SEP name"});
    const auto* p = config_->find_phone(*mac);
    if (!p) return unexpected(ControlError{"not-found", mac->sep_name() + " is not in the site file's phones"});
    return p;
  }

  void report(const MacAddress& mac, Step step, std::string detail) {
    PhoneEvent e;
    e.mac = mac;
    e.step = step;
    e.outcome = Outcome::Info;
    e.detail = std::move(detail);
    // The box's own action on a listed phone: a record in its history that changes no step.
    e.verified = true;
    e.history_only = true;
    ctx_.events.report(std::move(e));
  }

  Context& ctx_;
  config::SiteConfigPtr config_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

void add_phonectl_component(Wiring& w) {
  auto component = std::make_unique<PhoneControlComponent>(w.ctx);
  PhoneControlComponent* raw = component.get();
  w.ctx.control.add_async(command::kPhoneRestart, ControlRole::Admin, [raw](const json& args, ControlDone done) {
    raw->command(args, "restart", std::move(done));
  });
  w.ctx.control.add_async(command::kPhoneReset, ControlRole::Admin,
                          [raw](const json& args, ControlDone done) { raw->command(args, "reset", std::move(done)); });
  w.ctx.control.add_async(command::kPhonePowerCycle, ControlRole::Admin,
                          [raw](const json& args, ControlDone done) { raw->power_cycle(args, std::move(done)); });
  w.components.push_back(std::move(component));
}

}  // namespace ve::daemon
