#pragma once
// The thread PSE requests run on, so that a slow PSE (a netlink round trip with a 1 s receive
// timeout, an I2C controller behind it) never stalls the daemon's event loop. One thread and one
// FIFO queue: requests run one at a time in the order they were decided, so writes to a port keep
// their order and a read queued after a write sees what the write did.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace ve::poe {

class PseWorker {
 public:
  // At most `capacity` requests wait (the one running is not counted).
  explicit PseWorker(std::size_t capacity);
  // Lets the running request finish (a driver call is bounded by its own timeout), drops the
  // waiting ones and joins. Whoever queued them must not expect their results any more.
  ~PseWorker();
  PseWorker(const PseWorker&) = delete;
  PseWorker& operator=(const PseWorker&) = delete;

  // Queues `job` to run on the worker thread. False, and `job` not taken, when the queue is full:
  // the caller fails that request at once rather than block or lose it silently.
  bool push(std::function<void()>& job);

 private:
  void run(const std::stop_token& stop);

  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable_any ready_;
  std::deque<std::function<void()>> queue_;
  std::jthread thread_;  // last: started once the members above exist, joined before they go
};

}  // namespace ve::poe
