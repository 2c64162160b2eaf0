#include "worker/spawn.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "worker/channel.hpp"

namespace ferry {
namespace {

// Child side of clone3: async-signal-safe raw syscalls only, then exec.
// In a new user namespace it first waits (`go`) until the host has written
// its id maps, then becomes root of the namespace: execve() keeps the
// namespace capabilities only for a process that is root in it. glibc's
// set*id wrappers are not used: after a raw clone3 they would try to reach
// the parent's other threads.
[[noreturn]] void exec_child(int go, int go_writer, int channel, const char* path, char* const argv[]) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // before waiting: ferryd may die meanwhile
  if (go >= 0) {
    close(go_writer);  // so that ferryd's death reads as EOF
    char byte;
    if (read(go, &byte, 1) != 1) _exit(125);  // the host gave up on this worker
    if (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0) _exit(124);
    syscall(SYS_setgroups, 0, nullptr);  // EPERM where setgroups is denied: nothing to drop
  }
  if ((channel == 3 ? fcntl(3, F_SETFD, 0) : dup2(channel, 3)) < 0) _exit(126);  // fd 3, kept across exec
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // ferryd blocks SIGINT/SIGTERM
  signal(SIGPIPE, SIG_DFL);                  // ferryd ignores it; exec would keep that
  char* const envp[] = {nullptr};
  execve(path, argv, envp);
  _exit(127);
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::string spawn_worker(const std::string& worker_path, const sandbox::Spec& spec,
                         SpawnedWorker* out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return errno_text("socketpair");
  int go[2] = {-1, -1};
  const bool userns = spec.enabled && (sandbox::clone_flags(spec) & CLONE_NEWUSER) != 0;
  if (userns && pipe2(go, O_CLOEXEC) != 0) {
    close(sv[0]);
    close(sv[1]);
    return errno_text("pipe2");
  }
  std::string arg0 = "ferry-worker";
  char* const argv[] = {arg0.data(), nullptr};
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | (spec.enabled ? sandbox::clone_flags(spec) : 0);
  args.pidfd = std::uint64_t(reinterpret_cast<std::uintptr_t>(&pidfd));
  args.exit_signal = SIGCHLD;
  const long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) exec_child(go[0], go[1], sv[1], worker_path.c_str(), argv);
  const int clone_errno = errno;
  close(sv[1]);
  if (go[0] >= 0) close(go[0]);
  if (pid < 0) {
    close(sv[0]);
    if (go[1] >= 0) close(go[1]);
    errno = clone_errno;
    return errno_text("clone3");
  }
  *out = SpawnedWorker{pid_t(pid), pidfd, sv[0]};
  if (!userns) return {};
  const bool root = geteuid() == 0;  // root's workers run as nobody outside
  auto st = sandbox::write_id_maps(int(pid), root ? 65534 : geteuid(), root ? 65534 : getegid());
  if (st.ok() && write(go[1], "g", 1) != 1) st = Status::Errno("spawn: write go");
  close(go[1]);  // unwritten: the child exits 125
  return st.ok() ? std::string() : st.message();
}

std::string encode_worker_spec(const std::string& plugin_path, const sandbox::Spec& s,
                               std::uint32_t max_call_depth) {
  return nlohmann::json{{"plugin", plugin_path},
                        {"max_call_depth", max_call_depth},
                        {"enabled", s.enabled},
                        {"network", s.network},
                        {"read_paths", s.read_paths},
                        {"write_paths", s.write_paths},
                        {"memory_mb", s.memory_mb},
                        {"cpu_seconds", s.cpu_seconds},
                        {"max_files", s.max_files},
                        {"max_procs", s.max_procs},
                        {"seccomp", s.seccomp},
                        {"allow_weaker", s.allow_weaker}}
      .dump();
}

bool decode_worker_spec(const std::string& json, std::string* plugin_path, sandbox::Spec* s,
                        std::uint32_t* max_call_depth) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  try {
    *plugin_path = j.at("plugin").get<std::string>();
    if (max_call_depth != nullptr) *max_call_depth = j.value("max_call_depth", std::uint32_t(64));
    s->enabled = j.at("enabled").get<bool>();
    s->network = j.at("network").get<bool>();
    s->read_paths = j.at("read_paths").get<std::vector<std::string>>();
    s->write_paths = j.at("write_paths").get<std::vector<std::string>>();
    s->memory_mb = j.at("memory_mb").get<std::uint64_t>();
    s->cpu_seconds = j.at("cpu_seconds").get<std::uint64_t>();
    s->max_files = j.at("max_files").get<std::uint64_t>();
    s->max_procs = j.at("max_procs").get<std::uint64_t>();
    s->seccomp = j.at("seccomp").get<bool>();
    s->allow_weaker = j.at("allow_weaker").get<bool>();
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  return true;
}

std::string default_worker_path() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / "ferry-worker").string();
}

namespace {

// The spawning thread: requests in order, one at a time.
class Spawner {
 public:
  using Job = std::function<void()>;
  Spawner() : thread_([this] { run(); }) {}
  ~Spawner() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void submit(Job job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  void wait_idle() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return jobs_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return quit_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // quit_, nothing left
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      busy_ = true;
      lock.unlock();
      job();
      job = nullptr;
      lock.lock();
      busy_ = false;
      if (jobs_.empty()) idle_cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Job> jobs_;
  bool busy_ = false;
  bool quit_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

Spawner& spawner() {
  static Spawner s;
  return s;
}

}  // namespace

void wait_for_spawns() { spawner().wait_idle(); }

void spawn_worker_async(std::string worker_path, sandbox::Spec spec, std::string first_message,
                        std::function<void(SpawnedWorker, std::string)> done) {
  spawner().submit([worker_path = std::move(worker_path), spec = std::move(spec),
                  first_message = std::move(first_message), done = std::move(done)] {
    SpawnedWorker w;
    std::string err = spawn_worker(worker_path, spec, &w);
    if (err.empty() && w.channel >= 0) {
      fcntl(w.channel, F_SETFL, O_NONBLOCK);
      const int rc = channel::send(w.channel, channel::Header{channel::Type::spec}, first_message);
      if (rc != 0) err = std::string("sending the spec: ") + std::strerror(-rc);
    }
    done(w, std::move(err));
  });
}

}  // namespace ferry
