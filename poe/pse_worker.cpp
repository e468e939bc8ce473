#include "poe/pse_worker.hpp"

#include <utility>

namespace ve::poe {

PseWorker::PseWorker(std::size_t capacity)
    : capacity_(capacity), thread_([this](const std::stop_token& stop) { run(stop); }) {}

PseWorker::~PseWorker() {
  thread_.request_stop();  // wakes the wait in run(); a running job finishes first
  thread_.join();
}

bool PseWorker::push(std::function<void()>& job) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= capacity_) return false;
    queue_.push_back(std::move(job));
  }
  ready_.notify_one();
  return true;
}

void PseWorker::run(const std::stop_token& stop) {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, stop, [this] { return !queue_.empty(); });
      if (stop.stop_requested()) return;  // what still waits is dropped
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

}  // namespace ve::poe
