#pragma once
// PoE: one driver interface (PoeDriver) over the power sourcing hardware, two drivers (a simulator
// that behaves like the kernel's PSE interface, and the kernel's PSE framework over ethtool
// generic netlink), and the Manager that owns the budget, priorities and shedding.
//
// Threading: everything here is single-threaded; the daemon calls it from its io_context.
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

struct PortStatus {
  std::string port;
  AdminState admin = AdminState::Unknown;
  Detection detection = Detection::Unknown;
  int power_class = -1;                       // -1: not classified / not reported
  std::uint32_t actual_mw = 0;                // measured draw
  std::optional<std::uint32_t> limit_mw;      // available power limit, if the PSE has one
  std::optional<std::uint32_t> limit_max_mw;  // upper end of the settable limit ranges
  std::string fault;                          // short reason when detection is a fault
  std::optional<std::uint32_t> priority;      // kernel 6.17+ PSE priority, when offered
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
  // A readable descriptor when the driver has asynchronous notifications (-1 = none; poll instead),
  // and the ports they were about once it is readable.
  virtual int notification_fd() const { return -1; }
  virtual std::vector<std::string> read_notifications() { return {}; }
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
  int notification_fd() const override;
  std::vector<std::string> read_notifications() override;

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
};

struct Totals {
  std::uint32_t budget_mw = 0;
  std::uint32_t allocated_mw = 0;
  std::uint32_t used_mw = 0;
};

struct ManagerOptions {
  std::filesystem::path state_file;  // empty = no persistence
  // A restored (re-enabled) port keeps its reservation this long while it searches.
  std::chrono::milliseconds restore_hold{5000};
};

class Manager {
 public:
  Manager(PoeDriver& driver, EventSink& events, config::SiteConfigPtr config, Clock clock, ManagerOptions options = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Adopts what the hardware reports (never switching off a powered port that the site file
  // still wants powered), then brings every port to its mode.
  void start();
  // Reads the driver for every port and reacts: new devices, unplugs, faults, shedding, restoring.
  void poll();
  void poll_port(const std::string& port);
  // CDP 0x19 / LLDP-MED: the device on `port` asks for `requested_mw`; returns granted mW, capped
  // by the port's max_watts and by what the budget has free. 0 when the port is not powered.
  std::uint32_t negotiate(const std::string& port, std::uint32_t requested_mw);
  // What is allocated on `port` now (0 when not powered).
  std::uint32_t available(const std::string& port) const;
  // Run-time mode (voiceedgectl power inline); persisted; cleared for a port when a reload
  // changes that port's poe settings.
  Result<void, std::string> set_mode(const std::string& port, config::PoeMode mode);
  // A neighbour protocol learned which device is on `port`.
  void set_port_device(const std::string& port, const MacAddress& mac);
  void clear_port_device(const std::string& port);
  void reconfigure(config::SiteConfigPtr config);

  std::vector<PortView> ports() const;
  std::optional<PortView> port(const std::string& name) const;
  Totals totals() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ve::poe
