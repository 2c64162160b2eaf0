// What a ferry-worker applies to itself before serving, in a fixed order
// (see apply_after_load / apply_before_load). Free functions; each step logs
// nothing itself but returns a Status naming the step and errno, which the
// worker reports to the host once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace ferry::sandbox {

// The sandbox of one plugin's workers ([plugins.NAME.sandbox] in server.toml).
struct Spec {
  bool enabled = true;         // false: no sandbox at all (trusted plugins)
  bool network = false;        // false: empty network namespace
  std::vector<std::string> read_paths;   // readable (and executable) besides system dirs
  std::vector<std::string> write_paths;  // readable and writable
  std::uint64_t memory_mb = 1024;        // RLIMIT_AS; 0 = unlimited
  std::uint64_t cpu_seconds = 0;         // RLIMIT_CPU over the worker's life; 0 = unlimited
  std::uint64_t max_files = 256;         // RLIMIT_NOFILE
  std::uint64_t max_procs = 64;          // RLIMIT_NPROC (threads count)
  bool seccomp = true;                   // syscall allow-list
  bool allow_weaker = false;             // start even if the kernel lacks a feature

  friend bool operator==(const Spec&, const Spec&) = default;
};

// What the kernel could not enforce, one line each: a step skipped under
// spec.allow_weaker ("landlock skipped: ...") or a Landlock right the running
// ABI lacks ("landlock ABI 2: truncate() not restricted ..."). Log it.
using Notes = std::vector<std::string>;

// A step's outcome: OK, or internal with "step: what failed" (errno text
// included), e.g. "landlock: landlock_create_ruleset: Function not implemented".
using ferry::Status;

// Kernel features this machine offers, probed once (by ferryd at start-up,
// to refuse or warn before any worker is spawned).
struct Features {
  bool user_ns = false;
  bool landlock = false;
  int landlock_abi = 0;
  bool seccomp = false;
  std::string missing;  // human-readable list of what is missing, "" if none
};
Features probe();

// Flags for clone3() when spawning a worker with this spec (CLONE_NEW*).
std::uint64_t clone_flags(const Spec& spec);

// Host side, right after clone3() returned the child's pid: writes the child's
// uid_map/gid_map so that root inside maps to `outside_uid` (65534 when
// ferryd runs as root, else ferryd's own uid). setgroups is denied unless the
// caller is root (then the worker may, and does, drop its supplementary
// groups). A process may call it on itself right after unshare(CLONE_NEWUSER).
Status write_id_maps(int pid, std::uint32_t outside_uid, std::uint32_t outside_gid);

// Worker side, in this order, before the plugin is loaded:
//   become root of the user namespace (setresgid/setresuid 0, supplementary
//   groups dropped where setgroups is allowed) if in one, /dev/null on fd 0
//   (fds 1 and 2 are kept: the launcher's pipes to ferryd) and every other
//   fd but `keep_fd` (> 2, or -1) closed, mounts made
//   private, hostname "ferry-worker", rlimits (soft = hard, never raised;
//   core = 0), PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE 0, capabilities dropped.
// spec.enabled == false: only the fd step. Not in a user namespace: fails,
// or with spec.allow_weaker skips the namespace steps and says so in `skipped`.
Status apply_before_load(const Spec& spec, int keep_fd, Notes* skipped = nullptr);

// Called from the SIGSYS handler with the number of the syscall the filter
// refused (0 if the SIGSYS came from elsewhere). Must be async-signal-safe.
using ViolationReporter = void (*)(int syscall_nr);

// Worker side, after the plugin is loaded and before the first call:
//   Landlock (system library dirs and `plugin_path` read+exec, read_paths
//   read, write_paths read+write, nothing else), then the seccomp allow-list
//   (violation: SIGSYS trap; the handler calls `reporter`, then the worker
//   dies by SIGSYS).
// Call it while the worker has one thread (Landlock binds the calling thread
// only; it fails otherwise). `plugin_path` may be "" (nothing extra readable).
// A kernel without Landlock or seccomp: fails, or with spec.allow_weaker
// skips that step and says so in `skipped`.
Status apply_after_load(const Spec& spec, const std::string& plugin_path, ViolationReporter reporter,
                        Notes* skipped = nullptr);

// Name of a syscall number on this architecture, e.g. "socket", or "#41".
std::string syscall_name(int nr);

}  // namespace ferry::sandbox
