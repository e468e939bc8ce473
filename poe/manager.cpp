// The PoE manager: budget, per-port modes and priorities, class allocation, negotiation with the
// device, shedding and restoring, and the persisted state that lets a restarted daemon adopt the
// hardware without power-cycling anyone.
//
// Driver calls go through Impl::call(): at once on the caller's thread (inline), or on the PSE
// worker thread with the result applied on the loop (ManagerOptions::post). Decisions are made on
// the loop from the manager's own state; only the I/O moves.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "poe/poe.hpp"
#include "poe/pse_worker.hpp"
#include "ve/log.hpp"
#include "ve/state_file.hpp"

namespace ve::poe {

namespace {

using config::PoeMode;
using config::PoePriority;

// ETHTOOL_C33_PSE_EXT_STATE_POWER_NOT_AVAILABLE (pse_codec.hpp has the kernel's list).
constexpr std::uint32_t pse_ext_power_not_available = 8;

std::uint32_t watts_to_mw(double w) { return w <= 0 ? 0 : static_cast<std::uint32_t>(std::lround(w * 1000.0)); }
std::string watts(std::uint32_t mw) { return fmt::format("{:.1f} W", mw / 1000.0); }

// Lower rank = more important.
int rank(PoePriority p) {
  switch (p) {
    case PoePriority::Critical: return 0;
    case PoePriority::High: return 1;
    case PoePriority::Low: return 2;
  }
  return 2;
}

std::optional<PoeMode> mode_from(std::string_view s) {
  if (s == "auto") return PoeMode::Auto;
  if (s == "off") return PoeMode::Off;
  if (s == "static") return PoeMode::Static;
  return std::nullopt;
}

std::optional<Oper> oper_from(std::string_view s) {
  for (Oper o :
       {Oper::Off, Oper::Searching, Oper::On, Oper::Denied, Oper::Shed, Oper::Fault, Oper::NoPse, Oper::Error}) {
    if (to_string(o) == s) return o;
  }
  return std::nullopt;
}

}  // namespace

struct Manager::Impl {
  struct Port {
    std::string name;
    int number = 0;
    config::PortPoe cfg;
    std::optional<PoeMode> override_mode;
    Oper oper = Oper::Off;
    int power_class = -1;
    std::uint32_t allocated_mw = 0;
    std::uint32_t measured_mw = 0;
    std::uint32_t requested_mw = 0;
    std::uint32_t granted_mw = 0;
    std::uint32_t held_mw = 0;  // shed/denied: what it needs to come back
    std::optional<std::chrono::steady_clock::time_point> restore_until;
    std::optional<MacAddress> learned_mac;
    bool reported_power_for_mac = false;  // the power-on event named the device's MAC
    std::string detail;
    std::optional<Oper> oper_before_error;
    std::optional<std::uint32_t> limit_set_mw;      // last limit written to the PSE
    std::optional<std::uint32_t> limit_pending_mw;  // a limit on its way to the PSE (worker)
    bool limit_unsupported = false;
    // What the PSE reports of its own model (kernel 6.17+ / sim with prio_max).
    std::optional<std::uint32_t> domain;
    std::optional<std::uint32_t> pse_prio;
    std::optional<std::uint32_t> pse_prio_max;
    std::vector<LimitRange> limit_ranges;
    bool prio_unsupported = false;
    std::optional<std::uint32_t> prio_pending;  // a PSE priority on its way to the PSE (worker)
    bool over_budget_event = false;             // a PSE over-budget notification not yet evaluated
    std::uint64_t refused_requests = 0;
    bool cycling = false;  // off for a power-cycle; the mode itself is unchanged

    // The PSE keeps this port's power domain within budget; we only observe it.
    bool pse_budgets() const { return pse_prio_max.has_value() && *pse_prio_max > 0; }

    PoeMode mode() const { return cycling ? PoeMode::Off : override_mode.value_or(cfg.mode); }
    std::uint32_t max_mw() const { return watts_to_mw(cfg.max_watts); }
  };

  PoeDriver& driver;
  EventSink& events;
  config::SiteConfigPtr config;
  Clock clock;
  ManagerOptions options;
  std::vector<Port> ports;
  std::uint32_t budget_mw = 0;
  bool dirty = false;
  std::shared_ptr<spdlog::logger> log = ve::logger("poe");

  // A status read of one port and what its callers want done with the result. A request for a
  // port whose read has not started yet joins it: the result is fresh for both.
  struct Waiter {
    std::function<void(Port&)> evaluated;  // right after the status is evaluated (event reports)
    std::function<void()> applied;         // once the writes the evaluation decided are done
  };
  struct PortRead {
    std::atomic<bool> started{false};  // set by the worker thread, read on the loop
    std::vector<Waiter> waiters;       // loop only
  };
  std::map<std::string, std::shared_ptr<PortRead>> reads;  // the latest read of each port in flight
  // A poll round in flight: one read per port, evaluated as each comes back, settled after the last.
  struct PollRound {
    std::atomic<bool> started{false};
    std::size_t left = 0;
  };
  std::shared_ptr<PollRound> polling;
  bool poll_again = false;  // a poll was asked for after the round in flight had started
  bool sync_io = false;     // start(): driver calls at once even with a worker
  std::size_t pending = 0;  // calls on the worker whose result has not been applied yet
  // Completions posted by the worker run only while this lives (they may outlive the manager in
  // the loop's queue).
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  std::unique_ptr<PseWorker> worker;  // last: joined before anything a running job uses goes away

  // Waiting requests at most. Reads coalesce (one per port, one poll round), so only a flood of
  // writes can fill it; a request refused then fails like a busy PSE and the next poll retries.
  static constexpr std::size_t kQueueCapacity = 1024;

