#pragma once
// PoE: one driver interface (PoeDriver) over the power sourcing hardware, two drivers (a simulator
// that behaves like the kernel's PSE interface, and the kernel's PSE framework over ethtool
// generic netlink), and the Manager that owns the budget, priorities and shedding.
//
// Threading: the Manager is called from one thread (the daemon's io_context) and keeps all its
// state there. A driver is used by one thread at a time: the caller's (inline, the default), or the
// Manager's own PSE worker thread when ManagerOptions::post is set, which is how the daemon runs it
// so that no PSE request (a netlink round trip of up to 1 s) blocks the loop. Results come back to
// the loop through `post`. Once the Manager exists, only it may call the driver (read_notifications
// included); SimDriver's test controls are for when no request is in flight.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "ve/mac.hpp"
#include "ve/phone_event.hpp"
#include "ve/result.hpp"

namespace ve::poe {

// ---------------------------------------------------------------------------------------------
// Driver vocabulary (mirrors the kernel's C33 PSE status so both drivers report the same way)

enum class AdminState { Unknown, Disabled, Enabled };

// IEEE 802.3 clause 33 power-detection status, plus NoPse: the interface has no PSE at all
// (the kernel answers EOPNOTSUPP).
enum class Detection { Unknown, Disabled, Searching, Delivering, Test, Fault, OtherFault, NoPse };

std::string_view to_string(AdminState s);
std::string_view to_string(Detection d);

struct LimitRange {
  std::uint32_t min_mw = 0;
  std::uint32_t max_mw = 0;
  friend bool operator==(const LimitRange&, const LimitRange&) = default;
};

struct PortStatus {
  std::string port;
  AdminState admin = AdminState::Unknown;
  Detection detection = Detection::Unknown;
  int power_class = -1;                       // -1: not classified / not reported
  std::uint32_t actual_mw = 0;                // measured draw
  std::optional<std::uint32_t> limit_mw;      // available power limit, if the PSE has one
  std::optional<std::uint32_t> limit_max_mw;  // upper end of the settable limit ranges
  std::string fault;                          // short reason when detection is a fault
  std::vector<LimitRange> limit_ranges;       // settable power limit ranges, as reported
  std::optional<std::uint32_t> priority;      // kernel 6.17+ PSE priority (0 = highest), when offered
  std::optional<std::uint32_t> priority_max;  // > 0: the PSE sheds by priority within its power domain
  std::optional<std::uint32_t> power_domain;  // kernel 6.17+ PSE power domain index
  std::uint32_t ext_state = 0;                // kernel C33 extended state (0 = none reported)
};

// What a PSE reports asynchronously about a port (kernel PSE_NTF, or the sim's equivalent).
struct PseEvents {
  bool over_current = false;
  bool over_temperature = false;
  bool detection = false;
  bool classification = false;
  bool disconnection = false;
  bool over_budget = false;          // the PSE switched the port off to keep its domain in budget
  bool power_control_error = false;  // the PSE failed to switch a port as its policy wanted
  std::uint64_t unknown = 0;         // bits this build does not know
  bool any() const {
    return over_current || over_temperature || detection || classification || disconnection || over_budget ||
           power_control_error || unknown != 0;
  }
  friend bool operator==(const PseEvents&, const PseEvents&) = default;
};

struct PortEvent {
  std::string port;
  PseEvents events;
};

enum class DriverErrorCode { NoSuchPort, NoPse, NotSupported, PermissionDenied, Busy, Io, Invalid };
std::string_view to_string(DriverErrorCode c);

struct DriverError {
  DriverErrorCode code = DriverErrorCode::Io;
  std::string message;  // from the kernel's extended ack where there is one
  int os_errno = 0;
};

template <typename T>
using DriverResult = Result<T, DriverError>;

class PoeDriver {
 public:
  virtual ~PoeDriver() = default;
  virtual std::string_view name() const = 0;
  virtual std::vector<std::string> ports() const = 0;
  // A port without a PSE is not an error of the call: it is a status with Detection::NoPse.
  virtual DriverResult<PortStatus> status(const std::string& port) = 0;
  virtual DriverResult<void> set_admin(const std::string& port, bool enabled) = 0;
  virtual DriverResult<void> set_power_limit(const std::string& port, std::uint32_t mw) = 0;
  // The PSE's own priority of a port (0 = highest, up to the reported priority_max).
  virtual DriverResult<void> set_priority(const std::string& port, std::uint32_t prio) {
    (void)port;
    (void)prio;
    return unexpected(DriverError{DriverErrorCode::NotSupported, "PSE has no port priorities", EOPNOTSUPP});
  }
  // A readable descriptor when the driver has asynchronous notifications (-1 = none; poll instead),
  // and what they said once it is readable.
  virtual int notification_fd() const { return -1; }
  virtual std::vector<PortEvent> read_notifications() { return {}; }
};

using Clock = std::function<std::chrono::steady_clock::time_point()>;
Clock steady_clock_now();

// ---------------------------------------------------------------------------------------------
// Simulated PSE. What is plugged into each port comes from the site file (poe.sim); tests plug,
// unplug and inject faults. Enabling a port with a device starts detection, then classification,
// then delivery, each taking `phase` of (injected) time, like a real controller. Its "hardware"
// state can live in a file so that it outlives the daemon process, as a real PSE does.

struct SimDevice {
  int power_class = 2;
  std::uint32_t draw_mw = 6300;
};

struct SimOptions {
  std::chrono::milliseconds phase{100};                // duration of detection and of classification
  std::optional<std::filesystem::path> hardware_file;  // persisted "hardware" state
  bool admin_enabled_at_power_up = false;              // the state of a never-configured port
  // Kernel 6.17-style budget in the PSE itself (pd692x0/tps23881/si3474 behind the PSE core):
  // prio_max > 0 gives every port a priority 0..prio_max (0 = highest) and makes the sim keep each
  // power domain within its budget by switching off lower-priority ports (over-budget
  // notification), and power them again, most important first, when power frees up.
  // 0 = no priority support: the PSE never sheds, the manager budgets (the older drivers).
  std::uint32_t prio_max = 0;
  std::map<std::string, std::uint32_t> domains;             // port -> power domain (default 0)
  std::map<std::uint32_t, std::uint32_t> domain_budget_mw;  // domain -> budget; absent = unlimited
};

class SimDriver final : public PoeDriver {
 public:
  SimDriver(std::vector<std::string> ports, std::map<std::string, SimDevice> plugged, Clock clock,
            SimOptions options = {});
  ~SimDriver() override;
  SimDriver(const SimDriver&) = delete;
  SimDriver& operator=(const SimDriver&) = delete;

