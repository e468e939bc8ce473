#pragma once
// How voiceedged wires its parts. Each component lives in its own library folder; the glue that
// builds it from the site file, connects it to the others and registers its control commands is
// one file here: daemon/<name>_component.cpp, declared in components.hpp.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
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

class ControlRegistry {
 public:
  virtual ~ControlRegistry() = default;
  // `cmd` is dotted: "show.cdp.neighbors", "power.inline".
  virtual void add(const std::string& cmd, ControlHandler handler) = 0;
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
  // Components → /metrics: each returns Prometheus text lines (# HELP, # TYPE, samples).
  std::vector<std::function<std::string()>> metrics;
};

struct Context {
  boost::asio::io_context& io;
  EventSink& events;
  ControlRegistry& control;
  Services& services;
  config::SiteConfigPtr config;  // the config at start
};

class Component {
 public:
  virtual ~Component() = default;
  virtual std::string_view name() const = 0;
  virtual void start() = 0;
  // A new, validated site file. Must not disturb what did not change (no power-cycles, no
  // dropped registrations).
  virtual void reconfigure(const config::SiteConfigPtr& config) = 0;
  // Orderly stop (SIGTERM). Must not cut phone power.
  virtual void stop() = 0;
};

}  // namespace ve::daemon
