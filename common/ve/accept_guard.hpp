#pragma once
// File descriptors are the one resource every listener shares: when one of them runs the process
// out (EMFILE/ENFILE), every other one, the control socket, the state files and Kea's pipes fail
// with it. This header is the shared answer, used by every accept loop:
//  - FdBudget: RLIMIT_NOFILE read once at start (soft raised to hard); each listener's connection
//    cap is a share of what is left after a fixed reserve, so the caps together stay below it.
//  - ConnectionLimiter: a total and a per-client cap; a slot is held by RAII for a connection's life.
//  - AcceptGuard: what an accept loop does on an accept error: pause (backing off) on fd or memory
//    exhaustion instead of spinning, and log at most one line per interval with a count.
//  - RateLimitedLog: one line per interval for anything a remote peer can trigger at will.
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "ve/log.hpp"

namespace ve {

// ---------------------------------------------------------------- FdBudget

// Percentages of FdBudget::usable() per listener. They sum to 90: the rest is slack for
// transient fds (a refused connection is accepted, then closed).
namespace fd_share {
inline constexpr unsigned kSipTcp = 35;
inline constexpr unsigned kHttp = 20;        // provisioning HTTP 6970
inline constexpr unsigned kTftp = 20;        // one UDP socket per TFTP transfer
inline constexpr unsigned kStatusPage = 10;  // control.http status page / metrics
inline constexpr unsigned kOther = 5;        // anything a later component adds
}  // namespace fd_share

struct FdBudget {
  // Largest soft limit we ask for when the hard limit is unlimited.
  static constexpr rlim_t kCeiling = rlim_t{1} << 20;

  std::size_t limit = 1024;  // RLIMIT_NOFILE soft limit in force
  // Kept out of every cap: control socket and its clients, journey/SIP SQLite (+WAL, shm),
  // PoE state writes, Kea supervision pipes and sockets, netlink, raw CDP/LLDP sockets per port.
  std::size_t reserve = 256;

  static std::size_t reserve_for(std::size_t limit) { return std::clamp<std::size_t>(limit / 4, 256, 4096); }

  static FdBudget for_limit(std::size_t limit) { return FdBudget{limit, reserve_for(limit)}; }

  // Reads RLIMIT_NOFILE and raises the soft limit to the hard one (systemd's LimitNOFILE sets
  // both; a plain shell leaves soft at 1024). `note` (optional) receives what happened.
  static FdBudget from_process(std::string* note = nullptr) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
      if (note) *note = "getrlimit(RLIMIT_NOFILE) failed; assuming 1024";
      return for_limit(1024);
    }
    const rlim_t want = rl.rlim_max == RLIM_INFINITY ? kCeiling : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
      rlimit raised{want, rl.rlim_max};
      if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        if (note) *note = "raised the soft limit from " + std::to_string(rl.rlim_cur) + " to " + std::to_string(want);
        rl.rlim_cur = want;
      } else if (note) {
        *note = "could not raise the soft limit " + std::to_string(rl.rlim_cur) + " to " + std::to_string(want);
      }
    }
    const rlim_t cur = rl.rlim_cur == RLIM_INFINITY ? kCeiling : rl.rlim_cur;
    return for_limit(static_cast<std::size_t>(cur));
  }

  std::size_t usable() const { return limit > reserve ? limit - reserve : 0; }
  std::size_t share(unsigned percent) const { return usable() * percent / 100; }
  // `wanted` (a configured or default cap), lowered to the listener's share; never below 1.
  std::size_t cap(std::size_t wanted, unsigned percent) const {
    return std::max<std::size_t>(1, std::min(wanted, share(percent)));
  }
};

// ---------------------------------------------------------------- RateLimitedLog

// Says at most one line per interval; the next line carries how many were suppressed.
class RateLimitedLog {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimitedLog(Clock::duration interval = std::chrono::seconds(10)) : interval_(interval) {}

