#include "exec/thread_pool.hpp"

#include <pthread.h>

#include <algorithm>

#include "plugins/invoke.hpp"

namespace ferry {

ThreadPool::ThreadPool(std::string name, int workers, int queue_limit, CompletionSink& sink)
    : name_(std::move(name)), capacity_(workers + queue_limit), sink_(sink) {
  threads_.reserve(workers);
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([this] { work(); });
    pthread_setname_np(threads_.back().native_handle(), ("ferry:" + name_).substr(0, 15).c_str());
  }
}

ThreadPool::~ThreadPool() { stop(); }

bool ThreadPool::submit(Job&& job) {
  std::unique_lock lock(mu_);
  if (stopping_ || queued_ + running_ >= capacity_) return false;
  queues_[std::clamp(job.priority, 0, 2)].push_back(std::move(job));
  ++queued_;
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
  return ExecutorStats{int(threads_.size()), queued_, running_, completed_};
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
  while (queued_ == 0 && !stopping_) {
    ++idle_;
    cv_.wait(lock);
    --idle_;
    if (waking_ > 0) --waking_;
  }
  if (queued_ == 0) return false;
  auto& q = !queues_[0].empty() ? queues_[0] : !queues_[1].empty() ? queues_[1] : queues_[2];
  *job = std::move(q.front());
  q.pop_front();
  --queued_;
  ++running_;
  const bool wake = queued_ > 0 && wake_one();
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
