// The interface every executor (thread pool, process pool) implements.
// submit() and stats() are called on the loop thread only; stop() once, after the loop ends.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "exec/job.hpp"
#include "exec/worker_exit.hpp"

namespace ferry {

// One worker process of a process pool, as `ferry status` shows it.
struct WorkerInfo {
  int pid = 0;
  std::string state;  // spawning, starting, idle, busy, retiring, backoff, empty
  std::uint64_t calls = 0;
  std::uint64_t rss_kb = 0;
  int start_failures = 0;  // deaths before ready since it was last ready (its backoff)
  std::string failure;     // the worker's own start error, while it waits to retry
};

struct ExecutorStats {
  int workers = 0;
  int queued = 0;   // admitted, waiting for a worker
  std::array<int, 3> queued_by_priority{};  // the same by priority: high, normal, low
  int running = 0;  // on a worker now
  std::uint64_t completed = 0;
  int stuck = 0;  // thread pools: threads still running a cancelled call
  std::uint64_t restarts = 0;     // process pools: workers replaced so far
  std::vector<WorkerInfo> procs;  // process pools: one per worker
  // Process pools: workers that ended since the pool began, by ExitReason.
  std::array<std::uint64_t, kExitReasonCount> exits{};
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Admits a job or returns false at capacity (running + queued = workers +
  // queue_limit): the caller replies busy. Never blocks.
  virtual bool submit(Job&& job) = 0;
  // For the loop: after batch_wakes(), submit() leaves waking a worker to
  // flush(), which the loop calls once per turn after its submits, so a burst
  // of calls costs one wake and the workers do not contend with the loop
  // while it queues them. Default: every submit wakes at once.
  virtual void batch_wakes() {}
  virtual void flush() {}
  // The loop no longer waits for this call (deadline, CANCEL, client gone):
  // a queued job is removed (its completion, with `why`, still reaches the
  // sink); a running one is flagged (thread) or its worker killed (process).
  // Unknown refs are ignored: the call may have just finished.
  virtual void cancel(const CallRef& ref, ferry_code why) = 0;
  // No new jobs will come: finish the admitted ones with as few workers as
  // needed (a process pool does not replace workers that exit).
  virtual void retire() {}
  // Retired with no admitted job left: ends the workers normally (a process
  // pool's run their plugin's shutdown hook, or are killed past a bound)
  // without blocking; `done` runs on the loop once they are gone, perhaps
  // before end() returns. stop() is still called after. Default: at once.
  virtual void end(std::function<void()> done) { done(); }
  // Finishes every admitted job (each reaches the sink), then joins workers.
  // Returns how many threads were left running plugin code that ignores its
  // cancellation (they are detached; the process should exit soon).
  virtual int stop() = 0;
  virtual ExecutorStats stats() const = 0;
  virtual const char* kind() const = 0;
};

}  // namespace ferry