  Impl(PoeDriver& d, EventSink& e, config::SiteConfigPtr c, Clock k, ManagerOptions o)
      : driver(d), events(e), config(std::move(c)), clock(std::move(k)), options(std::move(o)) {
    apply_config(false);
    if (options.post) worker = std::make_unique<PseWorker>(kQueueCapacity);
  }

  // ------------------------------------------------------------------------------------------
  // Driver calls. Inline (no options.post, or start()): `io` and `done` run now, on this thread.
  // Worker: `io` runs on the PSE thread in the order of the calls, and `done` gets its result
  // later on the loop through options.post (not at all once the manager is gone).
  template <typename T>
  void call(std::function<DriverResult<T>(PoeDriver&)> io, std::function<void(Impl&, DriverResult<T>)> done) {
    if (!worker || sync_io) {
      done(*this, io(driver));
      return;
    }
    std::function<void()> job = [&d = driver, post = options.post, alive = std::weak_ptr<int>(alive), self = this,
                                 io = std::move(io), done] {
      DriverResult<T> r = io(d);
      post([alive, self, done, r = std::move(r)]() mutable {
        if (alive.expired()) return;
        --self->pending;
        done(*self, std::move(r));
      });
    };
    ++pending;
    if (worker->push(job)) return;
    log->error("PSE request queue full ({} waiting): request failed", kQueueCapacity);
    options.post([alive = std::weak_ptr<int>(alive), self = this, done] {
      if (alive.expired()) return;
      --self->pending;
      done(*self, unexpected(DriverError{DriverErrorCode::Busy, "PSE request queue full", EBUSY}));
    });
  }
  bool inline_io() const { return !worker || sync_io; }

  // `applied` once every driver call made so far is done (the queue is FIFO).
  void after_queued(std::function<void()> applied) {
    call<void>([](PoeDriver&) { return DriverResult<void>{}; },
               [applied = std::move(applied)](Impl&, DriverResult<void>) { applied(); });
  }

  Port* find(const std::string& name) {
    for (auto& p : ports) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }
  const Port* find(const std::string& name) const {
    for (const auto& p : ports) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }

  // Takes ports, budget and modes from `config`. On reload, a port whose poe settings changed
  // loses its run-time mode override: the edited site file is the newer wish.
  void apply_config(bool reload) {
    budget_mw = watts_to_mw(config->poe.budget_watts);
    std::vector<Port> next;
    int number = 0;
    for (const auto& cp : config->ports) {
      ++number;
      Port p;
      if (const Port* old = find(cp.name)) {
        p = *old;
        const bool changed = old->cfg.mode != cp.poe.mode || old->cfg.priority != cp.poe.priority ||
                             old->cfg.max_watts != cp.poe.max_watts;
        if (reload && changed && p.override_mode) {
          log->info("{}: site file changed its poe settings; dropping run-time mode {}", cp.name,
                    config::to_string(*p.override_mode));
          p.override_mode.reset();
          dirty = true;
        }
      }
      p.name = cp.name;
      p.number = number;
      p.cfg = cp.poe;
      next.push_back(std::move(p));
    }
    ports = std::move(next);
  }

  std::uint32_t total_allocated() const {
    std::uint32_t t = 0;
    for (const auto& p : ports) t += p.allocated_mw;
    return t;
  }

  // What the site budget covers: ports whose PSE does not budget by itself.
  std::uint32_t managed_allocated() const {
    std::uint32_t t = 0;
    for (const auto& p : ports) {
      if (!p.pse_budgets()) t += p.allocated_mw;
    }
    return t;
  }

  std::uint32_t free_mw() const {
    const auto used = managed_allocated();
    return used >= budget_mw ? 0 : budget_mw - used;
  }

  static std::string domain_text(const Port& p) { return p.domain ? std::to_string(*p.domain) : std::string("?"); }

  // Takes the PSE's own model from a status and keeps the PSE's priority on the site file's.
  void observe_pse(Port& p, const PortStatus& s) {
    if (s.power_domain != p.domain) {
      p.domain = s.power_domain;
      dirty = true;
    }
    p.limit_ranges = s.limit_ranges;
    const bool was = p.pse_budgets();
    p.pse_prio_max = s.priority_max;
    p.pse_prio = s.priority;
    if (p.pse_budgets() != was) {
      log->info("{}: {}", p.name,
                p.pse_budgets() ? fmt::format("the PSE budgets power domain {} by priority (0-{}); observing",
                                              domain_text(p), *p.pse_prio_max)
                                : std::string("the PSE no longer reports priorities; the manager budgets"));
    }
    if (!p.pse_budgets() || p.prio_unsupported) return;
    const std::uint32_t want = pse_priority_for(p.cfg.priority, *p.pse_prio_max);
    if (p.pse_prio == want || p.prio_pending == want) return;
    p.prio_pending = want;
    call<void>([name = p.name, want](PoeDriver& d) { return d.set_priority(name, want); },
               [name = p.name, want](Impl& m, DriverResult<void> r) {
                 if (Port* q = m.find(name)) m.priority_written(*q, want, r);
               });
  }

  void priority_written(Port& p, std::uint32_t want, const DriverResult<void>& r) {
    if (p.prio_pending == want) p.prio_pending.reset();
    if (!r) {
      log->warn("{}: cannot set PSE priority {}: {} ({})", p.name, want, r.error().message, to_string(r.error().code));
      if (r.error().code == DriverErrorCode::NotSupported || r.error().code == DriverErrorCode::Invalid) {
        p.prio_unsupported = true;
      }
      return;
    }
    log->info("{}: PSE priority {} (site priority {})", p.name, want, config::to_string(p.cfg.priority));
    p.pse_prio = want;
  }

  MacAddress mac_for(const Port& p) const {
    if (p.learned_mac) return *p.learned_mac;
    for (const auto& phone : config->phones) {
      if (phone.port == p.name) return phone.mac;
    }
    return MacAddress{};
  }

