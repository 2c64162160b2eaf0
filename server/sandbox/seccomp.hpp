// The seccomp allow-list of a worker (libseccomp). Anything not allowed traps:
// the SIGSYS handler sends a channel::Header {type = violation, code =
// syscall number} to the host and the worker dies by SIGSYS.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// True when the kernel offers seccomp filters with TSYNC and KILL_PROCESS.
bool seccomp_available();

// Installs the SIGSYS handler (reporting to `report_fd`), then loads the
// filter on every thread of the process. Needs no_new_privs.
Status apply_seccomp(const Spec& spec, int report_fd, Notes* skipped);

}  // namespace ferry::sandbox
