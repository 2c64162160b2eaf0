// Fixture "hostile": each function tries one thing a sandboxed worker must not
// get away with (or a crash the host must survive); ok() is the follow-up call
// that shows a fresh worker serves again.
//   connect_tcp(port)  -> true once connected to 127.0.0.1:port
//   read_file(path)    -> the file's contents
//   write_file(path)   -> bytes written ("hostile\n")
//   fork_bomb()        -> how many of 10000 fork()s succeeded (children exit at once)
//   alloc_gib(n)       -> n, after touching every page of n GiB
//   spin()             -> never returns
//   ptrace_parent()    -> 0 once attached to the parent
//   exec_shell()       -> does not return when /bin/sh runs
//   kill_init()        -> 0 once kill(1, SIGKILL) was accepted
//   segfault(), abort_now()
//   flood(mb)          -> mb, after writing mb MiB to stdout and to stderr
//   ok()               -> true
//   pid()              -> getpid()
// Refusals: EACCES/EPERM -> permission_denied, other errors -> plugin_error.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ferry/plugin.hpp>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kGiB = std::size_t{1} << 30;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kPage = 4096;

// The error for a failed `what`, from errno.
ferry::Error refused(const std::string& what) {
  const int err = errno;
  const ferry_code code =
      (err == EACCES || err == EPERM) ? FERRY_E_PERMISSION_DENIED : FERRY_E_PLUGIN_ERROR;
  return ferry::Error(code, what + ": " + std::strerror(err));
}

bool connect_tcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw refused("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  errno = err;
  if (rc != 0) throw refused("connect 127.0.0.1:" + std::to_string(port));
  return true;
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw refused("open " + path);
  std::string out;
  char buf[64 * 1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  const int err = errno;
  ::close(fd);
  errno = err;
  if (n < 0) throw refused("read " + path);
  return out;
}

std::int64_t write_file(const std::string& path) {
  static constexpr char kText[] = "hostile\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw refused("open " + path);
  const ssize_t n = ::write(fd, kText, sizeof kText - 1);
  const int err = errno;
  ::close(fd);
  errno = err;
  if (n < 0) throw refused("write " + path);
  return n;
}

// Children are reaped only at the end, so they count against RLIMIT_NPROC
// together; only our own pids are waited for (the host may have children).
int fork_bomb() {
  std::vector<pid_t> children;
  for (int i = 0; i < 10000; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid > 0) children.push_back(pid);
  }
  for (const pid_t pid : children) ::waitpid(pid, nullptr, 0);
  return static_cast<int>(children.size());
}

int alloc_gib(int n) {
  std::vector<std::unique_ptr<char[]>> blocks;
  try {
    for (int i = 0; i < n; ++i) {
      blocks.emplace_back(new char[kGiB]);
      char* block = blocks.back().get();
      for (std::size_t off = 0; off < kGiB; off += kPage)
        static_cast<volatile char*>(block)[off] = 1;
    }
  } catch (const std::bad_alloc&) {
    blocks.clear();
    throw;  // the SDK answers out_of_memory
  }
  return n;
}

bool spin() {
  volatile std::uint64_t turns = 0;
  for (;;) turns = turns + 1;
}

long ptrace_parent() {
  if (::ptrace(PTRACE_ATTACH, ::getppid(), nullptr, nullptr) != 0)
    throw refused("ptrace(PTRACE_ATTACH, parent)");
  return 0;
}

bool exec_shell() {
  ::execl("/bin/sh", "sh", "-c", "exit 0", static_cast<char*>(nullptr));
  throw refused("execl /bin/sh");
}

int kill_init() {
  if (::kill(1, SIGKILL) != 0) throw refused("kill(1, SIGKILL)");
  return 0;
}

bool segfault() {
  // An address the compiler cannot see is null, so this is a real SIGSEGV
  // (a visible null store may be compiled into a trap instruction).
  volatile std::uintptr_t address = 8;
  *reinterpret_cast<volatile int*>(address) = 1;
  return false;
}

bool abort_now() { std::abort(); }

void write_all(int fd, std::int64_t mb) {
  const std::string chunk(kMiB, 'x');
  for (std::int64_t i = 0; i < mb; ++i) {
    for (std::size_t off = 0; off < chunk.size();) {
      const ssize_t n = ::write(fd, chunk.data() + off, chunk.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw refused("write fd " + std::to_string(fd));
      off += static_cast<std::size_t>(n);
    }
  }
}

std::int64_t flood(std::int64_t mb) {
  write_all(STDOUT_FILENO, mb);
  write_all(STDERR_FILENO, mb);
  return mb;
}

}  // namespace

FERRY_PLUGIN("hostile", "1.0.0") {
  plugin.def("connect_tcp", connect_tcp);
  plugin.def("read_file", read_file);
  plugin.def("write_file", write_file);
  plugin.def("fork_bomb", fork_bomb);
  plugin.def("alloc_gib", alloc_gib);
  plugin.def("spin", spin);
  plugin.def("ptrace_parent", ptrace_parent);
  plugin.def("exec_shell", exec_shell);
  plugin.def("kill_init", kill_init);
  plugin.def("segfault", segfault);
  plugin.def("abort_now", abort_now);
  plugin.def("flood", flood);
  plugin.def("ok", [] { return true; });
  plugin.def("pid", [] { return static_cast<std::int64_t>(::getpid()); });
  // Leaks n MiB of touched memory: what max_rss_mb recycling is for.
  plugin.def("leak_mb", [](std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
      auto* block = static_cast<char*>(std::malloc(1 << 20));
      if (block == nullptr) throw std::bad_alloc();
      std::memset(block, 1, 1 << 20);
    }
    return n;
  });
  // Drawn once per process: tells worker processes apart (each is pid 1 of its namespace).
  plugin.def("token", [] {
    static const std::uint64_t token = [] {
      std::uint64_t v = 0;
      if (::getrandom(&v, sizeof v, 0) != sizeof v) v = std::uint64_t(::getpid());
      return v;
    }();
    return std::to_string(token);
  });
}