  void report(Port& p, Outcome outcome, std::string detail) {
    PhoneEvent ev;
    ev.mac = mac_for(p);
    ev.step = Step::Power;
    ev.outcome = outcome;
    ev.detail = std::move(detail);
    ev.port = p.name;
    ev.time = std::chrono::system_clock::now();
    // Device Status shows the power allocated to the phone now.
    ev.attributes.emplace_back(Fact::PowerW, fmt::format("{:.1f}", p.allocated_mw / 1000.0));
    if (outcome == Outcome::Ok && !ev.mac.is_zero()) p.reported_power_for_mac = true;
    events.report(std::move(ev));
  }

  void set_oper(Port& p, Oper o) {
    if (p.oper != o) {
      p.oper = o;
      dirty = true;
    }
  }

  // Switches the port's power. Inline: false when the PSE refused. Worker: true, the write is taken
  // as done when decided (so the budget counts it at once); a refusal marks the port when it comes
  // back, and the next poll reads what the PSE really did.
  bool admin(Port& p, bool enable) {
    bool ok = true;
    bool* refused_now = inline_io() ? &ok : nullptr;  // only an inline `done` runs before we return
    call<void>([name = p.name, enable](PoeDriver& d) { return d.set_admin(name, enable); },
               [name = p.name, enable, refused_now](Impl& m, DriverResult<void> r) {
                 if (r) return;
                 if (refused_now != nullptr) *refused_now = false;
                 if (Port* q = m.find(name)) m.admin_failed(*q, enable, r.error());
               });
    return ok;
  }

  void admin_failed(Port& p, bool enable, const DriverError& e) {
    log->warn("{}: cannot {} PoE: {} ({})", p.name, enable ? "enable" : "disable", e.message, to_string(e.code));
    p.detail = e.message;
    if (e.code == DriverErrorCode::NoPse) {
      set_oper(p, Oper::NoPse);
      p.allocated_mw = 0;
    } else {
      set_oper(p, Oper::Error);
    }
    if (!inline_io()) save_if_dirty();  // a late result: nobody else saves after it
  }

  // The PSE polices the port at its allocation, where the hardware offers a limit.
  void apply_limit(Port& p) {
    if (p.limit_unsupported || p.allocated_mw == 0) return;
    // Never below what the device draws now: the PSE would trip it (a power cut).
    const std::uint32_t limit = fit_power_limit(std::max(p.allocated_mw, p.measured_mw), p.limit_ranges);
    const auto current = p.limit_pending_mw ? p.limit_pending_mw : p.limit_set_mw;
    if (current && *current == limit) return;
    p.limit_pending_mw = limit;
    call<void>([name = p.name, limit](PoeDriver& d) { return d.set_power_limit(name, limit); },
               [name = p.name, limit](Impl& m, DriverResult<void> r) {
                 if (Port* q = m.find(name)) m.limit_written(*q, limit, r);
               });
  }

  void limit_written(Port& p, std::uint32_t limit, const DriverResult<void>& r) {
    // Superseded by a newer limit or a release while on its way: that one is what counts.
    const bool latest = p.limit_pending_mw == limit;
    if (latest) p.limit_pending_mw.reset();
    if (!r) {
      if (r.error().code == DriverErrorCode::NotSupported || r.error().code == DriverErrorCode::NoPse ||
          r.error().code == DriverErrorCode::Invalid) {
        log->debug("{}: PSE takes no power limit ({}): {}", p.name, to_string(r.error().code), r.error().message);
        p.limit_unsupported = true;
      } else {
        log->warn("{}: cannot set power limit {}: {}", p.name, watts(limit), r.error().message);
      }
      return;
    }
    if (latest) p.limit_set_mw = limit;
  }

  void release(Port& p) {
    p.allocated_mw = 0;
    p.requested_mw = 0;
    p.granted_mw = 0;
    p.power_class = -1;
    p.measured_mw = 0;
    p.restore_until.reset();
    p.limit_set_mw.reset();
    p.limit_pending_mw.reset();
    dirty = true;
  }

  // Shed order: lowest priority first, ties to the higher port number.
  static bool shed_before(const Port* a, const Port* b) {
    if (rank(a->cfg.priority) != rank(b->cfg.priority)) return rank(a->cfg.priority) > rank(b->cfg.priority);
    return a->number > b->number;
  }

  void shed(Port& p, const std::string& why) {
    const auto held = p.allocated_mw;
    const int cls = p.power_class;
    admin(p, false);
    release(p);
    p.held_mw = held;
    p.power_class = cls;
    p.detail = why;
    set_oper(p, Oper::Shed);
    log->warn("{}: power shed ({}), priority {}", p.name, why, config::to_string(p.cfg.priority));
    report(p, Outcome::Failed, "power shed: " + why);
  }

  // A device is delivering on `p` (auto mode) and needs `want`. Admits it, shedding less important
  // ports if that makes room, or denies it when it is itself the least important.
  void admit(Port& p, std::uint32_t want, int cls) {
    p.power_class = cls;
    const std::uint32_t others = managed_allocated() - p.allocated_mw;
    if (others + want > budget_mw) {
      const std::uint32_t need = others + want - budget_mw;
      std::vector<Port*> order;
      for (auto& q : ports) {
        if (&q == &p || (q.oper == Oper::On && q.mode() == PoeMode::Auto && !q.pse_budgets())) order.push_back(&q);
      }
      std::sort(order.begin(), order.end(), shed_before);
      std::vector<Port*> victims;
      std::uint32_t freed = 0;
      for (Port* q : order) {
        if (freed >= need) break;
        if (q == &p) break;  // p is the least important that is left: deny it
        victims.push_back(q);
        freed += q->allocated_mw;
      }
      if (freed < need) {
        const auto free_now = budget_mw > others ? budget_mw - others : 0;
        admin(p, false);
        release(p);
        p.power_class = cls;
        p.held_mw = want;
        p.detail = fmt::format("budget: needs {}, {} free", watts(want), watts(free_now));
        set_oper(p, Oper::Denied);
        log->warn("{}: power denied, {}", p.name, p.detail);
        report(p, Outcome::Failed, "power denied: " + p.detail);
        return;
      }
      for (Port* q : victims) {
        shed(*q, fmt::format("budget, for {} (priority {})", p.name, config::to_string(p.cfg.priority)));
      }
    }
    p.allocated_mw = want;
    p.held_mw = 0;
    p.restore_until.reset();
    p.detail.clear();
    set_oper(p, Oper::On);
    dirty = true;
    apply_limit(p);
    log->info("{}: powered, class {}, {} allocated", p.name, cls, watts(want));
    report(p, Outcome::Ok, fmt::format("powered: class {}, {} allocated", cls, watts(want)));
  }

