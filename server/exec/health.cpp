#include "exec/health.hpp"

namespace ferry {
namespace {

// Process pools: slots whose latest starts all failed, and the newest error
// a worker reported (present while its slot waits in backoff).
Health assess_workers(const ExecutorStats& st) {
  int failing = 0;
  std::string error;
  for (const WorkerInfo& w : st.procs) {
    if (w.start_failures == 0) continue;
    ++failing;
    if (!w.failure.empty()) error = w.failure;
  }
  if (failing == 0) return {};
  const std::string last = error.empty() ? "" : "; last error: " + error;
  const std::string count = std::to_string(failing) + " of " + std::to_string(st.procs.size());
  if (failing == int(st.procs.size())) {
    return {"unhealthy", "every worker dies before it is ready (" + count + ", retried with backoff)" + last};
  }
  return {"degraded", "some workers die before they are ready (" + count + ")" + last};
}

}  // namespace

Health assess_health(const ExecutorStats& st) {
  if (!st.procs.empty()) return assess_workers(st);
  if (st.stuck > 0) {
    return {"degraded", "threads stuck in cancelled calls: " + std::to_string(st.stuck) +
                            " (replaced up to max_stuck_threads)"};
  }
  return {};
}

}  // namespace ferry
