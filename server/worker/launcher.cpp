#include "worker/launcher.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>
#include <utility>

#include "worker/channel.hpp"

namespace ferry {
namespace {

// What the child needs of the host's descriptors (all close-on-exec).
struct ChildFds {
  int go = -1, go_writer = -1;  // the user-namespace handshake, or -1
  int null = -1;                // /dev/null, for fd 0
  int out = -1, err = -1;       // write ends of the stdout and stderr pipes
  int channel = -1;             // the worker's end of the channel, for fd 3
  // Closes every one of them that is open.
  void close_all() {
    for (int* fd : {&go, &go_writer, &null, &out, &err, &channel}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }
};

// fds 0-3 of the worker, kept across exec: each source is first copied above
// them (close-on-exec), so no dup2 overwrites a source still to be placed.
bool place_fds(const ChildFds& f) {
  const int sources[4] = {f.null, f.out, f.err, f.channel};
  int high[4];
  for (int i = 0; i < 4; ++i) {
    if ((high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, 4)) < 0) return false;
  }
  for (int i = 0; i < 4; ++i) {
    if (dup2(high[i], i) < 0) return false;
  }
  return true;
}

// Child side of clone3: async-signal-safe raw syscalls only, then exec.
// In a new user namespace it first waits (`go`) until the host has written
// its id maps, then becomes root of the namespace: execve() keeps the
// namespace capabilities only for a process that is root in it. glibc's
// set*id wrappers are not used: after a raw clone3 they would try to reach
// the parent's other threads.
[[noreturn]] void exec_child(const ChildFds& fds, const char* path, char* const argv[]) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // before waiting: ferryd may die meanwhile
  if (fds.go >= 0) {
    close(fds.go_writer);  // so that ferryd's death reads as EOF
    char byte;
    if (read(fds.go, &byte, 1) != 1) _exit(125);  // the host gave up on this worker
    if (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0) _exit(124);
    syscall(SYS_setgroups, 0, nullptr);  // EPERM where setgroups is denied: nothing to drop
    prctl(PR_SET_PDEATHSIG, SIGKILL);    // again: changing credentials cleared it (commit_creds)
  }
  if (!place_fds(fds)) _exit(126);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // ferryd blocks SIGINT/SIGTERM
  signal(SIGPIPE, SIG_DFL);                  // ferryd ignores it; exec would keep that
  char* const envp[] = {nullptr};
  execve(path, argv, envp);
  _exit(127);
}

// Reaps a worker that was sent SIGKILL, and closes its fds.
void reap(SpawnedWorker* w) {
  if (w->pidfd >= 0) {
    siginfo_t si{};
    while (waitid(P_PIDFD, id_t(w->pidfd), &si, WEXITED) != 0 && errno == EINTR) {
    }
    close(w->pidfd);
  }
  for (const int fd : {w->channel, w->out, w->err}) {
    if (fd >= 0) close(fd);
  }
  *w = SpawnedWorker{};
}

int pidfd_kill(int pidfd) { return int(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0)); }

// After clone3, in a new user namespace: the id maps, then `go`.
Status release_child(pid_t pid, int go_writer) {
  const bool root = geteuid() == 0;  // root's workers run as nobody outside
  Status st = sandbox::write_id_maps(int(pid), root ? 65534 : geteuid(), root ? 65534 : getegid());
  if (st.ok() && write(go_writer, "g", 1) != 1) st = Status::Errno("spawn: write go");
  close(go_writer);  // unwritten: the child exits 125
  return st;
}

