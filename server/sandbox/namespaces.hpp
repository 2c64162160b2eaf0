// Namespaces, worker side: become root of the user namespace the host made,
// then set up what that root owns (mount propagation, hostname) and give the
// capabilities up. clone_flags() and write_id_maps() are in sandbox.hpp.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// True when this process is not in the initial user namespace.
bool in_user_namespace();

// setresgid/setresuid(0) and, where setgroups is allowed, no supplementary groups.
Status become_namespace_root();

// Every mount private, so nothing done here propagates to the host.
Status make_mounts_private();

// hostname "ferry-worker" (the UTS namespace is the worker's own).
Status set_hostname();

// No capabilities left (effective, permitted, inheritable, ambient).
Status drop_capabilities();

}  // namespace ferry::sandbox