  std::uint32_t class_allocation(const Port& p, int cls) const {
    std::uint32_t want = class_power_mw(cls);
    if (p.requested_mw != 0) want = std::max(want, std::min(p.granted_mw, p.requested_mw));
    return std::min(want, p.max_mw());
  }

  void on_gone(Port& p) {
    if (p.oper == Oper::On) {
      log->info("{}: device disconnected, {} released", p.name, watts(p.allocated_mw));
      report(p, Outcome::Info, "power removed: device disconnected");
      release(p);
      p.learned_mac.reset();
      p.reported_power_for_mac = false;
    }
  }

  void on_fault(Port& p, const PortStatus& s) {
    if (p.oper == Oper::Fault) return;
    const std::string reason = s.fault.empty() ? std::string("fault") : s.fault;
    const bool was_on = p.oper == Oper::On;
    release(p);
    p.detail = reason;
    set_oper(p, Oper::Fault);
    log->warn("{}: PSE fault: {}", p.name, reason);
    report(p, Outcome::Failed, std::string(was_on ? "power lost: " : "power fault: ") + reason);
  }

  void evaluate(Port& p, const DriverResult<PortStatus>& r) {
    if (!r) {
      // Allocation and state are kept: a failed read says nothing about the port.
      if (p.oper != Oper::Error) {
        log->warn("{}: PSE status failed: {}", p.name, r.error().message);
        p.oper_before_error = p.oper;
      }
      p.detail = r.error().message;
      set_oper(p, Oper::Error);
      return;
    }
    if (p.oper == Oper::Error) {
      set_oper(p, p.oper_before_error.value_or(Oper::Searching));
      p.oper_before_error.reset();
      p.detail.clear();
    }
    const PortStatus& s = r.value();
    if (s.detection == Detection::NoPse) {
      if (p.oper != Oper::NoPse) log->info("{}: no PSE attached", p.name);
      if (p.allocated_mw != 0) release(p);
      p.detail = "no PSE attached";
      set_oper(p, Oper::NoPse);
      return;
    }
    if (p.oper == Oper::NoPse) {
      set_oper(p, Oper::Searching);  // the PSE answers again
      p.detail.clear();
    }
    p.measured_mw = s.detection == Detection::Delivering ? s.actual_mw : 0;
    const bool delivering = s.detection == Detection::Delivering;
    const bool fault = s.detection == Detection::Fault || s.detection == Detection::OtherFault;
    observe_pse(p, s);

    switch (p.mode()) {
      case PoeMode::Off:
        if (s.admin != AdminState::Disabled) {
          if (p.oper == Oper::On) report(p, Outcome::Info, "power off: mode off");
          if (!admin(p, false)) return;
        }
        if (p.allocated_mw != 0 || p.oper != Oper::Off) release(p);
        p.held_mw = 0;
        p.detail.clear();
        set_oper(p, Oper::Off);
        return;

      case PoeMode::Static:
        if (s.admin == AdminState::Disabled && !admin(p, true)) return;
        p.held_mw = 0;
        if (fault) {
          on_fault(p, s);
          p.allocated_mw = p.max_mw();  // reserved whatever happens
          return;
        }
        p.allocated_mw = p.max_mw();
        if (delivering) {
          if (p.oper != Oper::On) {
            p.power_class = s.power_class;
            set_oper(p, Oper::On);
            apply_limit(p);
            log->info("{}: powered (static), class {}, {} reserved", p.name, s.power_class, watts(p.allocated_mw));
            report(p, Outcome::Ok,
                   fmt::format("powered: static, class {}, {} reserved", s.power_class, watts(p.allocated_mw)));
          }
        } else {
          if (p.oper == Oper::On) {
            report(p, Outcome::Info, "power removed: device disconnected");
            p.learned_mac.reset();
            p.reported_power_for_mac = false;
          }
          set_oper(p, Oper::Searching);
          p.detail.clear();
        }
        return;

      case PoeMode::Auto: break;
    }

    if (p.pse_budgets()) {
      evaluate_pse_budgeted(p, s, delivering, fault);
      return;
    }
    if (p.oper == Oper::Shed || p.oper == Oper::Denied) {
      // Held off by us until the budget has room; keep it off even if something enabled it.
      if (s.admin == AdminState::Enabled) admin(p, false);
      return;
    }
    if (p.oper == Oper::Off) {  // coming from mode off
      set_oper(p, Oper::Searching);
    }
    if (fault) {
      on_fault(p, s);
      return;
    }
    if (p.oper == Oper::Fault) {  // the fault cleared
      p.detail.clear();
      set_oper(p, Oper::Searching);
    }
    if (s.admin == AdminState::Disabled) {
      if (p.oper == Oper::On) on_gone(p);
      if (admin(p, true)) set_oper(p, Oper::Searching);
      return;
    }
    if (delivering) {
      if (p.oper != Oper::On) {
        admit(p, class_allocation(p, s.power_class), s.power_class);
      } else if (s.power_class >= 0) {
        p.power_class = s.power_class;
      }
      return;
    }
    // Searching / unknown: nothing powered.
    on_gone(p);
    set_oper(p, Oper::Searching);
    if (p.restore_until && clock() >= *p.restore_until) {
      log->info("{}: restored port found no device; {} returned to the budget", p.name, watts(p.allocated_mw));
      p.allocated_mw = 0;
      p.restore_until.reset();
      dirty = true;
    }
  }

