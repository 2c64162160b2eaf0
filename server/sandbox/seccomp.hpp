// The seccomp allow-list of a worker (libseccomp). Anything not allowed traps:
// the SIGSYS handler passes the syscall number to the caller's reporter (the
// worker tells the host), and the worker dies by SIGSYS.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// True when the kernel offers seccomp filters with TSYNC and KILL_PROCESS.
bool seccomp_available();

// Installs the SIGSYS handler (calling `reporter`, which may be null), then
// loads the filter on every thread of the process. Needs no_new_privs.
Status apply_seccomp(const Spec& spec, ViolationReporter reporter, Notes* skipped);

}  // namespace ferry::sandbox
