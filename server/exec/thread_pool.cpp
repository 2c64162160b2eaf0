#include "exec/thread_pool.hpp"

#include <pthread.h>


#include "plugins/invoke.hpp"

namespace ferry {

ThreadPool::ThreadPool(std::string name, int workers, int queue_limit, CompletionSink& sink)
    : name_(std::move(name)), sink_(sink), queue_(workers + queue_limit) {
  threads_.reserve(workers);
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([this] { work(); });
    pthread_setname_np(threads_.back().native_handle(), ("ferry:" + name_).substr(0, 15).c_str());
  }
}

ThreadPool::~ThreadPool() { stop(); }

bool ThreadPool::submit(Job&& job) {
  std::unique_lock lock(mu_);
  if (stopping_ || !queue_.admit(std::move(job), running_)) return false;
  const bool wake = wake_one();
  lock.unlock();
  if (wake) cv_.notify_one();
  return true;
}

void ThreadPool::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

ExecutorStats ThreadPool::stats() const {
  std::lock_guard lock(mu_);
  return ExecutorStats{int(threads_.size()), queue_.size(), running_, completed_};
}

// Waits for the next job; false once stopping and the queue is empty (drained).
// One worker is woken at a time; it wakes the next if work is still queued
// when it takes a job. Trivial calls then rarely wake a second thread, while
// slow calls still spread over every worker.
bool ThreadPool::wake_one() {
  if (idle_ == 0 || waking_ > 0) return false;
  ++waking_;
  return true;
}

bool ThreadPool::next(Job* job) {
  std::unique_lock lock(mu_);
  while (queue_.empty() && !stopping_) {
    ++idle_;
    cv_.wait(lock);
    --idle_;
    if (waking_ > 0) --waking_;
  }
  if (!queue_.pop(job)) return false;
  ++running_;
  const bool wake = !queue_.empty() && wake_one();
  lock.unlock();
  if (wake) cv_.notify_one();
  return true;
}

void ThreadPool::work() {
  Job job;
  while (next(&job)) {
    Completion c = run_job(job);
    job = Job{};  // drop the library reference before reporting
    {
      // Free the slot first, so a caller reacting to this completion is admitted.
      std::lock_guard lock(mu_);
      --running_;
      ++completed_;
    }
    sink_.complete(std::move(c));
  }
}

}  // namespace ferry