  // Auto mode on a port whose PSE keeps its domain in budget by priority (kernel 6.17+): the PSE
  // decides who is powered; we take what it did into the allocation and the phone's timeline,
  // and never switch a port off or hold it back ourselves.
  void evaluate_pse_budgeted(Port& p, const PortStatus& s, bool delivering, bool fault) {
    const bool over_budget_event = std::exchange(p.over_budget_event, false);
    if (fault) {
      on_fault(p, s);
      return;
    }
    if (p.oper == Oper::Fault || p.oper == Oper::Off) {
      p.detail.clear();
      set_oper(p, Oper::Searching);
    }
    if (p.oper == Oper::Denied) set_oper(p, Oper::Searching);  // our own hold from before: the PSE decides now
    if (s.admin == AdminState::Disabled) {
      // Admin state is ours alone (a port the PSE sheds stays enabled): auto wants it enabled.
      if (p.oper == Oper::On) on_gone(p);
      if (admin(p, true)) set_oper(p, Oper::Searching);
      return;
    }
    if (delivering) {
      if (p.oper != Oper::On) {
        const bool was_shed = p.oper == Oper::Shed;
        p.power_class = s.power_class;
        p.allocated_mw = class_allocation(p, s.power_class);
        p.held_mw = 0;
        p.restore_until.reset();
        p.detail.clear();
        set_oper(p, Oper::On);
        dirty = true;
        apply_limit(p);
        log->info("{}: powered by the PSE (domain {}), class {}, {} allocated", p.name, domain_text(p), s.power_class,
                  watts(p.allocated_mw));
        report(p, Outcome::Ok,
               fmt::format("{}: class {}, {} allocated (PSE budget, domain {})",
                           was_shed ? "power restored by the PSE" : "powered", s.power_class, watts(p.allocated_mw),
                           domain_text(p)));
      } else if (s.power_class >= 0) {
        p.power_class = s.power_class;
      }
      return;
    }
    // Enabled, not delivering: held off by the PSE's budget, or nothing there.
    const bool held = over_budget_event || s.ext_state == pse_ext_power_not_available ||
                      (s.detection == Detection::Disabled && s.admin == AdminState::Enabled);
    if (held) {
      if (p.oper == Oper::Shed) return;
      const bool was_on = p.oper == Oper::On;
      const std::uint32_t held_mw = was_on ? p.allocated_mw : class_allocation(p, s.power_class);
      const int cls = was_on ? p.power_class : s.power_class;
      release(p);
      p.held_mw = held_mw;
      p.power_class = cls;
      p.detail = fmt::format("shed by the PSE, domain {} over budget", domain_text(p));
      set_oper(p, Oper::Shed);
      log->warn("{}: {} (PSE priority {})", p.name, p.detail, p.pse_prio ? std::to_string(*p.pse_prio) : "?");
      report(p, Outcome::Failed,
             was_on ? fmt::format("port shed by the PSE, domain {} over budget", domain_text(p))
                    : fmt::format("power denied by the PSE, domain {} over budget", domain_text(p)));
      return;
    }
    if (p.oper == Oper::Shed) {  // the device went away while held
      release(p);
      p.held_mw = 0;
      p.detail.clear();
    }
    on_gone(p);
    set_oper(p, Oper::Searching);
  }

  void on_events(Port& port, const PseEvents& e) {
    if (e.over_budget) port.over_budget_event = true;
    read_port(port.name, {[this, e](Port& p) { report_events(p, e); }, {}});
  }

  // What the state change of a PSE notification did not already put into the timeline.
  void report_events(Port& p, const PseEvents& e) {
    if (e.over_current && p.oper != Oper::Fault) {
      log->warn("{}: PSE reports over-current", p.name);
      report(p, Outcome::Failed, "PSE reports over-current");
    }
    if (e.over_temperature) {
      log->warn("{}: PSE reports over-temperature", p.name);
      report(p, Outcome::Failed, "PSE reports over-temperature");
    }
    if (e.power_control_error && p.oper != Oper::Fault) {
      log->warn("{}: PSE reports a power control error", p.name);
      report(p, Outcome::Failed, "PSE power control error");
    }
    if (e.over_budget && p.oper != Oper::Shed) {
      log->info("{}: PSE reports domain {} over budget", p.name, domain_text(p));
    }
  }

  // Reads `name` and reacts (as poll does for every port); `w` says what else to do then.
  void read_port(const std::string& name, Waiter w) {
    if (auto it = reads.find(name); it != reads.end() && !it->second->started) {
      it->second->waiters.push_back(std::move(w));  // not read yet: its result serves this too
      return;
    }
    auto read = std::make_shared<PortRead>();
    read->waiters.push_back(std::move(w));
    reads[name] = read;
    call<PortStatus>(
        [name, read](PoeDriver& d) {
          read->started = true;
          return d.status(name);
        },
        [name, read](Impl& m, DriverResult<PortStatus> r) { m.port_read(name, *read, r); });
  }

  void port_read(const std::string& name, PortRead& read, const DriverResult<PortStatus>& r) {
    if (auto it = reads.find(name); it != reads.end() && it->second.get() == &read) reads.erase(it);
    if (Port* p = find(name)) {
      evaluate(*p, r);
      for (auto& w : read.waiters) {
        if (w.evaluated) w.evaluated(*p);
      }
    }
    settle();
    for (auto& w : read.waiters) {
      if (w.applied) after_queued(std::move(w.applied));
    }
  }

  void settle() {
    enforce_budget();
    restore();
    save_if_dirty();
  }

