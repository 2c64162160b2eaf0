// Why a process worker ended, as one of a fixed set of names that the log
// and the metrics (ferry_worker_exits_total{reason}) share. Pure functions
// of what the pool knows when it reaps a worker; thread-safe.
#pragma once

#include <ferry/plugin.h>

namespace ferry {

enum class ExitReason {
  crash,      // a fatal signal or a nonzero exit the pool did not cause
  violation,  // killed for a syscall the sandbox forbids (SIGSYS)
  deadline,   // killed: its call's deadline passed and it did not return
  oom,        // SIGKILL that ferryd did not send: the kernel's OOM killer
  recycled,   // ended by ferryd (max_calls_per_worker, max_rss_mb, a retired pool, a stop)
  cancelled,  // killed: its call was cancelled (client, drain) and did not return
};
inline constexpr int kExitReasonCount = 6;

const char* name(ExitReason reason);

// What the pool knows of a worker that is gone.
struct ExitFacts {
  int how = 0;                     // CLD_EXITED, CLD_KILLED or CLD_DUMPED
  int status = 0;                  // the exit status, or the signal
  int violation = -1;              // syscall its SIGSYS handler reported, else -1
  int fatal_signal = 0;            // signal it reported before dying, else 0
  ferry_code cancel_code = FERRY_OK;  // its call was cancelled (or timed out)
  bool killed = false;             // ferryd sent SIGKILL
  bool ending = false;             // ferryd asked it to end (its channel closed)
};

// Not every kill is ferryd's: an unexplained SIGKILL is counted as oom,
// since RLIMIT_AS makes allocations fail (out_of_memory, or a crash) and
// only the kernel's OOM killer (system or cgroup) sends SIGKILL uninvited.
ExitReason classify_exit(const ExitFacts& f);

}  // namespace ferry
