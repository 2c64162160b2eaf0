#include "sandbox/seccomp.hpp"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "sandbox/step.hpp"

#ifndef SYS_SECCOMP
// si_code of a seccomp SIGSYS; <asm-generic/siginfo.h> has it but clashes with <signal.h>.
#define SYS_SECCOMP 1
#endif

namespace ferry::sandbox {
namespace {

// Allowed whatever their arguments. Files are open-able because Landlock
// decides which; memory may be made executable because dlopen needs it.
// clang-format off
const char* const kAllowed[] = {
    // files and fds
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "open", "openat", "openat2", "creat", "close", "close_range", "dup",
    "dup2", "dup3", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
    "getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate",
    "fallocate", "fsync", "fdatasync", "sync_file_range", "flock", "fadvise64", "umask",
    "splice", "tee", "sendfile", "copy_file_range", "pipe", "pipe2", "memfd_create",
    // waiting for fds
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    // the channel (an inherited socket)
    "sendmsg", "recvmsg", "sendto", "recvfrom", "sendmmsg", "recvmmsg", "shutdown",
    "getsockopt", "setsockopt", "getsockname", "getpeername",
    // memory
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "msync", "membarrier",
    // threads and scheduling
    "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
    "sched_yield", "sched_getaffinity", "sched_getparam", "sched_getscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "getcpu",
    // time
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
    "getitimer", "setitimer", "alarm", "timer_create", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    // signals (rt_sigaction, kill and tgkill: see add_signals)
    "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
    "sigaltstack", "restart_syscall", "pause",
    // identity and information
    "getpid", "gettid", "getppid", "getpgrp", "getuid", "geteuid", "getgid", "getegid",
    "getgroups", "getresuid", "getresgid", "uname", "sysinfo", "getrusage", "times",
    "getrlimit", "getrandom",
    // the end
    "exit", "exit_group",
};

// Added to kAllowed with spec.network (there is then no network namespace).
const char* const kNetwork[] = {"socket", "connect", "bind", "listen", "accept", "accept4"};
// clang-format on

// ioctl requests and fcntl commands that touch only the fd itself.
const unsigned long kIoctls[] = {TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX};
const int kFcntls[] = {F_GETFD,     F_SETFD,         F_GETFL,      F_SETFL,
                       F_DUPFD,     F_DUPFD_CLOEXEC, F_GETLK,      F_SETLK,
                       F_SETLKW,    F_OFD_GETLK,     F_OFD_SETLK,  F_OFD_SETLKW,
                       F_ADD_SEALS, F_GET_SEALS,     F_GETPIPE_SZ, F_SETPIPE_SZ};
const int kPrctls[] = {PR_SET_NAME,         PR_GET_NAME,    PR_GET_DUMPABLE,
                       PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP, PR_CAPBSET_READ};

// Namespace flags that a thread must not ask for.
constexpr std::uint64_t kNewNamespaces = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                         CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
constexpr int kMaxSignal = 64;  // SIGRTMAX on Linux

// Compares only the low 32 bits: the kernel reads an int argument from them,
// whatever the caller left in the high half.
scmp_arg_cmp arg_is(unsigned arg, std::uint32_t value) {
  return {arg, SCMP_CMP_MASKED_EQ, 0xffffffffULL, value};
}

// ---- the SIGSYS handler ----------------------------------------------------

// Set once, before the filter is loaded; a signal handler can only reach
// process-wide state, so this one static stays.
ViolationReporter g_reporter = nullptr;

// Async-signal-safe: the reporter (async-signal-safe by contract), sigaction(),
// sigprocmask(), raise().
void on_sigsys(int, siginfo_t* info, void*) {
  if (g_reporter != nullptr) g_reporter(info->si_code == SYS_SECCOMP ? info->si_syscall : 0);
  // The filter forbids installing a SIGSYS action, so this sigaction() traps
  // again; SIGSYS being blocked in its own handler, the kernel then restores
  // the default action and kills us with SIGSYS. Without a filter loaded the
  // call succeeds and raise() below does it.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGSYS, &dfl, nullptr);
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGSYS);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(SIGSYS);
  ::_exit(128 + SIGSYS);
}

Status install_handler(ViolationReporter reporter) {
  g_reporter = reporter;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  ::sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return errno_fail("seccomp", "sigaction(SIGSYS)");
  return Status::Ok();
}

// ---- the filter --------------------------------------------------------------

Status rc_fail(const std::string& what, int rc) { return errno_fail("seccomp", what, -rc); }

// One rule for `name` (a syscall this libseccomp or architecture does not
// know is skipped: it simply stays denied).
Status add_rule(scmp_filter_ctx ctx, std::uint32_t action, const char* name,
                std::initializer_list<scmp_arg_cmp> args = {}) {
  const int nr = ::seccomp_syscall_resolve_name(name);
  if (nr < 0) return Status::Ok();
  const int rc =
      ::seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.begin());
  if (rc < 0) return rc_fail(std::string("seccomp_rule_add(") + name + ")", rc);
  return Status::Ok();
}