  // Budget shrank (reload) or adoption found more than fits: shed until it fits.
  void enforce_budget() {
    while (managed_allocated() > budget_mw) {
      std::vector<Port*> on;
      for (auto& q : ports) {
        if (q.oper == Oper::On && q.mode() == PoeMode::Auto && !q.pse_budgets()) on.push_back(&q);
      }
      if (on.empty()) {
        log->warn("static reservations ({}) exceed the budget ({})", watts(managed_allocated()), watts(budget_mw));
        return;
      }
      std::sort(on.begin(), on.end(), shed_before);
      shed(*on.front(), fmt::format("budget {} exceeded", watts(budget_mw)));
    }
  }

  // Gives shed and denied ports their power back when it fits: most important first, and strictly
  // in that order so a big important port is not starved by smaller ones behind it.
  void restore() {
    std::vector<Port*> waiting;
    for (auto& q : ports) {
      if ((q.oper == Oper::Shed || q.oper == Oper::Denied) && q.mode() == PoeMode::Auto && !q.pse_budgets()) {
        waiting.push_back(&q);
      }
    }
    std::sort(waiting.begin(), waiting.end(), [](const Port* a, const Port* b) { return shed_before(b, a); });
    for (Port* q : waiting) {
      const std::uint32_t need = std::min(q->held_mw != 0 ? q->held_mw : class_power_mw(0), q->max_mw());
      if (need > free_mw()) break;
      if (!admin(*q, true)) continue;
      log->info("{}: power available again, re-enabling ({} reserved)", q->name, watts(need));
      report(*q, Outcome::Info, fmt::format("power restored: {} available", watts(need)));
      q->allocated_mw = need;  // reserved while the PSE detects the device again
      q->held_mw = 0;
      q->detail.clear();
      q->restore_until = clock() + options.restore_hold;
      set_oper(*q, Oper::Searching);
      dirty = true;
    }
  }

  // Reads every port, evaluating each as it comes, then settles the budget once. A poll asked for
  // while a round waits to start is that round; one asked for while a round runs follows it.
  void poll_all() {
    if (polling) {
      if (polling->started) poll_again = true;
      return;
    }
    if (ports.empty()) return settle();
    auto round = std::make_shared<PollRound>();
    round->left = ports.size();
    polling = round;
    std::vector<std::string> names;
    for (const auto& p : ports) names.push_back(p.name);
    for (const auto& name : names) {
      call<PortStatus>(
          [name, round](PoeDriver& d) {
            round->started = true;
            return d.status(name);
          },
          [name, round](Impl& m, DriverResult<PortStatus> r) {
            if (Port* p = m.find(name)) m.evaluate(*p, r);
            if (--round->left == 0) m.poll_done();
          });
    }
  }

  void poll_done() {
    polling.reset();
    settle();
    if (std::exchange(poll_again, false)) poll_all();
  }

  // ------------------------------------------------------------------------------------------
  // Persistence: a small JSON file, replaced atomically.

  void save_if_dirty() {
    if (!dirty) return;
    dirty = false;
    if (options.state_file.empty()) return;
    nlohmann::json j;
    j["version"] = 1;
    j["ports"] = nlohmann::json::object();
    for (const auto& p : ports) {
      nlohmann::json pj{{"oper", to_string(p.oper)},      {"class", p.power_class},
                        {"allocated_mw", p.allocated_mw}, {"requested_mw", p.requested_mw},
                        {"granted_mw", p.granted_mw},     {"held_mw", p.held_mw}};
      if (p.override_mode) pj["override"] = config::to_string(*p.override_mode);
      if (p.learned_mac) pj["mac"] = p.learned_mac->to_string();
      j["ports"][p.name] = std::move(pj);
    }
    const auto tmp = options.state_file.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << j.dump(1) << '\n';
      out.flush();
      if (!out) {
        log->error("cannot write PoE state {}", tmp);
        dirty = true;
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, options.state_file, ec);
    if (ec) {
      log->error("cannot replace PoE state {}: {}", options.state_file.string(), ec.message());
      dirty = true;
    }
  }

  nlohmann::json load_state() const {
    if (options.state_file.empty()) return {};
    std::ifstream in(options.state_file);
    if (!in) return {};
    auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    in.close();
    if (j.is_discarded() || !j.is_object() || !j.contains("ports") || !j["ports"].is_object()) {
      // Kept for a post-mortem, out of the way of the next save; ports start from the hardware.
      ve::set_aside(options.state_file, "not a PoE state file", "poe");
      return {};
    }
    return j;
  }

  // Only the fields of a saved port whose type is right: a damaged value costs that value only.
  static nlohmann::json sanitized(const nlohmann::json& pj) {
    nlohmann::json out = nlohmann::json::object();
    for (const char* k : {"oper", "override", "mac"})
      if (pj.contains(k) && pj[k].is_string()) out[k] = pj[k];
    for (const char* k : {"allocated_mw", "requested_mw", "granted_mw", "held_mw"})
      if (pj.contains(k) && pj[k].is_number_unsigned() && pj[k].get<std::uint64_t>() <= 1000000) out[k] = pj[k];
    if (pj.contains("class") && pj["class"].is_number_integer() && pj["class"].get<std::int64_t>() >= -1 &&
        pj["class"].get<std::int64_t>() <= 8)
      out["class"] = pj["class"];
    return out;
  }

