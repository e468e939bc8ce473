#pragma once
// For tests of the manager with its PSE worker (ManagerOptions::post): the caller's event loop,
// a queue the worker posts results to and the test thread runs.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "poe/poe.hpp"

namespace ve::poe::testing {

// The caller's event loop: what the worker posts waits here until the test thread runs it.
class Loop {
 public:
  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> f) {
      {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(f));
      }
      ready_.notify_all();
    };
  }
  // Runs what is queued now; how many.
  std::size_t run_ready() {
    std::deque<std::function<void()>> now;
    {
      std::lock_guard lock(mutex_);
      now.swap(queue_);
    }
    for (auto& f : now) f();
    return now.size();
  }
  // Runs results as they come until the manager has nothing in flight.
  bool drain(const Manager& mgr, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      run_ready();
      if (mgr.pending_requests() == 0) return true;
      std::unique_lock lock(mutex_);
      if (!ready_.wait_until(lock, until, [this] { return !queue_.empty(); })) return false;
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
};

}  // namespace ve::poe::testing
