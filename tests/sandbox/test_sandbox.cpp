// Sandbox tests with real processes. Each case forks a child (this process is
// single-threaded then), which enters fresh namespaces the way a worker is
// spawned, applies the sandbox steps and tries things. It reports
// "key=value" messages over a SOCK_SEQPACKET socketpair; the same socket is
// the seccomp report fd, so a violation arrives there as a channel::Header.
// The parent asserts on the messages and on how the child ended.
// Each case is its own ctest test (CMakeLists.txt): a case needing a feature
// the kernel lacks exits 77 (ctest: skipped), and the other cases still run.
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "worker/channel.hpp"
#include "sandbox/sandbox.hpp"

namespace sb = ferry::sandbox;
using ferry::channel::Header;

namespace {

constexpr int kSkip = 77;  // SKIP_RETURN_CODE of every ferry test

// The child's report socket: the seccomp reporter sends a channel::Header
// {violation, syscall} there, as a worker does to the host.
int g_report_fd = -1;
void report_violation(int nr) {
  Header h{ferry::channel::Type::violation};
  h.code = static_cast<std::uint32_t>(nr);
  ::send(g_report_fd, &h, sizeof h, MSG_DONTWAIT | MSG_NOSIGNAL);
}
sb::ViolationReporter reporter_to(int fd) {
  g_report_fd = fd;
  return report_violation;
}
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;  // ASan cannot honour RLIMIT_AS: its shadow is terabytes
#else
constexpr bool kAsan = false;
#endif

// What a case needs of the kernel (sb::probe() names what is missing).
enum Need : unsigned { kUserNs = 1, kLandlock = 2, kSeccomp = 4, kAll = kUserNs | kLandlock | kSeccomp };

// Exits 77 with the reason when this kernel lacks what the case needs. Only
// this case's process ends: ctest runs every case in a process of its own.
const sb::Features& require_kernel_features(unsigned need) {
  static const sb::Features features = sb::probe();
  std::string lacking;
  if ((need & kUserNs) != 0 && !features.user_ns) lacking += " user namespaces";
  if ((need & kLandlock) != 0 && !features.landlock) lacking += " Landlock";
  if ((need & kSeccomp) != 0 && !features.seccomp) lacking += " seccomp";
  if (lacking.empty()) return features;
  std::fprintf(stderr, "SKIP: this kernel lacks%s (probe: %s)\n", lacking.c_str(), features.missing.c_str());
  std::exit(kSkip);
}

// Exits 77 when this process already runs inside a user namespace (a rootless
// container, say): then no child can be "outside" one.
void require_initial_user_namespace() {
  std::ifstream map("/proc/self/uid_map");
  unsigned long inside = 1, outside = 1, count = 0;
  map >> inside >> outside >> count;
  if (inside == 0 && outside == 0 && count == 4294967295UL) return;
  std::fprintf(stderr, "SKIP: this test already runs inside a user namespace\n");
  std::exit(kSkip);
}

// ---- child side: nothing here may use Catch or return into it ---------------

// One "key=value" message to the parent. Allocates nothing, so it works
// under a tight RLIMIT_AS.
void put(int fd, const char* key, const char* value) {
  char buf[1024];
  const int n = std::snprintf(buf, sizeof buf, "%s=%s", key, value);
  ::send(fd, buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1), MSG_NOSIGNAL);
}

void put(int fd, const char* key, const std::string& value) { put(fd, key, value.c_str()); }

// "ok" for a successful call, else the name of errno (e.g. "EACCES").
const char* outcome(long rc) { return rc >= 0 ? "ok" : ::strerrorname_np(errno); }