  // Synchronous even with a worker: it runs before the loop serves anyone, nothing else is queued
  // yet, and what it adopts decides whether a phone keeps its power across a restart.
  void start() {
    sync_io = true;
    const auto saved = load_state();
    for (auto& p : ports) {
      nlohmann::json pj;
      if (saved.is_object() && saved["ports"].contains(p.name) && saved["ports"][p.name].is_object()) {
        pj = sanitized(saved["ports"][p.name]);
      }
      Oper saved_oper = Oper::Off;
      if (pj.is_object()) {
        if (auto m = mode_from(pj.value("override", std::string()))) p.override_mode = m;
        if (auto mac = MacAddress::parse(pj.value("mac", std::string()))) p.learned_mac = mac;
        saved_oper = oper_from(pj.value("oper", std::string())).value_or(Oper::Off);
        p.requested_mw = pj.value("requested_mw", 0u);
        p.granted_mw = pj.value("granted_mw", 0u);
      }
      auto r = driver.status(p.name);
      if (r && r->detection == Detection::Delivering && p.mode() != PoeMode::Off) {
        // Adopt: the phone stays powered; take the allocation we had agreed with it.
        std::uint32_t alloc = pj.is_object() ? pj.value("allocated_mw", 0u) : 0u;
        if (alloc == 0) alloc = std::min(class_power_mw(r->power_class), p.max_mw());
        if (p.mode() == PoeMode::Static) alloc = p.max_mw();
        p.allocated_mw = std::min(alloc, p.max_mw());
        p.power_class = r->power_class;
        p.measured_mw = r->actual_mw;
        p.limit_set_mw = r->limit_mw;
        p.oper = Oper::On;
        p.reported_power_for_mac = !mac_for(p).is_zero();
        log->info("{}: adopted powered port, class {}, {} allocated", p.name, p.power_class, watts(p.allocated_mw));
        report(p, Outcome::Info,
               fmt::format("power adopted at start: class {}, {}", p.power_class, watts(p.allocated_mw)));
      } else if (r && (saved_oper == Oper::Shed || saved_oper == Oper::Denied) && p.mode() == PoeMode::Auto &&
                 r->admin == AdminState::Disabled) {
        p.oper = saved_oper;
        p.held_mw = pj.value("held_mw", 0u);
        p.power_class = pj.value("class", -1);
        p.requested_mw = 0;
        p.granted_mw = 0;
        p.learned_mac.reset();
      } else {
        p.requested_mw = 0;
        p.granted_mw = 0;
        p.learned_mac.reset();
        p.oper = Oper::Searching;
      }
      evaluate(p, r);
    }
    dirty = true;
    settle();
    sync_io = false;
  }

  std::uint32_t negotiate(const std::string& name, std::uint32_t requested) {
    Port* p = find(name);
    if (p == nullptr || p->mode() == PoeMode::Off) return 0;
    // The device may have come up since the last poll: look before answering "no power". Inline
    // the answer below sees it; with a worker the read comes back later, for the next request (a
    // phone repeats it), and the answer is the state as the manager knows it now.
    if (p->oper != Oper::On) read_port(p->name, {});
    if (p->oper != Oper::On) return 0;
    // A request below what the device draws now would trip the port (a power cut): refused, the
    // port keeps what it has. Whoever sent it, this cannot be the powered device's real need.
    if (requested < p->measured_mw) {
      ++p->refused_requests;
      log->warn("{}: refused power request {}: below the present draw {} ({} refused)", p->name, watts(requested),
                watts(p->measured_mw), p->refused_requests);
      return p->granted_mw != 0 ? p->granted_mw : p->allocated_mw;
    }
    std::uint32_t cap = std::min(requested, p->max_mw());
    std::string limited_by = cap < requested ? fmt::format("port max {}", watts(p->max_mw())) : "";
    if (!p->limit_ranges.empty()) {
      const std::uint32_t pse_max = fit_power_limit(0xffffffffu, p->limit_ranges);
      if (cap > pse_max) {
        cap = pse_max;
        limited_by = fmt::format("PSE limit {}", watts(pse_max));
      }
    }
    std::uint32_t granted = cap;
    const std::uint32_t before = p->allocated_mw;
    if (p->mode() == PoeMode::Auto && p->pse_budgets()) {
      p->allocated_mw = granted;  // the PSE polices its domain's budget
    } else if (p->mode() == PoeMode::Auto) {
      const std::uint32_t others = managed_allocated() - p->allocated_mw;
      const std::uint32_t room = budget_mw > others ? budget_mw - others : 0;
      if (granted > room) {
        granted = room;
        limited_by = fmt::format("budget, {} free", watts(room));
      }
      p->allocated_mw = granted;
    }
    const bool changed = requested != p->requested_mw || granted != p->granted_mw;
    p->requested_mw = requested;
    p->granted_mw = granted;
    if (changed) {
      dirty = true;
      apply_limit(*p);
      if (granted == requested) {
        log->info("{}: device asked {}, granted", p->name, watts(requested));
        report(*p, Outcome::Ok, fmt::format("negotiated {}", watts(granted)));
      } else {
        log->info("{}: device asked {}, granted {} ({})", p->name, watts(requested), watts(granted), limited_by);
        // Still a powered phone (at the granted level): the step succeeded, the detail says how.
        report(*p, Outcome::Ok,
               fmt::format("requested {}, granted {} ({})", watts(requested), watts(granted), limited_by));
      }
    }
    if (p->allocated_mw < before) restore();
    save_if_dirty();
    return granted;
  }