Status allow_all(scmp_filter_ctx ctx, const char* const* names, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i)
    FERRY_RETURN_IF_ERROR(add_rule(ctx, SCMP_ACT_ALLOW, names[i]));
  return Status::Ok();
}

// Threads only: clone with CLONE_THREAD and no new namespace. clone3 cannot
// be filtered (its flags are in memory): ENOSYS makes glibc fall back to clone.
Status add_threads(scmp_filter_ctx ctx) {
  const scmp_arg_cmp thread_only{0, SCMP_CMP_MASKED_EQ, CLONE_THREAD | kNewNamespaces,
                                 CLONE_THREAD};
  FERRY_RETURN_IF_ERROR(add_rule(ctx, SCMP_ACT_ALLOW, "clone", {thread_only}));
  return add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3");
}

// Signal actions for anything but SIGSYS (reading SIGSYS's is fine); signals
// to this process only (abort() and raise() use tgkill on ourselves).
Status add_signals(scmp_filter_ctx ctx) {
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (sig != SIGSYS)
      FERRY_RETURN_IF_ERROR(add_rule(ctx, SCMP_ACT_ALLOW, "rt_sigaction", {arg_is(0, sig)}));
  }
  const scmp_arg_cmp no_new_action{1, SCMP_CMP_EQ, 0, 0};
  FERRY_RETURN_IF_ERROR(
      add_rule(ctx, SCMP_ACT_ALLOW, "rt_sigaction", {arg_is(0, SIGSYS), no_new_action}));
  const auto self = static_cast<std::uint32_t>(::getpid());
  FERRY_RETURN_IF_ERROR(add_rule(ctx, SCMP_ACT_ALLOW, "tgkill", {arg_is(0, self)}));
  return add_rule(ctx, SCMP_ACT_ALLOW, "kill", {arg_is(0, self)});
}

// ioctl, fcntl and prctl with harmless requests; prlimit64 reading our own
// limits; socketpair of AF_UNIX sockets.
Status add_requests(scmp_filter_ctx ctx) {
  for (unsigned long req : kIoctls)
    FERRY_RETURN_IF_ERROR(
        add_rule(ctx, SCMP_ACT_ALLOW, "ioctl", {arg_is(1, static_cast<std::uint32_t>(req))}));
  for (int cmd : kFcntls)
    FERRY_RETURN_IF_ERROR(
        add_rule(ctx, SCMP_ACT_ALLOW, "fcntl", {arg_is(1, static_cast<std::uint32_t>(cmd))}));
  for (int opt : kPrctls)
    FERRY_RETURN_IF_ERROR(
        add_rule(ctx, SCMP_ACT_ALLOW, "prctl", {arg_is(0, static_cast<std::uint32_t>(opt))}));
  const scmp_arg_cmp read_only{2, SCMP_CMP_EQ, 0, 0};
  FERRY_RETURN_IF_ERROR(add_rule(ctx, SCMP_ACT_ALLOW, "prlimit64", {arg_is(0, 0), read_only}));
  return add_rule(ctx, SCMP_ACT_ALLOW, "socketpair", {arg_is(0, AF_UNIX)});
}

Status set_attributes(scmp_filter_ctx ctx) {
  // Another ABI (int 0x80, x32) is not a violation to report: just die.
  if (const int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc < 0)
    return rc_fail("seccomp_attr_set(ACT_BADARCH)", rc);
  // Every thread, including any the plugin started while loading.
  if (const int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); rc < 0)
    return rc_fail("seccomp_attr_set(CTL_TSYNC)", rc);
  return Status::Ok();
}

Status build_and_load(scmp_filter_ctx ctx, const Spec& spec) {
  FERRY_RETURN_IF_ERROR(set_attributes(ctx));
  FERRY_RETURN_IF_ERROR(allow_all(ctx, kAllowed, std::size(kAllowed)));
  if (spec.network) FERRY_RETURN_IF_ERROR(allow_all(ctx, kNetwork, std::size(kNetwork)));
  FERRY_RETURN_IF_ERROR(add_threads(ctx));
  FERRY_RETURN_IF_ERROR(add_signals(ctx));
  FERRY_RETURN_IF_ERROR(add_requests(ctx));
  if (const int rc = ::seccomp_load(ctx); rc < 0) return rc_fail("seccomp_load", rc);
  return Status::Ok();
}

}  // namespace

bool seccomp_available() {
  return ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 && ::seccomp_api_get() >= 3;
}

Status apply_seccomp(const Spec& spec, ViolationReporter reporter, Notes* skipped) {
  if (!seccomp_available())
    return lacking(spec, skipped, "seccomp",
                   "the kernel offers no seccomp filters with TSYNC and KILL_PROCESS");
  FERRY_RETURN_IF_ERROR(install_handler(reporter));
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) return step_fail("seccomp", "seccomp_init failed");
  const Status status = build_and_load(ctx, spec);
  ::seccomp_release(ctx);
  return status;
}

}  // namespace ferry::sandbox