// "ok:<first bytes>" or the errno name.
std::string try_read(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return outcome(-1);
  char buf[64] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  const std::string result =
      n < 0 ? outcome(-1) : std::string("ok:") + std::string(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return result;
}

std::string try_write(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return outcome(-1);
  const ssize_t n = ::write(fd, text.data(), text.size());
  const std::string result = outcome(n);
  ::close(fd);
  return result;
}

const char* try_connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return outcome(-1);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const char* result = outcome(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
  ::close(fd);
  return result;
}

// Catch's fatal-signal handlers must not run in a child.
void reset_signals() {
  for (int sig = 1; sig < 32; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
}

// The namespaces clone_flags() gives a worker, minus the pid namespace
// (unshare(CLONE_NEWPID) moves only children, and forbids threads after it),
// with root mapped onto our own uid and gid.
bool enter_worker_namespaces(int fd, const sb::Spec& spec) {
  const uid_t uid = ::getuid();
  const gid_t gid = ::getgid();
  const int flags = static_cast<int>(sb::clone_flags(spec) & ~std::uint64_t{CLONE_NEWPID});
  if (::unshare(flags) != 0) {
    put(fd, "setup", std::string("unshare: ") + std::strerror(errno));
    return false;
  }
  const sb::Status st = sb::write_id_maps(::getpid(), uid, gid);
  if (!st.ok()) put(fd, "setup", st.message());
  return st.ok();
}

// Blocks until the parent's Responder answers the last message.
bool wait_for_parent(int fd) {
  char go = 0;
  return ::recv(fd, &go, 1, 0) == 1;
}

bool report(int fd, const sb::Status& st, const char* key) {
  put(fd, key, st.ok() ? std::string("ok") : st.message());
  return st.ok();
}

// Namespaces + apply_before_load(keep_fd = fd); "setup=ok" or the failure.
bool setup_before_load(int fd, const sb::Spec& spec) {
  if (!enter_worker_namespaces(fd, spec)) return false;
  return report(fd, sb::apply_before_load(spec, fd), "setup");
}

// Everything a worker applies, with fd as the seccomp report fd.
bool setup_sandbox(int fd, const sb::Spec& spec) {
  if (!setup_before_load(fd, spec)) return false;
  return report(fd, sb::apply_after_load(spec, "", reporter_to(fd)), "after_load");
}

// ---- parent side --------------------------------------------------------------

// How a child ended and what it said.
struct Outcome {
  int status = -1;
  bool timed_out = false;
  std::map<std::string, std::string> values;
  std::optional<Header> violation;

  std::string operator[](const std::string& key) const {
    const auto it = values.find(key);
    return it == values.end() ? "<not sent>" : it->second;
  }
  bool exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
  std::string describe() const {
    std::string s = timed_out ? "timed out; " : "";
    if (WIFEXITED(status)) s += "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) s += std::string("signal ") + ::sigabbrev_np(WTERMSIG(status));
    for (const auto& [k, v] : values) s += "\n  " + k + "=" + v;
    if (violation) s += "\n  violation: " + sb::syscall_name(static_cast<int>(violation->code));
    return s;
  }
};

void take_message(Outcome& out, const char* buf, std::size_t n) {
  Header h{};
  if (n == sizeof h) std::memcpy(&h, buf, sizeof h);
  if (n == sizeof h && h.type == ferry::channel::Type::violation) {
    out.violation = h;
    return;
  }
  const std::string msg(buf, n);
  const auto eq = msg.find('=');
  out.values[msg.substr(0, eq)] = eq == std::string::npos ? "" : msg.substr(eq + 1);
}

// Lets the parent answer a child's "key=value" message (on `fd`).
using Responder = std::function<void(int fd, pid_t child, const std::string& key)>;

// Reads messages until the child closes its end, then reaps it.
Outcome collect(int fd, pid_t pid, std::chrono::seconds limit, const Responder& respond) {
  Outcome out;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
      out.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    take_message(out, buf, static_cast<std::size_t>(n));
    const std::string msg(buf, static_cast<std::size_t>(n));
    if (respond && msg.find('=') != std::string::npos)
      respond(fd, pid, msg.substr(0, msg.find('=')));
  }
  while (::waitpid(pid, &out.status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

// Runs body(fd) in a forked child that then _exit(0)s.
Outcome run_child(const std::function<void(int)>& body, const Responder& respond = {},
                  std::chrono::seconds limit = std::chrono::seconds(60)) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(sv[0]);
    reset_signals();
    int code = 0;
    try {
      body(sv[1]);
    } catch (...) {
      put(sv[1], "exception", "thrown");
      code = 98;
    }
    ::_exit(code);
  }
  ::close(sv[1]);
  Outcome out = collect(sv[0], pid, limit, respond);
  ::close(sv[0]);
  return out;
}

// A spec for tests: memory unlimited (ASan reserves terabytes of address space).
sb::Spec test_spec() {
  sb::Spec spec;
  spec.memory_mb = 0;
  return spec;
}

// A private directory under /tmp, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/ferry-sandbox-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A TCP listener on 127.0.0.1 in this (the host's) network namespace.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd); }
};

// A field of /proc/<pid>/status, as this (the initial) namespace sees it,
// whitespace collapsed: "Uid" -> "65534 65534 65534 65534".
std::string proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream words(line.substr(field.size() + 1));
    std::string out, word;
    while (words >> word) out += (out.empty() ? "" : " ") + word;
    return out;
  }
  return "<no " + field + ">";
}

