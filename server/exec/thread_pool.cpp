#include "exec/thread_pool.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <system_error>

#include "common/log_output.hpp"

namespace ferry {
namespace {
// How long stop() gives a stuck call to notice its cancellation.
constexpr auto kStuckGrace = std::chrono::milliseconds(500);
// How long a cancelled call may keep running before its thread counts as stuck.
constexpr std::int64_t kStuckAfterMs = 100;
}  // namespace

ThreadPool::ThreadPool(std::string name, int workers, int queue_limit, CompletionSink& sink,
                       const Invoker& invoker, int max_stuck)
    : name_(std::move(name)), workers_(workers), max_stuck_(max_stuck), sink_(sink), invoker_(invoker),
      clock_(invoker.clock()), queue_(workers + queue_limit) {
  std::lock_guard lock(mu_);
  threads_.reserve(std::size_t(workers));
  for (int i = 0; i < workers && start_thread(); ++i) {
  }
}

ThreadPool::~ThreadPool() { stop(); }

bool ThreadPool::start_thread() {
  auto t = std::make_unique<Thread>();
  Thread* self = t.get();
  try {
    t->thread = std::thread([this, self] { work(self); });
  } catch (const std::system_error& e) {
    spdlog::error("plugin {}: cannot start a thread ({}); running with {} of {}", name_, e.what(), live_, workers_);
    return false;
  }
  pthread_setname_np(t->thread.native_handle(), ("ferry:" + name_).substr(0, 15).c_str());
  threads_.push_back(std::move(t));
  ++live_;
  return true;
}

bool ThreadPool::submit(Job&& job) {
  std::unique_lock lock(mu_);
  if (cancelled_ > 0) find_stuck();
  // Stuck threads do not hold capacity: their callers were already answered.
  if (stopping_ || !queue_.admit(std::move(job), running_ - stuck_)) return false;
  const bool wake = wake_one();
  lock.unlock();
  if (wake && batch_) wake_due_ = true;
  else if (wake) cv_.notify_one();
  return true;
}

void ThreadPool::flush() {
  if (!wake_due_) return;
  wake_due_ = false;
  cv_.notify_one();
}

void ThreadPool::cancel(const CallRef& ref, ferry_code why) {
  Job job;
  bool queued;
  {
    std::lock_guard lock(mu_);
    queued = queue_.take(ref, &job);
    if (queued) ++completed_;
    for (auto& t : threads_) {
      if (queued || !t->busy || t->cancelled_ms != 0 || !(t->ref == ref)) continue;
      t->control.cancel();
      if (t->window) t->window->wake();  // an emit() waiting for a slow client returns
      t->cancelled_ms = clock_.now_ms();
      ++cancelled_;
      break;
    }
    if (cancelled_ > 0) find_stuck();
  }
  if (queued) {
    Completion c{job.ref, why, "cancelled before it started"};
    c.finished_ns = clock_.now_ns();
    sink_.complete(std::move(c));
  }
  reap();
}

// Threads whose cancelled call is still running after kStuckAfterMs become
// stuck; each gets a replacement while the cap allows.
void ThreadPool::find_stuck() {
  const std::int64_t now = clock_.now_ms();
  int replacements = 0;
  for (auto& t : threads_) {  // start_thread() grows threads_: only after the loop
    if (t->stuck || t->cancelled_ms == 0 || now - t->cancelled_ms < kStuckAfterMs) continue;
    t->stuck = true;
    --cancelled_;
    ++stuck_;
    const bool replace =
        live_ + replacements - stuck_ < workers_ && live_ + replacements - workers_ < max_stuck_ && !stopping_;
    replacements += replace;
    note_stuck(*t, now, replace);
  }
  for (int i = 0; i < replacements; ++i) {
    if (!start_thread()) break;
  }
}

// The one log line of a stuck thread (each becomes stuck once, so their
// number is bounded by the threads); ferry_stuck_threads shows how many are now.
void ThreadPool::note_stuck(const Thread& t, std::int64_t now_ms, bool replaced) const {
  const std::string& function = t.function != nullptr ? *t.function : name_;
  const LogFields with({{"plugin", name_}, {"function", function}, {"call_id", t.ref.call_id}});
  spdlog::warn("plugin {}: a thread is stuck in {}, call {}: it ignores the call's cancellation ({} ms ago); {}",
               name_, function, t.ref.call_id, now_ms - t.cancelled_ms,
               replaced ? "starting a replacement thread"
                        : stopping_ ? "ferryd is stopping" : "no replacement (max_stuck_threads reached)");
}

// Joins threads that have left (a stuck thread that finished while the pool
// had enough others). Never called from a pool thread.
void ThreadPool::reap() {
  std::vector<std::unique_ptr<Thread>> gone;
  {
    std::lock_guard lock(mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if ((*it)->exited) {
        gone.push_back(std::move(*it));
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& t : gone) t->thread.join();
}

int ThreadPool::stop() {
  std::unique_lock lock(mu_);
  if (stopping_ && threads_.empty()) return 0;
  stopping_ = true;
  cv_.notify_all();
  // Threads finish the queue; only stuck ones get a deadline.
  exited_cv_.wait(lock, [&] { return live_ == stuck_ + cancelled_; });
  exited_cv_.wait_for(lock, kStuckGrace, [&] { return live_ == 0; });
  int left = 0;
  for (auto& t : threads_) {
    // Only a thread still inside a call is left behind; one that is past its
    // call (leaving, or about to see stopping_) is joined below.
    if (t->exited || !t->busy) continue;
    t->thread.detach();
    (void)t.release();  // the detached thread still uses it
    ++left;
  }
  if (left > 0) spdlog::warn("plugin {}: {} threads ignore their cancellation; left running", name_, left);
  auto all = std::move(threads_);
  threads_.clear();
  lock.unlock();
  for (auto& t : all) {
    if (t) t->thread.join();
  }
  return left;
}

ExecutorStats ThreadPool::stats() const {
  std::lock_guard lock(mu_);
  if (cancelled_ > 0) const_cast<ThreadPool*>(this)->find_stuck();
  return ExecutorStats{.workers = live_, .queued = queue_.size(),
                       .queued_by_priority = {queue_.size_at(0), queue_.size_at(1), queue_.size_at(2)},
                       .running = running_ - stuck_, .completed = completed_, .stuck = stuck_, .restarts = 0,
                       .procs = {}};
}

// One worker is woken at a time; it wakes the next if work is still queued
// when it takes a job. Trivial calls then rarely wake a second thread, while
// slow calls still spread over every worker.
bool ThreadPool::wake_one() {
  if (idle_ == 0 || waking_ > 0) return false;
  ++waking_;
  return true;
}

// Waits for the next job; false once the thread should leave: stopping with
// the queue empty, or one thread too many after a stuck call ended. `done`
// (optional) is the call this thread just finished: its slot is freed in the
// same critical section that takes the next job, and it is posted before this
// thread waits or runs again, so a caller reacting to it is admitted.
bool ThreadPool::next(Thread* self, Job* job, Completion* done) {
  std::unique_lock lock(mu_);
  if (done != nullptr) {
    const bool leave = finish(self);
    if (leave || queue_.empty()) {
      lock.unlock();
      sink_.complete(std::move(*done));
      done = nullptr;
      if (leave) return false;
      lock.lock();
    }
  }
  while (queue_.empty() && !stopping_) {
    ++idle_;
    cv_.wait(lock);
    --idle_;
    if (waking_ > 0) --waking_;
  }
  if (!queue_.pop(job)) {
    --live_;
    lock.unlock();
    if (done != nullptr) sink_.complete(std::move(*done));
    return false;
  }
  ++running_;
  self->busy = true;
  self->ref = job->ref;
  self->function = job->fn ? &job->fn->name : nullptr;
  self->control.reset(job->deadline_ms);
  self->window = job->stream ? std::make_shared<PartialWindow>(job->ref, job->deadline_ms, sink_, clock_) : nullptr;
  const bool wake = !queue_.empty() && wake_one();
  lock.unlock();
  if (wake) cv_.notify_one();
  if (done != nullptr) sink_.complete(std::move(*done));
  return true;
}

// The bookkeeping of a call that ended on `self`, with mu_ held; true when
// the thread leaves (a stuck one whose replacement took over).
bool ThreadPool::finish(Thread* self) {
  --running_;
  ++completed_;
  self->busy = false;
  self->function = nullptr;  // its job goes next
  self->window.reset();      // the loop keeps it while it holds credit of its partials
  if (self->cancelled_ms != 0 && !self->stuck) --cancelled_;
  self->cancelled_ms = 0;
  if (!self->stuck) return false;
  self->stuck = false;
  --stuck_;
  const bool leave = live_ - stuck_ > workers_;  // its replacement took over
  if (leave) --live_;
  return leave;
}

void ThreadPool::work(Thread* self) {
  Job job;
  Completion done;
  bool ran = false;
  while (next(self, &job, ran ? &done : nullptr)) {
    CallTimes times;
    done = run_job(job, invoker_, CallEnv{0, &self->control, self->window.get(), &times});
    done.started_ns = times.started_ns;  // 0 if it never ran (its deadline had passed)
    done.finished_ns = times.started_ns != 0 ? times.finished_ns : clock_.now_ns();
    job = Job{};  // drop the library reference before reporting
    ran = true;
  }
  std::lock_guard lock(mu_);
  self->exited = true;
  exited_cv_.notify_all();
}

}  // namespace ferry
