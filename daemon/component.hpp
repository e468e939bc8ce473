#pragma once
// How voiceedged wires its parts. Each component lives in its own library folder; the glue that
// builds it from the site file, connects it to the others and registers its control commands is
// one file here: daemon/<name>_component.cpp, listed in daemon_registry.hpp (add_all_components).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "ve/accept_guard.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace ve::daemon {

// Control API errors: a closed set of codes, a human message.
struct ControlError {
  std::string code;  // bad-request | not-found | unknown-command | failed | too-large | unavailable
  std::string message;
};
using ControlResult = Result<nlohmann::json, ControlError>;
using ControlHandler = std::function<ControlResult(const nlohmann::json& args)>;
// A command whose answer comes later (it waits for a phone to answer): the handler returns at
// once and calls `done` exactly once, from the event loop, when the answer is known. The event
// loop never blocks on it.
using ControlDone = std::function<void(ControlResult)>;
using AsyncControlHandler = std::function<void(const nlohmann::json& args, ControlDone done)>;

// Who may run a command. The control socket checks the caller (SO_PEERCRED): Read is for root,
// the daemon's user and members of control.read_group or control.admin_group; Admin (anything
// that changes power, config or state) for root, the daemon's user and control.admin_group.
enum class ControlRole { Read, Admin };

// A streaming reply (capture, report). When the handler accepts, the client reads
// {"ok":true,"stream":true,"data":<handler's result>}, then {"chunk":"<base64>"} lines, then
// {"end":<summary>}. Each client has a bounded queue: write() returns false when it is full (the
// caller counts the drop), so a slow reader never blocks the daemon. The client stops the stream
// by sending any line or hanging up.
class ControlStream {
 public:
  static constexpr std::size_t kMaxQueuedBytes = 4 * 1024 * 1024;
  virtual ~ControlStream() = default;
  virtual bool write(std::string_view bytes) = 0;
  // Sends {"end":summary} after what is queued, then closes. Later calls do nothing.
  virtual void finish(nlohmann::json summary) = 0;
  virtual bool closed() const = 0;
  // Runs once when the client stops or goes away (not after finish()).
  virtual void on_stop(std::function<void()> stop) = 0;
};
using StreamHandler =
    std::function<ControlResult(const nlohmann::json& args, const std::shared_ptr<ControlStream>& stream)>;

class ControlRegistry {
 public:
  virtual ~ControlRegistry() = default;
  // `cmd` is dotted: "show.cdp.neighbors", "power.inline". Registered with the role its name
  // implies (role_implied_by): read-only only for "version" and "show.*", admin for the rest.
  virtual void add(const std::string& cmd, ControlHandler handler) = 0;
  // The same with the role said explicitly. Registries that know no roles (tests) ignore it.
  virtual void add(const std::string& cmd, ControlRole role, ControlHandler handler) {
    (void)role;
    add(cmd, std::move(handler));
  }
  // A command that answers later (AsyncControlHandler). Registries without it (tests) ignore it.
  virtual void add_async(const std::string& cmd, ControlRole role, AsyncControlHandler handler) {
    (void)cmd;
    (void)role;
    (void)handler;
  }
  // Fail-safe default: a command is read-only only if its name says so.
  static ControlRole role_implied_by(std::string_view cmd) {
    return cmd == "version" || cmd.starts_with("show.") ? ControlRole::Read : ControlRole::Admin;
  }
  // A command whose reply is a stream (see ControlStream). Always an admin command.
  virtual void add_stream(const std::string& cmd, StreamHandler handler) {
    (void)cmd;
    (void)handler;
  }
  // Runs another component's command in-process (diagnostics collect every view of a phone).
  virtual ControlResult call(const std::string& cmd, const nlohmann::json& args) const {
    (void)args;
    return unexpected(ControlError{"unavailable", "no command " + cmd + " here"});
  }
};

