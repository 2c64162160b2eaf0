// Landlock for a worker: system library dirs and the plugin read+exec,
// read_paths read+exec, write_paths read+write, nothing else; TCP denied
// unless spec.network; no signals or abstract sockets out of the sandbox.
// Handles every access right the running ABI offers (up to ABI 7).
#pragma once

#include <string>

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// The running Landlock ABI version (>= 1), or -errno (ENOSYS, EOPNOTSUPP).
int landlock_abi();

// Restricts the calling thread and its future children. Needs no_new_privs.
Status apply_landlock(const Spec& spec, const std::string& plugin_path, Notes* skipped);

}  // namespace ferry::sandbox