  PortView view(const Port& p) const {
    PortView v;
    v.name = p.name;
    v.number = p.number;
    v.mode = p.mode();
    v.mode_overridden = p.override_mode.has_value();
    v.priority = p.cfg.priority;
    v.oper = p.oper;
    v.power_class = p.power_class;
    v.allocated_mw = p.allocated_mw;
    v.measured_mw = p.measured_mw;
    v.requested_mw = p.requested_mw;
    v.max_mw = p.max_mw();
    const MacAddress mac = mac_for(p);
    if (!mac.is_zero()) v.device = mac;
    v.detail = p.detail;
    v.power_domain = p.domain;
    v.pse_priority = p.pse_prio;
    v.pse_priority_max = p.pse_prio_max;
    v.budget_by_pse = p.pse_budgets();
    v.limit_mw = p.limit_set_mw;
    v.refused_requests = p.refused_requests;
    return v;
  }
};

Manager::Manager(PoeDriver& driver, EventSink& events, config::SiteConfigPtr config, Clock clock,
                 ManagerOptions options)
    : impl_(std::make_unique<Impl>(driver, events, std::move(config), std::move(clock), std::move(options))) {}

Manager::~Manager() = default;

void Manager::start() { impl_->start(); }
void Manager::poll() { impl_->poll_all(); }

void Manager::poll_port(const std::string& port, std::function<void()> applied) {
  if (impl_->find(port) != nullptr) {
    impl_->read_port(port, {{}, std::move(applied)});
  } else if (applied) {
    applied();
  }
}

std::uint32_t Manager::negotiate(const std::string& port, std::uint32_t requested_mw) {
  return impl_->negotiate(port, requested_mw);
}

void Manager::on_pse_events(const std::string& port, const PseEvents& events) {
  if (Impl::Port* p = impl_->find(port)) impl_->on_events(*p, events);
}

void Manager::read_notifications(std::function<void()> then) {
  impl_->call<std::vector<PortEvent>>(
      [](PoeDriver& d) -> DriverResult<std::vector<PortEvent>> { return d.read_notifications(); },
      [then = std::move(then)](Impl& m, DriverResult<std::vector<PortEvent>> r) {
        if (r) {
          for (const auto& e : r.value()) {
            if (Impl::Port* p = m.find(e.port)) m.on_events(*p, e.events);
          }
        }
        if (then) then();
      });
}

std::size_t Manager::pending_requests() const { return impl_->pending; }

std::uint32_t Manager::available(const std::string& port) const {
  const Impl::Port* p = impl_->find(port);
  return p != nullptr && p->oper == Oper::On ? p->allocated_mw : 0;
}

Result<void, std::string> Manager::set_mode(const std::string& port, config::PoeMode mode,
                                            std::function<void()> applied) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(std::string("no such port: ") + port);
  if (mode == p->cfg.mode) {
    p->override_mode.reset();
  } else {
    p->override_mode = mode;
  }
  impl_->log->info("{}: mode set to {} at run time", port, config::to_string(mode));
  // A manual change starts the port afresh: a shed or denied port is no longer held.
  if (p->oper == Oper::Shed || p->oper == Oper::Denied) {
    p->oper = Oper::Searching;
    p->held_mw = 0;
  }
  impl_->dirty = true;
  poll_port(port, std::move(applied));
  return {};
}

Result<void, std::string> Manager::begin_power_cycle(const std::string& port, std::function<void()> applied) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr) return unexpected(std::string("no such port: ") + port);
  if (p->cycling) return unexpected(port + " is already being power-cycled");
  if (p->oper == Oper::NoPse) return unexpected(port + " has no PSE: the box does not power it");
  if (p->mode() == config::PoeMode::Off) return unexpected(port + ": PoE is off on this port");
  impl_->log->info("{}: power-cycle: power off", port);
  p->cycling = true;
  impl_->dirty = true;
  poll_port(port, std::move(applied));
  return {};
}

void Manager::end_power_cycle(const std::string& port, std::function<void()> applied) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr || !p->cycling) {
    if (applied) applied();
    return;
  }
  impl_->log->info("{}: power-cycle: power on", port);
  p->cycling = false;
  if (p->oper == Oper::Shed || p->oper == Oper::Denied) {
    p->oper = Oper::Searching;
    p->held_mw = 0;
  }
  impl_->dirty = true;
  poll_port(port, std::move(applied));
}

void Manager::set_port_device(const std::string& port, const MacAddress& mac) {
  Impl::Port* p = impl_->find(port);
  if (p == nullptr || mac.is_zero()) return;
  if (p->learned_mac && *p->learned_mac == mac) return;
  const MacAddress previous = impl_->mac_for(*p);
  p->learned_mac = mac;
  impl_->dirty = true;
  // The power-on happened before we knew who it was: tell that phone's timeline now.
  if (p->oper == Oper::On && (previous != mac || !p->reported_power_for_mac)) {
    impl_->report(*p, Outcome::Ok,
                  fmt::format("powered: class {}, {} allocated", p->power_class, watts(p->allocated_mw)));
  }
  impl_->save_if_dirty();
}

void Manager::clear_port_device(const std::string& port) {
  if (Impl::Port* p = impl_->find(port)) {
    if (p->learned_mac) {
      p->learned_mac.reset();
      p->reported_power_for_mac = false;
      impl_->dirty = true;
      impl_->save_if_dirty();
    }
  }
}

void Manager::reconfigure(config::SiteConfigPtr config) {
  impl_->config = std::move(config);
  impl_->apply_config(true);
  for (auto& p : impl_->ports) {
    // A lowered max_watts caps what the port holds now.
    if (p.oper == Oper::On && p.mode() == config::PoeMode::Auto && p.allocated_mw > p.max_mw()) {
      p.allocated_mw = p.max_mw();
      p.granted_mw = std::min(p.granted_mw, p.max_mw());
      impl_->apply_limit(p);
      impl_->dirty = true;
    }
    if ((p.oper == Oper::Shed || p.oper == Oper::Denied) && p.mode() != config::PoeMode::Auto) {
      p.oper = Oper::Searching;
      p.held_mw = 0;
    }
  }
  impl_->dirty = true;
  impl_->poll_all();
}

std::vector<PortView> Manager::ports() const {
  std::vector<PortView> out;
  for (const auto& p : impl_->ports) out.push_back(impl_->view(p));
  return out;
}

std::optional<PortView> Manager::port(const std::string& name) const {
  if (const Impl::Port* p = impl_->find(name)) return impl_->view(*p);
  return std::nullopt;
}

Totals Manager::totals() const {
  Totals t;
  t.budget_mw = impl_->budget_mw;
  for (const auto& p : impl_->ports) {
    t.allocated_mw += p.allocated_mw;
    t.used_mw += p.measured_mw;
  }
  return t;
}

}  // namespace ve::poe