// What one component offers the others. Set by the component that owns it during wiring; callers
// must tolerate an empty function (that component is absent or disabled).
struct Services {
  // PoE: the phone on `port` asks for `requested_mw` (CDP 0x19 / LLDP-MED); returns granted mW.
  std::function<std::uint32_t(const std::string& port, std::uint32_t requested_mw)> negotiate_power;
  // PoE: what is allocated on a port now, in mW (for CDP Power Available without a request).
  std::function<std::uint32_t(const std::string& port)> available_power;
  // DHCP: the MAC that holds lease `ip` (dotted quad), if known.
  std::function<std::optional<MacAddress>(const std::string& ip)> mac_for_ip;
  // Link monitor → others: a port went up or down. Components append listeners during wiring.
  std::vector<std::function<void(const std::string& port, bool up)>> link_listeners;
  // Net: the interface that carries a subnet's router address (where Kea, TFTP, HTTP, SIP should
  // listen): "ve-br0.100" when the VLAN data plane is programmed, else the subnet's `interface`.
  std::function<std::string(const config::Subnet& subnet)> service_interface;
  void link_changed(const std::string& port, bool up) const {
    for (const auto& l : link_listeners) l(port, up);
  }
  // Neighbour protocols (CDP/LLDP) → others: the device with `mac` is on `port` (PoE names the
  // phone in its power events with it). Call on every neighbour appearance; listeners dedupe.
  std::vector<std::function<void(const std::string& port, const MacAddress& mac)>> device_listeners;
  void device_seen(const std::string& port, const MacAddress& mac) const {
    for (const auto& l : device_listeners) l(port, mac);
  }
  // Components → /metrics: each returns Prometheus text (HELP, TYPE and samples) of its own.
  std::vector<std::function<std::string()>> metrics;
  // Every phone event, after the journey tracker has it (diagnostics end a boot recording on
  // "registered" or a failure). Components append listeners during wiring.
  std::vector<std::function<void(const PhoneEvent& event)>> event_listeners;
  // Files the status page serves under /phone/<MAC>/<file> and links on the phone's page (the
  // daemon hands them to StatusHttpServer::add_download). `available` false (or `serve` nullopt):
  // not offered / 404.
  struct HttpFile {
    std::string content_type;
    std::string body;
  };
  struct PhoneDownload {
    std::string file;   // "report.tar.gz"
    std::string label;  // "download report"
    std::function<bool(const MacAddress&)> available;
    std::function<std::optional<HttpFile>(const MacAddress&)> serve;
  };
  std::vector<PhoneDownload> phone_downloads;
  // Phone control (daemon/phonectl_component.cpp). SIP: a service-control NOTIFY to the
  // registered phone `mac` ("restart" or "reset"); returns what was sent (or why nothing was:
  // not registered) and calls `answered` once with the phone's final response or the timeout.
  struct ServiceControlCall {
    MacAddress mac;
    std::string action;          // restart | reset
    std::string config_version;  // ConfigVersionStamp
    std::string line_user;       // the registration to use (the phone's first line)
  };
  std::function<Result<nlohmann::json, std::string>(const ServiceControlCall& call,
                                                    std::function<void(const nlohmann::json& outcome)> answered)>
      service_control;
  // PoE: turns `port` off, then on again after `off_for`; `done` once power is enabled again (or
  // with the error that stopped it). An error now when the box does not control power there.
  std::function<Result<void, std::string>(const std::string& port, std::chrono::milliseconds off_for,
                                          std::function<void(Result<void, std::string>)> done)>
      power_cycle;
  // PoE: the port whose powered device is `mac` (learnt over CDP/LLDP), if any.
  std::function<std::optional<std::string>(const MacAddress& mac)> poe_port_of;
};

struct Context {
  boost::asio::io_context& io;
  EventSink& events;
  ControlRegistry& control;
  Services& services;
  config::SiteConfigPtr config;  // the config at start
  // File descriptors: size every connection cap with fd_budget.cap(wanted, fd_share::...).
  FdBudget fd_budget{};
};

class Component {
 public:
  virtual ~Component() = default;
  virtual std::string_view name() const = 0;
  virtual void start() = 0;
  // Reload, step 1: acquire what `config` needs and can fail to get (bind new listen sockets)
  // without disturbing the running service. If any component fails, the reload is rejected with
  // its error, every component that prepared is told abandon_reconfigure(), and none is
  // reconfigured. Default: nothing can fail.
  virtual Result<void, std::string> prepare_reconfigure(const config::SiteConfigPtr& config) {
    (void)config;
    return {};
  }
  // Reload rejected after prepare_reconfigure() succeeded here: release what it acquired.
  virtual void abandon_reconfigure() {}
  // Reload, step 2: a new, validated site file. Must not disturb what did not change (no
  // power-cycles, no dropped registrations). Uses what prepare_reconfigure() acquired.
  virtual void reconfigure(const config::SiteConfigPtr& config) = 0;
  // Orderly stop (SIGTERM). Must not cut phone power.
  virtual void stop() = 0;
};

}  // namespace ve::daemon
