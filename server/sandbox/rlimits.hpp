// Resource limits of a worker, from its Spec. Every limit is set with
// soft = hard (a PID-1 worker ignores SIGXCPU at the soft CPU limit) and is
// never raised above the hard limit the worker inherited.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// RLIMIT_AS (memory_mb), RLIMIT_CPU (cpu_seconds), RLIMIT_NOFILE (max_files),
// RLIMIT_NPROC (max_procs), RLIMIT_CORE = 0. A 0 in the spec means unlimited
// for memory and CPU, and "leave as inherited" for files and processes.
Status apply_rlimits(const Spec& spec);

}  // namespace ferry::sandbox