// The descriptors a child gets, and the host's ends of them in *w: the
// channel and the read ends of the output pipes (non-blocking; the write
// ends stay blocking, so a worker that prints waits for ferryd to read).
Status make_fds(bool userns, ChildFds* c, SpawnedWorker* w) {
  int sv[2], out[2], err[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Status::Errno("socketpair");
  w->channel = sv[0], c->channel = sv[1];
  if (pipe2(out, O_CLOEXEC) != 0) return Status::Errno("pipe2");
  w->out = out[0], c->out = out[1];
  if (pipe2(err, O_CLOEXEC) != 0) return Status::Errno("pipe2");
  w->err = err[0], c->err = err[1];
  if ((c->null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) return Status::Errno("open /dev/null");
  int go[2];
  if (userns && pipe2(go, O_CLOEXEC) != 0) return Status::Errno("pipe2");
  if (userns) c->go = go[0], c->go_writer = go[1];
  fcntl(w->out, F_SETFL, O_NONBLOCK);
  fcntl(w->err, F_SETFL, O_NONBLOCK);
  return Status::Ok();
}

// clone3 + exec of `worker_path`: /dev/null, the output pipes and the
// channel on its fds 0-3.
Result<SpawnedWorker> clone_worker(const std::string& worker_path, const sandbox::Spec& spec) {
  const bool userns = spec.enabled && (sandbox::clone_flags(spec) & CLONE_NEWUSER) != 0;
  ChildFds child;
  SpawnedWorker w;
  if (const Status st = make_fds(userns, &child, &w); !st.ok()) {
    child.close_all();
    reap(&w);  // nothing to wait for: closes the host's ends
    return st;
  }
  std::string arg0 = "ferry-worker";
  char* const argv[] = {arg0.data(), nullptr};
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | (spec.enabled ? sandbox::clone_flags(spec) : 0);
  args.pidfd = std::uint64_t(reinterpret_cast<std::uintptr_t>(&pidfd));
  args.exit_signal = SIGCHLD;
  const long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) exec_child(child, worker_path.c_str(), argv);
  const Status clone_failed = Status::Errno("clone3");
  const int go_writer = std::exchange(child.go_writer, -1);
  child.close_all();  // the child's now
  if (pid < 0) {
    if (go_writer >= 0) close(go_writer);
    reap(&w);
    return clone_failed;
  }
  w.pid = pid_t(pid);
  w.pidfd = pidfd;
  if (const Status st = userns ? release_child(w.pid, go_writer) : Status::Ok(); !st.ok()) {
    pidfd_kill(w.pidfd);
    reap(&w);
    return st;
  }
  return w;
}

// The spawning thread: requests in order, one at a time.
class SpawnThread {
 public:
  using Task = std::function<void()>;
  SpawnThread() : thread_([this] { run(); }) {}
  ~SpawnThread() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void submit(Task task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  void wait_idle() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return tasks_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return quit_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // quit_, nothing left
      Task task = std::move(tasks_.front());
      tasks_.pop_front();
      busy_ = true;
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
      busy_ = false;
      if (tasks_.empty()) idle_cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Task> tasks_;
  bool busy_ = false;
  bool quit_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

class ProcessLauncher final : public Launcher {
 public:
  explicit ProcessLauncher(std::string worker_path) : worker_path_(std::move(worker_path)) {}

  Result<SpawnedWorker> spawn(const sandbox::Spec& spec, std::string_view first_message) override {
    Result<SpawnedWorker> w = clone_worker(worker_path_, spec);
    if (!w.ok()) return w;
    fcntl(w->channel, F_SETFL, O_NONBLOCK);
    if (const Status sent = channel::send(w->channel, channel::Header{channel::Type::spec}, first_message);
        !sent.ok()) {
      kill_and_reap(&w.value());
      return sent.with_context("sending the spec");
    }
    return w;
  }

  void spawn_async(sandbox::Spec spec, std::string first_message,
                   std::function<void(Result<SpawnedWorker>)> done) override {
    spawner_.submit([this, spec = std::move(spec), message = std::move(first_message), done = std::move(done)] {
      done(spawn(spec, message));
    });
  }

  void wait_idle() override { spawner_.wait_idle(); }

  void kill(const SpawnedWorker& w) override {
    if (w.pidfd >= 0) pidfd_kill(w.pidfd);
  }

  std::optional<WorkerExit> try_reap(const SpawnedWorker& w) override {
    siginfo_t si{};
    if (w.pidfd < 0 || waitid(P_PIDFD, id_t(w.pidfd), &si, WEXITED | WNOHANG) != 0 || si.si_pid == 0) {
      return std::nullopt;
    }
    return WorkerExit{si.si_code, si.si_status};
  }

  void kill_and_reap(SpawnedWorker* w) override {
    kill(*w);
    reap(w);
  }

 private:
  const std::string worker_path_;
  SpawnThread spawner_;  // last: its thread may run spawn() once started
};

// Polls the workers' pidfds until every one is readable (the worker exited)
// or `ms` passed. Returns, per worker, whether it exited (no pidfd: yes).
std::vector<bool> wait_exits(std::span<SpawnedWorker* const> workers, int ms) {
  std::vector<bool> exited(workers.size(), true);
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;  // fds[k] is workers[index[k]]
  for (std::size_t i = 0; i < workers.size(); ++i) {
    if (workers[i]->pidfd < 0) continue;
    fds.push_back(pollfd{workers[i]->pidfd, POLLIN, 0});
    index.push_back(i);
    exited[i] = false;
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!fds.empty()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    const int n = poll(fds.data(), fds.size(), int(std::max<std::int64_t>(left.count(), 0)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // time is up (or poll failed: stop waiting)
    for (std::size_t k = fds.size(); k-- > 0;) {
      if (fds[k].revents == 0) continue;
      exited[index[k]] = true;
      fds.erase(fds.begin() + std::ptrdiff_t(k));
      index.erase(index.begin() + std::ptrdiff_t(k));
    }
  }
  return exited;
}

}  // namespace

void Launcher::end(const SpawnedWorker& w) {
  if (w.channel >= 0) shutdown(w.channel, SHUT_WR);
}

int Launcher::reap_within(std::span<SpawnedWorker* const> workers, int grace_ms) {
  const std::vector<bool> exited = wait_exits(workers, grace_ms);
  int killed = 0;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    killed += exited[i] ? 0 : 1;
    kill_and_reap(workers[i]);  // SIGKILL to one that exited is harmless
  }
  return killed;
}

Result<std::unique_ptr<Launcher>> make_process_launcher(std::string worker_path) {
  try {
    return std::unique_ptr<Launcher>(std::make_unique<ProcessLauncher>(std::move(worker_path)));
  } catch (const std::system_error& e) {
    return Status::Error(std::string("the spawning thread: ") + e.what());
  }
}

// In the build tree ferry-worker sits next to ferryd; installed, it is in
// libexec (FERRY_WORKER_FROM_BINDIR, relative to bin/, so a prefix can move).
std::string default_worker_path() {
  std::error_code ec;
  const auto dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  const auto beside = dir / "ferry-worker";
  if (std::filesystem::exists(beside, ec)) return beside.string();
  const auto installed = (dir / FERRY_WORKER_FROM_BINDIR).lexically_normal();
  return std::filesystem::exists(installed, ec) ? installed.string() : beside.string();
}

}  // namespace ferry