std::string limit_text(int resource) {
  rlimit r{};
  ::getrlimit(resource, &r);
  auto text = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("inf") : std::to_string(v); };
  return text(r.rlim_cur) + "/" + text(r.rlim_max);
}

}  // namespace

TEST_CASE("clone_flags follow the spec", "[sandbox]") {
  sb::Spec spec;
  const std::uint64_t all =
      CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWUTS;
  CHECK(sb::clone_flags(spec) == all);
  spec.network = true;
  CHECK(sb::clone_flags(spec) == (all & ~std::uint64_t{CLONE_NEWNET}));
  spec.enabled = false;
  CHECK(sb::clone_flags(spec) == 0);
}

TEST_CASE("syscall_name names this architecture's syscalls", "[sandbox]") {
  CHECK(sb::syscall_name(SYS_socket) == "socket");
  CHECK(sb::syscall_name(SYS_clone) == "clone");
  CHECK(sb::syscall_name(100000) == "#100000");
}

TEST_CASE("apply_before_load: root of the namespace, /dev/null stdin, stdout and stderr kept, fds closed, "
          "no privileges",
          "[sandbox]") {
  require_kernel_features(kUserNs);
  const int stray = ::open("/dev/zero", O_RDONLY);  // inherited, not close-on-exec
  REQUIRE(stray >= 0);
  const Outcome out = run_child([&](int fd) {
    sb::Spec spec = test_spec();
    if (!enter_worker_namespaces(fd, spec)) return;
    struct stat before[3] = {};
    for (int i = 1; i <= 2; ++i) ::fstat(i, &before[i]);
    sb::Notes skipped;
    if (!report(fd, sb::apply_before_load(spec, fd, &skipped), "setup")) return;
    put(fd, "skipped", std::to_string(skipped.size()));
    put(fd, "ids",
        std::to_string(::getuid()) + "," + std::to_string(::geteuid()) + "," +
            std::to_string(::getgid()));
    char host[64] = {};
    ::gethostname(host, sizeof host - 1);
    put(fd, "hostname", host);
    struct stat st {};
    std::string stdio;
    stdio += (::fstat(0, &st) == 0 && st.st_rdev == ::makedev(1, 3)) ? "null " : "other ";
    for (int i = 1; i <= 2; ++i) {  // the launcher's pipes in a worker: left alone
      const bool same = ::fstat(i, &st) == 0 && st.st_ino == before[i].st_ino && st.st_dev == before[i].st_dev;
      stdio += same ? "kept " : "changed ";
    }
    put(fd, "stdio", stdio);
    put(fd, "stray_fd", outcome(::fcntl(stray, F_GETFD)));
    put(fd, "no_new_privs", std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
    put(fd, "dumpable", std::to_string(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)));
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2] = {};
    ::syscall(SYS_capget, &header, caps);
    put(fd, "caps",
        std::to_string(caps[0].effective | caps[1].effective | caps[0].permitted |
                       caps[1].permitted));
  });
  ::close(stray);
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  CHECK(out.exited(0));
  CHECK(out["skipped"] == "0");
  CHECK(out["ids"] == "0,0,0");
  CHECK(out["hostname"] == "ferry-worker");
  CHECK(out["stdio"] == "null kept kept ");
  CHECK(out["stray_fd"] == "EBADF");
  CHECK(out["no_new_privs"] == "1");
  CHECK(out["dumpable"] == "0");
  CHECK(out["caps"] == "0");
}

