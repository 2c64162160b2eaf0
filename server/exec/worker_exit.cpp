#include "exec/worker_exit.hpp"

#include <signal.h>
#include <sys/wait.h>

namespace ferry {

const char* name(ExitReason reason) {
  static const char* const names[kExitReasonCount] = {"crash", "violation", "deadline", "oom", "recycled",
                                                      "cancelled"};
  return names[int(reason)];
}

// What the worker did comes first: one that breaks its sandbox or crashes
// in its call's cancel grace did that, whatever ferryd was about to do.
ExitReason classify_exit(const ExitFacts& f) {
  if (f.violation >= 0 || (f.how != CLD_EXITED && f.status == SIGSYS)) return ExitReason::violation;
  if (f.fatal_signal != 0) return ExitReason::crash;
  if (f.killed && f.cancel_code == FERRY_E_TIMEOUT) return ExitReason::deadline;
  if (f.killed && f.cancel_code != FERRY_OK) return ExitReason::cancelled;
  if (f.ending && (f.killed || (f.how == CLD_EXITED && f.status == 0))) return ExitReason::recycled;
  if (f.how != CLD_EXITED && f.status == SIGKILL && !f.killed) return ExitReason::oom;
  return ExitReason::crash;
}

}  // namespace ferry
