// A plugin's health, as ferry.status reports it (docs/protocol.md §8.1),
// judged from its executor's stats alone. A pure function: thread-safe.
#pragma once

#include <string>

#include "exec/executor.hpp"

namespace ferry {

struct Health {
  // "ok": calls run as configured.
  // "degraded": calls run, with less capacity than configured (some process
  //   workers keep dying before they are ready; threads stuck in calls that
  //   were cancelled).
  // "unhealthy": no call can run: every process worker dies before it is
  //   ready and waits for its next attempt (backoff); calls queue until
  //   their deadline.
  const char* level = "ok";
  std::string reason;  // for people; "" when ok
};

// Judged per worker slot, not per state: a slot that died before ready and
// has not been ready since counts as failing while it is being retried too,
// so one snapshot's timing does not flip the answer.
Health assess_health(const ExecutorStats& st);

}  // namespace ferry