TEST_CASE("rlimits: from the spec, soft == hard, and a 2 GiB malloc fails under memory_mb = 256",
          "[sandbox]") {
  require_kernel_features(kUserNs);
  const Outcome out = run_child([](int fd) {
    sb::Spec spec;
    spec.memory_mb = 256;
    spec.cpu_seconds = 7;
    spec.max_files = 100;
    spec.max_procs = 50;
    if (!setup_before_load(fd, spec)) return;
    put(fd, "AS", limit_text(RLIMIT_AS));
    put(fd, "CPU", limit_text(RLIMIT_CPU));
    put(fd, "NOFILE", limit_text(RLIMIT_NOFILE));
    put(fd, "NPROC", limit_text(RLIMIT_NPROC));
    put(fd, "CORE", limit_text(RLIMIT_CORE));
    if (kAsan) return;  // ASan's allocator aborts instead of returning null
    void* volatile big = std::malloc(std::size_t{2} << 30);
    put(fd, "malloc_2g", big == nullptr ? "null" : "allocated");
    void* volatile small = std::malloc(std::size_t{1} << 20);
    put(fd, "malloc_1m", small == nullptr ? "null" : "allocated");
    std::free(big);
    std::free(small);
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  CHECK(out.exited(0));
  CHECK(out["AS"] == (kAsan ? "inf/inf" : "268435456/268435456"));  // ASan: no AS limit
  CHECK(out["CPU"] == "7/7");
  CHECK(out["NOFILE"] == "100/100");
  CHECK(out["NPROC"] == "50/50");
  CHECK(out["CORE"] == "0/0");
  if (kAsan) {
    WARN("ASan build: the 2 GiB malloc under RLIMIT_AS is not tried");
  } else {
    CHECK(out["malloc_2g"] == "null");
    CHECK(out["malloc_1m"] == "allocated");
  }
}

TEST_CASE("RLIMIT_CPU ends a spinning worker", "[sandbox]") {
  require_kernel_features(kAll);
  const Outcome out = run_child([](int fd) {
    sb::Spec spec = test_spec();
    spec.cpu_seconds = 1;
    if (!setup_sandbox(fd, spec)) return;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    volatile std::uint64_t turns = 0;
    while (std::chrono::steady_clock::now() < give_up) turns = turns + 1;
    put(fd, "survived", "20 s of spinning");
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  CHECK((out.killed_by(SIGXCPU) || out.killed_by(SIGKILL)));
  CHECK_FALSE(out.violation);
}

TEST_CASE("landlock: system files and read_paths readable, write_paths writable, nothing else",
          "[sandbox]") {
  require_kernel_features(kAll);
  TempDir dir;
  std::filesystem::create_directory(dir.path / "ro");
  std::filesystem::create_directory(dir.path / "rw");
  write_text(dir / "ro/in.txt", "inside");
  write_text(dir / "secret.txt", "secret");
  const Outcome out = run_child([&](int fd) {
    sb::Spec spec = test_spec();
    spec.read_paths = {dir / "ro"};
    spec.write_paths = {dir / "rw"};
    if (!setup_before_load(fd, spec)) return;
    put(fd, "before_secret", try_read(dir / "secret.txt"));
    put(fd, "before_shadow", try_read("/etc/shadow").substr(0, 2));  // not its contents
    if (!report(fd, sb::apply_after_load(spec, "", reporter_to(fd)), "after_load")) return;
    put(fd, "shadow", try_read("/etc/shadow").substr(0, 6));
    put(fd, "secret", try_read(dir / "secret.txt"));
    put(fd, "ro_read", try_read(dir / "ro/in.txt"));
    put(fd, "ro_write", try_write(dir / "ro/new.txt", "x"));
    put(fd, "outside_write", try_write(dir / "new.txt", "x"));
    put(fd, "tmp_write", try_write("/tmp/ferry-sandbox-escape.txt", "x"));
    put(fd, "rw_write", try_write(dir / "rw/out.txt", "hostile"));
    put(fd, "rw_read", try_read(dir / "rw/out.txt"));
    put(fd, "rw_mkdir", outcome(::mkdir((dir / "rw/sub").c_str(), 0755)));
    put(fd, "ld_cache", try_read("/etc/ld.so.cache").substr(0, 3));
    put(fd, "etc_hostname", try_read("/etc/hostname"));
    put(fd, "proc", try_read("/proc/self/status"));
    DIR* usr = ::opendir("/usr/lib");
    put(fd, "usr_lib_dir", usr != nullptr ? "ok" : outcome(-1));
    if (usr != nullptr) ::closedir(usr);
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  REQUIRE(out["after_load"] == "ok");
  CHECK(out.exited(0));
  CHECK(out["before_secret"] == "ok:secret");  // so the denials below are Landlock's
  CHECK(out["shadow"] == "EACCES");
  CHECK(out["secret"] == "EACCES");
  CHECK(out["ro_read"] == "ok:inside");
  CHECK(out["ro_write"] == "EACCES");
  CHECK(out["outside_write"] == "EACCES");
  CHECK(out["tmp_write"] == "EACCES");
  CHECK(out["rw_write"] == "ok");
  CHECK(out["rw_read"] == "ok:hostile");
  CHECK(out["rw_mkdir"] == "ok");
  CHECK(out["ld_cache"] == "ok:");
  CHECK(out["etc_hostname"] == "EACCES");
  CHECK(out["proc"] == "EACCES");
  CHECK(out["usr_lib_dir"] == "ok");
  CHECK_FALSE(std::filesystem::exists(dir.path / "ro/new.txt"));
  CHECK_FALSE(std::filesystem::exists("/tmp/ferry-sandbox-escape.txt"));
}

TEST_CASE("seccomp: a forbidden syscall kills by SIGSYS and is reported by name", "[sandbox]") {
  require_kernel_features(kAll);
  struct Case {
    const char* expected;
    std::function<void()> attempt;
  };
  const std::vector<Case> cases = {
      {"socket", [] { ::socket(AF_INET, SOCK_STREAM, 0); }},
      {"clone", [] { ::fork(); }},  // glibc's fork() is clone without CLONE_THREAD
      {"execve", [] { ::execl("/bin/sh", "sh", "-c", "exit 0", static_cast<char*>(nullptr)); }},
      {"ptrace", [] { ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); }},
      {"kill", [] { ::kill(::getppid(), 0); }},
      {"tgkill", [] { ::syscall(SYS_tgkill, ::getppid(), ::getppid(), 0); }},
      {"unshare", [] { ::unshare(CLONE_NEWNET); }},
      {"mount", [] { ::mount("none", "/tmp", "tmpfs", 0, nullptr); }},
      {"rt_sigaction",
       [] {
         struct sigaction sa {};
         sa.sa_handler = SIG_IGN;
         ::sigaction(SIGSYS, &sa, nullptr);
       }},
      {"rt_sigaction",
       [] {  // SIGSYS in the low half, junk in the high half
         struct sigaction sa {};
         ::syscall(SYS_rt_sigaction, (1ULL << 32) | SIGSYS, &sa, nullptr, 8);
       }},
      {"personality", [] { ::personality(0xffffffff); }},
      {"bpf", [] { ::syscall(SYS_bpf, 0, nullptr, 0); }},
      {"io_uring_setup", [] { ::syscall(SYS_io_uring_setup, 1, nullptr); }},
      {"prctl", [] { ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }},
      {"ioctl", [] { ::ioctl(0, TIOCSTI, "x"); }},
      {"chmod", [] { ::chmod("/nonexistent/ferry-sandbox", 0600); }},
  };
  for (const Case& c : cases) {
    const Outcome out = run_child([&](int fd) {
      if (!setup_sandbox(fd, test_spec())) return;
      c.attempt();
      put(fd, "survived", "yes");
    });
    INFO("expected a violation by " << c.expected << "; " << out.describe());
    REQUIRE(out["setup"] == "ok");
    REQUIRE(out["after_load"] == "ok");
    CHECK(out.killed_by(SIGSYS));
    CHECK(out["survived"] == "<not sent>");
    REQUIRE(out.violation);
    CHECK(out.violation->type == ferry::channel::Type::violation);
    CHECK(out.violation->body_len == 0);
    CHECK(sb::syscall_name(static_cast<int>(out.violation->code)) == c.expected);
  }
}

TEST_CASE("seccomp: threads, memfd, time, randomness, dlopen and exceptions still work",
          "[sandbox]") {
  require_kernel_features(kAll);
  const Outcome out = run_child([](int fd) {
    if (!setup_sandbox(fd, test_spec())) return;
    std::atomic<int> ran{0};
    std::mutex mu;
    std::vector<std::string> names;
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::lock_guard lock(mu);
        names.push_back("thread " + std::to_string(i));
        ran.fetch_add(1);
      });
    }
    for (auto& t : threads) t.join();
    put(fd, "threads", std::to_string(ran.load()));
    put(fd, "clone3", outcome(::syscall(SYS_clone3, nullptr, 0)));

    const int mfd = ::memfd_create("payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    bool memfd_ok = mfd >= 0 && ::ftruncate(mfd, 1 << 20) == 0;
    void* map = memfd_ok ? ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0)
                         : MAP_FAILED;
    memfd_ok = memfd_ok && map != MAP_FAILED;
    if (memfd_ok) std::memset(map, 7, 1 << 20), ::munmap(map, 1 << 20);
    memfd_ok =
        memfd_ok && ::fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0;
    put(fd, "memfd", memfd_ok ? "ok" : outcome(-1));
    if (mfd >= 0) ::close(mfd);

    timespec ts{};
    put(fd, "clock", outcome(::clock_gettime(CLOCK_MONOTONIC, &ts)));
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    put(fd, "localtime", ::localtime_r(&now, &local) != nullptr ? "ok" : "failed");
    char random[16];
    put(fd, "getrandom", outcome(::getrandom(random, sizeof random, 0)));
    put(fd, "cpus", std::thread::hardware_concurrency() > 0 ? "ok" : "0");
    void* lib = ::dlopen("libresolv.so.2", RTLD_NOW | RTLD_LOCAL);
    put(fd, "dlopen", lib != nullptr ? "ok" : ::dlerror());
    try {
      throw std::runtime_error("caught");
    } catch (const std::exception& e) {
      put(fd, "exception", e.what());
    }
    std::printf("a sandboxed printf\n");  // to the test's stdout: a worker's is a pipe to ferryd
    put(fd, "stdio", outcome(std::fflush(stdout) == 0 ? 0 : -1));
    put(fd, "kill_self", outcome(::kill(::getpid(), 0)));
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  REQUIRE(out["after_load"] == "ok");
  CHECK(out.exited(0));
  CHECK_FALSE(out.violation);
  CHECK(out["threads"] == "4");
  CHECK(out["clone3"] == "ENOSYS");
  CHECK(out["memfd"] == "ok");
  CHECK(out["clock"] == "ok");
  CHECK(out["localtime"] == "ok");
  CHECK(out["getrandom"] == "ok");
  CHECK(out["cpus"] == "ok");
  CHECK(out["dlopen"] == "ok");
  CHECK(out["exception"] == "caught");
  CHECK(out["stdio"] == "ok");
  CHECK(out["kill_self"] == "ok");
}

TEST_CASE("seccomp: abort() still ends the worker by SIGABRT, not as a violation", "[sandbox]") {
  require_kernel_features(kAll);
  const Outcome out = run_child([](int fd) {
    if (!setup_sandbox(fd, test_spec())) return;
    std::abort();
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  CHECK(out.killed_by(SIGABRT));
  CHECK_FALSE(out.violation);
}

TEST_CASE("network namespace: no route to the host's 127.0.0.1", "[sandbox]") {
  const sb::Features& features = require_kernel_features(kUserNs | kLandlock);
  Listener listener;
  REQUIRE(std::string(try_connect(listener.port)) == "ok");  // reachable from here
  const Outcome out = run_child([&](int fd) {
    sb::Spec spec = test_spec();
    spec.seccomp = false;  // so that connect() is tried, not trapped
    if (!setup_before_load(fd, spec)) return;
    put(fd, "netns_connect", try_connect(listener.port));
    if (!report(fd, sb::apply_after_load(spec, "", reporter_to(fd)), "after_load")) return;
    put(fd, "landlock_connect", try_connect(listener.port));
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  REQUIRE(out["after_load"] == "ok");
  CHECK(out.exited(0));
  CHECK(out["netns_connect"] == "ENETUNREACH");
  if (features.landlock_abi >= 4) CHECK(out["landlock_connect"] == "EACCES");
}

TEST_CASE("network = true: no network namespace and sockets allowed", "[sandbox]") {
  require_kernel_features(kAll);
  Listener listener;
  const Outcome out = run_child([&](int fd) {
    sb::Spec spec = test_spec();
    spec.network = true;
    if (!setup_sandbox(fd, spec)) return;
    put(fd, "connect", try_connect(listener.port));
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  REQUIRE(out["after_load"] == "ok");
  CHECK(out.exited(0));
  CHECK_FALSE(out.violation);
  CHECK(out["connect"] == "ok");
}

TEST_CASE("write_id_maps by a root host: the worker is 65534 outside, without groups",
          "[sandbox]") {
  require_kernel_features(kUserNs);
  if (::geteuid() != 0) {
    WARN("not root: the id maps a root ferryd writes are not tried");
    return;
  }
  std::string maps = "<not written>", uid, gid, groups;
  const Outcome out = run_child(
      [](int fd) {
        const auto flags = sb::clone_flags(test_spec()) & ~std::uint64_t{CLONE_NEWPID};
        if (::unshare(static_cast<int>(flags)) != 0) return put(fd, "setup", outcome(-1));
        put(fd, "unshared", "yes");
        if (!wait_for_parent(fd)) return;  // the host writes our maps
        if (!report(fd, sb::apply_before_load(test_spec(), fd), "setup")) return;
        put(fd, "ids", std::to_string(::getuid()) + "," + std::to_string(::getgid()));
        put(fd, "groups", std::to_string(::getgroups(0, nullptr)));
        put(fd, "applied", "yes");
        wait_for_parent(fd);  // the host reads our /proc status
      },
      [&](int fd, pid_t child, const std::string& key) {
        if (key == "unshared") {
          const sb::Status st = sb::write_id_maps(child, 65534, 65534);
          maps = st.ok() ? "ok" : st.message();
        } else if (key == "applied") {
          uid = proc_status(child, "Uid");
          gid = proc_status(child, "Gid");
          groups = proc_status(child, "Groups");
        } else {
          return;
        }
        ::send(fd, "g", 1, MSG_NOSIGNAL);
      });
  INFO(out.describe());
  CHECK(maps == "ok");
  REQUIRE(out["setup"] == "ok");
  CHECK(out.exited(0));
  CHECK(out["ids"] == "0,0");
  CHECK(out["groups"] == "0");
  CHECK(uid == "65534 65534 65534 65534");
  CHECK(gid == "65534 65534 65534 65534");
  CHECK(groups.empty());
}

TEST_CASE("outside a user namespace: refused, or a note with allow_weaker", "[sandbox]") {
  require_initial_user_namespace();
  for (const bool weaker : {false, true}) {
    const Outcome out = run_child([&](int fd) {
      sb::Spec spec = test_spec();
      spec.allow_weaker = weaker;
      sb::Notes skipped;
      const sb::Status st = sb::apply_before_load(spec, fd, &skipped);  // no unshare first
      put(fd, "status", st.ok() ? std::string("ok") : st.message());
      put(fd, "skipped", skipped.empty() ? std::string() : skipped.front());
    });
    INFO("allow_weaker=" << weaker << "; " << out.describe());
    CHECK(out.exited(0));
    if (weaker) {
      CHECK(out["status"] == "ok");
      CHECK_THAT(out["skipped"],
                 Catch::StartsWith("user namespace skipped: not in a user namespace"));
    } else {
      CHECK_THAT(out["status"], Catch::StartsWith("user namespace: not in a user namespace"));
      CHECK(out["skipped"].empty());
    }
  }
}

TEST_CASE("apply_after_load refuses while a second thread runs", "[sandbox]") {
  require_kernel_features(kUserNs);
  const Outcome out = run_child([](int fd) {
    if (!setup_before_load(fd, test_spec())) return;
    int hold[2];
    if (::pipe(hold) != 0) return;
    std::thread waiter([&] {
      char c;
      (void)::read(hold[0], &c, 1);
    });
    const sb::Status st = sb::apply_after_load(test_spec(), "", reporter_to(fd));
    ::close(hold[1]);
    waiter.join();
    put(fd, "status", st.ok() ? std::string("ok") : st.message());
  });
  INFO(out.describe());
  REQUIRE(out["setup"] == "ok");
  CHECK(out.exited(0));
  CHECK_THAT(out["status"], Catch::StartsWith("landlock: 2 threads running"));
}