  std::string_view name() const override { return "sim"; }
  std::vector<std::string> ports() const override;
  DriverResult<PortStatus> status(const std::string& port) override;
  DriverResult<void> set_admin(const std::string& port, bool enabled) override;
  DriverResult<void> set_power_limit(const std::string& port, std::uint32_t mw) override;
  DriverResult<void> set_priority(const std::string& port, std::uint32_t prio) override;
  // An eventfd that is readable while notifications (PSE_NTF equivalents) are queued.
  int notification_fd() const override;
  std::vector<PortEvent> read_notifications() override;

  // Test and lab controls.
  void plug(const std::string& port, SimDevice device);
  void unplug(const std::string& port);
  void set_draw(const std::string& port, std::uint32_t mw);  // the device changes its draw
  void inject_fault(const std::string& port, std::string reason = "short circuit");
  void inject_overcurrent(const std::string& port);
  void clear_fault(const std::string& port);
  void set_no_pse(const std::string& port, bool no_pse);       // make a port answer like EOPNOTSUPP
  void fail_next(const std::string& port, DriverError error);  // the next call on it fails
  // Times power was removed from a powered device by admin action or fault (not by unplugging).
  int power_cycles(const std::string& port) const;
  int power_ons(const std::string& port) const;

  // Builds the driver from the site file (ports, poe.sim).
  static std::unique_ptr<SimDriver> from_config(const config::SiteConfig& cfg, Clock clock, SimOptions options = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Kernel PSE framework through ethtool generic netlink (libnl-genl).

class LinuxPseDriver final : public PoeDriver {
 public:
  // Opens the netlink sockets and resolves the "ethtool" family.
  static DriverResult<std::unique_ptr<LinuxPseDriver>> open(std::vector<std::string> ports);
  ~LinuxPseDriver() override;
  LinuxPseDriver(const LinuxPseDriver&) = delete;
  LinuxPseDriver& operator=(const LinuxPseDriver&) = delete;

  std::string_view name() const override { return "linux-pse"; }
  std::vector<std::string> ports() const override;
  DriverResult<PortStatus> status(const std::string& port) override;
  DriverResult<void> set_admin(const std::string& port, bool enabled) override;
  DriverResult<void> set_power_limit(const std::string& port, std::uint32_t mw) override;
  DriverResult<void> set_priority(const std::string& port, std::uint32_t prio) override;
  int notification_fd() const override;
  std::vector<PortEvent> read_notifications() override;

  int family_id() const;

 private:
  struct Impl;
  explicit LinuxPseDriver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The driver the site file asks for (poe.driver: sim | linux-pse).
DriverResult<std::unique_ptr<PoeDriver>> make_driver(const config::SiteConfig& cfg, Clock clock);

// ---------------------------------------------------------------------------------------------
// Manager

// Power a PSE sources per class (IEEE 802.3af/at/bt, at the PSE), in mW. Class 0 = 15.4 W.
std::uint32_t class_power_mw(int power_class);

enum class Oper {
  Off,        // admin off by mode
  Searching,  // enabled, no powered device yet
  On,         // delivering, allocation held
  Denied,     // a device was detected but the budget had no room for it
  Shed,       // powered once, switched off to keep higher-priority ports within the budget
  Fault,      // the PSE reports a fault (short, over-current)
  NoPse,      // no PSE on this interface
  Error,      // the driver failed
};
std::string_view to_string(Oper o);

struct PortView {
  std::string name;
  int number = 0;  // 1-based position in the site file's ports
  config::PoeMode mode = config::PoeMode::Auto;
  bool mode_overridden = false;  // set at run time by `power inline`
  config::PoePriority priority = config::PoePriority::Low;
  Oper oper = Oper::Off;
  int power_class = -1;
  std::uint32_t allocated_mw = 0;
  std::uint32_t measured_mw = 0;
  std::uint32_t requested_mw = 0;  // last CDP / LLDP-MED request, 0 = none
  std::uint32_t max_mw = 0;
  std::optional<MacAddress> device;
  std::string detail;  // why denied / shed / fault
  // Kernel 6.17+ PSE model, where the PSE reports it.
  std::optional<std::uint32_t> power_domain;
  std::optional<std::uint32_t> pse_priority;      // 0 = highest
  std::optional<std::uint32_t> pse_priority_max;  // > 0: the PSE enforces its domain's budget
  bool budget_by_pse = false;                     // the manager only observes this port
  std::optional<std::uint32_t> limit_mw;          // power limit last set on the PSE
  std::uint64_t refused_requests = 0;             // CDP/LLDP requests not applied (below the draw)
};

// The PSE priority (0 = highest .. prio_max) for a site-file priority: critical 0, high 1, low
// prio_max (high and low meet when prio_max is 1).
std::uint32_t pse_priority_for(config::PoePriority priority, std::uint32_t prio_max);
// The power limit to write for `wanted_mw` within the PSE's settable ranges: `wanted_mw` when a
// range holds it, else the next range's minimum above it (never less than wanted), else the
// highest maximum (the PSE can do no more). No ranges: `wanted_mw`.
std::uint32_t fit_power_limit(std::uint32_t wanted_mw, const std::vector<LimitRange>& ranges);

struct Totals {
  std::uint32_t budget_mw = 0;
  std::uint32_t allocated_mw = 0;
  std::uint32_t used_mw = 0;
};

struct ManagerOptions {
  std::filesystem::path state_file;  // empty = no persistence
  // A restored (re-enabled) port keeps its reservation this long while it searches.
  std::chrono::milliseconds restore_hold{5000};
  // Where driver calls run. Empty: at once, on the caller's thread (the simulated PSE of the unit
  // tests, which never blocks). Set: on the manager's PSE worker thread, one at a time in the order
  // they were decided; each result is handed to `post`, which must run it on the caller's thread
  // (the daemon: asio::post to its io_context). Decisions stay on the caller's thread and take a
  // write as done when made; a write the PSE refuses marks the port Error when its result is back.
  std::function<void(std::function<void()>)> post;
};

class Manager {
 public:
  Manager(PoeDriver& driver, EventSink& events, config::SiteConfigPtr config, Clock clock, ManagerOptions options = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Adopts what the hardware reports (never switching off a powered port that the site file
  // still wants powered), then brings every port to its mode. Calls the driver synchronously even
  // with a worker: call it first, before the loop serves anyone.
  void start();
  // Reads the driver for every port and reacts: new devices, unplugs, faults, shedding, restoring.
  // With a worker the reads run there and the reaction follows when they are back.
  void poll();
  // The same for one port; `applied` once what it decided has reached the PSE.
  void poll_port(const std::string& port, std::function<void()> applied = {});
  // CDP 0x19 / LLDP-MED: the device on `port` asks for `requested_mw`; returns granted mW, capped
  // by the port's max_watts and by what the budget has free. 0 when the port is not powered.
  // Never waits for the PSE with a worker: the grant is budget arithmetic on the manager's state,
  // the new power limit is written behind it.
  std::uint32_t negotiate(const std::string& port, std::uint32_t requested_mw);
  // What is allocated on `port` now (0 when not powered).
  std::uint32_t available(const std::string& port) const;
  // The PSE told us about `port` (kernel PSE_NTF / sim): reads the port at once and puts what
  // happened into the phone's timeline.
  void on_pse_events(const std::string& port, const PseEvents& events);
  // The driver's notification_fd() is readable: reads the notifications (on the worker, if any),
  // handles each as on_pse_events, then calls `then` (on the caller's thread).
  void read_notifications(std::function<void()> then);
  // Run-time mode (voiceedgectl power inline); persisted; cleared for a port when a reload
  // changes that port's poe settings. `applied` once the change has reached the PSE.
  Result<void, std::string> set_mode(const std::string& port, config::PoeMode mode, std::function<void()> applied = {});
  // Power-cycle one port (voiceedgectl phone power-cycle): begin takes power away without touching
  // the port's mode (nothing is persisted: a daemon restart in between powers the port as its mode
  // says), end gives it back. Refused for a port without a PSE or whose mode is off. `applied` once
  // power is off (begin) or enabled again (end) on the PSE.
  Result<void, std::string> begin_power_cycle(const std::string& port, std::function<void()> applied = {});
  void end_power_cycle(const std::string& port, std::function<void()> applied = {});
  // A neighbour protocol learned which device is on `port`.
  void set_port_device(const std::string& port, const MacAddress& mac);
  void clear_port_device(const std::string& port);
  void reconfigure(config::SiteConfigPtr config);

  std::vector<PortView> ports() const;
  std::optional<PortView> port(const std::string& name) const;
  Totals totals() const;
  // PSE requests on the worker whose result has not been applied yet (always 0 inline).
  std::size_t pending_requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ve::poe
