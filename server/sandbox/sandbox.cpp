// The order of the steps a worker applies to itself, and the feature probe.
#include "sandbox/sandbox.hpp"

#include <dirent.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "sandbox/fds.hpp"
#include "sandbox/landlock.hpp"
#include "sandbox/namespaces.hpp"
#include "sandbox/rlimits.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/step.hpp"

namespace ferry::sandbox {
namespace {

constexpr int kWorkerNamespaces =
    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;

// 0, or the errno of unshare()ing a worker's namespaces, tried in a child
// (unshare(CLONE_NEWUSER) refuses a multithreaded caller).
int try_namespaces() {
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) ::_exit(::unshare(kWorkerNamespaces) == 0 ? 0 : (errno & 0xff));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD;
}

void add_missing(std::string& missing, const std::string& what) {
  missing += (missing.empty() ? "" : "; ") + what;
}

// Steps that need the worker's own user namespace (and the ones it owns).
Status enter_namespaces(const Spec& spec, Notes* skipped) {
  if (!in_user_namespace())
    return lacking(spec, skipped, "user namespace",
                   "not in a user namespace: the worker keeps its uid, mounts and hostname");
  FERRY_RETURN_IF_ERROR(become_namespace_root());
  FERRY_RETURN_IF_ERROR(make_mounts_private());
  return set_hostname();
}

Status set_no_new_privs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return errno_fail("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)");
  return Status::Ok();
}

Status set_not_dumpable() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return errno_fail("dumpable", "prctl(PR_SET_DUMPABLE, 0)");
  return Status::Ok();
}

// Landlock restricts the calling thread only: a thread the plugin started
// while loading would escape it.
Status check_single_threaded() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return Status::Ok();  // no /proc: nothing to check with
  int threads = 0;
  while (const dirent* e = ::readdir(dir)) threads += e->d_name[0] != '.';
  ::closedir(dir);
  if (threads > 1)
    return step_fail("landlock",
                        std::to_string(threads) +
                            " threads running (did the plugin start one while loading?); "
                            "Landlock would bind only this one");
  return Status::Ok();
}

}  // namespace

Features probe() {
  Features f;
  const int ns_err = try_namespaces();
  f.user_ns = ns_err == 0;
  if (!f.user_ns)
    add_missing(f.missing, std::string("user namespaces (unshare: ") + std::strerror(ns_err) + ")");
  const int abi = landlock_abi();
  f.landlock = abi >= 1;
  f.landlock_abi = f.landlock ? abi : 0;
  if (!f.landlock) add_missing(f.missing, std::string("landlock (") + std::strerror(-abi) + ")");
  f.seccomp = seccomp_available();
  if (!f.seccomp) add_missing(f.missing, "seccomp filters with TSYNC and KILL_PROCESS");
  return f;
}

Status apply_before_load(const Spec& spec, int keep_fd, Notes* skipped) {
  if (!spec.enabled) {
    FERRY_RETURN_IF_ERROR(null_stdin());
    return close_other_fds(keep_fd);
  }
  FERRY_RETURN_IF_ERROR(enter_namespaces(spec, skipped));
  FERRY_RETURN_IF_ERROR(null_stdin());
  FERRY_RETURN_IF_ERROR(close_other_fds(keep_fd));
  FERRY_RETURN_IF_ERROR(apply_rlimits(spec));
  FERRY_RETURN_IF_ERROR(set_no_new_privs());
  FERRY_RETURN_IF_ERROR(set_not_dumpable());
  return drop_capabilities();
}

Status apply_after_load(const Spec& spec, const std::string& plugin_path, ViolationReporter reporter,
                        Notes* skipped) {
  if (!spec.enabled) return Status::Ok();
  FERRY_RETURN_IF_ERROR(check_single_threaded());
  FERRY_RETURN_IF_ERROR(apply_landlock(spec, plugin_path, skipped));
  if (spec.seccomp) FERRY_RETURN_IF_ERROR(apply_seccomp(spec, reporter, skipped));
  return Status::Ok();
}

std::string syscall_name(int nr) {
  char* name = ::seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  if (name == nullptr) return "#" + std::to_string(nr);
  std::string out(name);
  std::free(name);
  return out;
}

}  // namespace ferry::sandbox