  // True when the caller should log now; `suppressed` is how many calls were swallowed since.
  bool allow(std::uint64_t& suppressed, Clock::time_point now = Clock::now()) {
    if (logged_once_ && now - last_ < interval_) {
      ++suppressed_;
      return false;
    }
    logged_once_ = true;
    last_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

  template <typename... Args>
  void warn(const std::string& logger_name, fmt::format_string<Args...> format, Args&&... args) {
    std::uint64_t suppressed = 0;
    if (!allow(suppressed)) return;
    auto text = fmt::format(format, std::forward<Args>(args)...);
    if (suppressed) text += fmt::format(" ({} similar suppressed)", suppressed);
    ve::logger(logger_name)->warn("{}", text);
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  std::uint64_t suppressed_ = 0;
  bool logged_once_ = false;
};

// ---------------------------------------------------------------- ConnectionLimiter

// A total cap and a per-client cap (Key: an address). Slots release themselves when dropped,
// even after the limiter's owner is gone (sessions may outlive their server).
template <typename Key>
class ConnectionLimiter {
  struct State {
    std::size_t max_total;
    std::size_t max_per_client;
    std::size_t total = 0;
    std::map<Key, std::size_t> per_client;
  };

 public:
  enum class Refusal { None, Total, PerClient };

  class Slot {
   public:
    Slot() = default;
    Slot(std::shared_ptr<State> state, Key key) : state_(std::move(state)), key_(std::move(key)) {}
    Slot(Slot&& o) noexcept : state_(std::move(o.state_)), key_(std::move(o.key_)) {}
    Slot& operator=(Slot&& o) noexcept {
      if (this != &o) {
        release();
        state_ = std::move(o.state_);
        key_ = std::move(o.key_);
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { release(); }
    explicit operator bool() const { return state_ != nullptr; }

   private:
    void release() {
      if (!state_) return;
      --state_->total;
      auto it = state_->per_client.find(key_);
      if (it != state_->per_client.end() && --it->second == 0) state_->per_client.erase(it);
      state_.reset();
    }
    std::shared_ptr<State> state_;
    Key key_{};
  };

  ConnectionLimiter(std::size_t max_total, std::size_t max_per_client)
      : state_(std::make_shared<State>(State{max_total, max_per_client, 0, {}})) {}

  // A slot for one connection from `client`, or why not.
  std::pair<Slot, Refusal> acquire(const Key& client) {
    if (state_->total >= state_->max_total) return {Slot(), Refusal::Total};
    auto& n = state_->per_client[client];
    if (n >= state_->max_per_client) return {Slot(), Refusal::PerClient};
    ++n;
    ++state_->total;
    return {Slot(state_, client), Refusal::None};
  }

  std::size_t total() const { return state_->total; }
  std::size_t from(const Key& client) const {
    auto it = state_->per_client.find(client);
    return it == state_->per_client.end() ? 0 : it->second;
  }
  std::size_t max_total() const { return state_->max_total; }
  std::size_t max_per_client() const { return state_->max_per_client; }

 private:
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------- AcceptGuard

// Errors that mean "no fd or no memory for one now": retrying at once only spins.
inline bool is_resource_exhaustion(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category() && ec.category() != boost::system::generic_category())
    return false;
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
}

class AcceptGuard {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirstPause{50};
  static constexpr std::chrono::milliseconds kMaxPause{1000};
  static constexpr std::chrono::milliseconds kOtherErrorPause{10};

  // `logger_name` and `what` name the listener in the log ("sip", "tcp 0.0.0.0:5060").
  AcceptGuard(const boost::asio::any_io_executor& executor, std::string logger_name, std::string what)
      : timer_(executor), logger_(std::move(logger_name)), what_(std::move(what)) {}

  void set_what(std::string what) { what_ = std::move(what); }

  // Call from the accept handler on any error but operation_aborted. Resumes the loop by calling
  // `resume` after a pause: doubling from 50 ms to 1 s while exhaustion lasts, 10 ms otherwise.
  // The handler must not hold the only reference to what `resume` needs: it is stored until then.
  void failed(const boost::system::error_code& ec, std::function<void()> resume) {
    ++errors_;
    const bool exhausted = is_resource_exhaustion(ec);
    std::chrono::milliseconds pause = kOtherErrorPause;
    if (exhausted) {
      ++exhaustions_;
      pause = next_pause_;
      next_pause_ = std::min(next_pause_ * 2, kMaxPause);
    }
    log_.warn(logger_, "{} accept: {}{}", what_, ec.message(),
              exhausted ? fmt::format("; not accepting for {} ms", pause.count()) : std::string());
    paused_ = true;
    timer_.expires_after(pause);
    timer_.async_wait([this, resume = std::move(resume)](const boost::system::error_code& wait_ec) {
      if (wait_ec) return;  // cancelled: the listener is closing
      paused_ = false;
      resume();
    });
  }

  // Call after every successful accept: the next exhaustion starts again from the first pause.
  void succeeded() { next_pause_ = kFirstPause; }

  // The listener closes: a pending resume is dropped.
  void cancel() {
    timer_.cancel();
    paused_ = false;
  }

  std::uint64_t errors() const { return errors_; }
  std::uint64_t exhaustions() const { return exhaustions_; }
  bool paused() const { return paused_; }

 private:
  boost::asio::steady_timer timer_;
  std::string logger_;
  std::string what_;
  RateLimitedLog log_;
  std::chrono::milliseconds next_pause_ = kFirstPause;
  std::uint64_t errors_ = 0;
  std::uint64_t exhaustions_ = 0;
  bool paused_ = false;
};

}  // namespace ve
