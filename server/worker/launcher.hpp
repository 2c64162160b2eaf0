// Starts, signals and reaps ferry-worker processes: the one place ferryd
// touches worker processes as processes (clone3, pidfd_send_signal, waitid).
// The process pool and the loader are given a Launcher, so tests can inject
// faults. Implementations are thread-safe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.hpp"
#include "sandbox/sandbox.hpp"

namespace ferry {

struct SpawnedWorker {
  pid_t pid = -1;
  int pidfd = -1;    // for supervision: readable once the worker exited
  int channel = -1;  // host end of the SOCK_SEQPACKET channel (non-blocking)
  int out = -1;      // read ends of the pipes on the worker's fds 1 and 2
  int err = -1;      // (non-blocking): what the plugin prints; -1 if none
};

// How a worker ended, as waitid() tells it.
struct WorkerExit {
  int how = 0;     // CLD_EXITED, CLD_KILLED or CLD_DUMPED
  int status = 0;  // the exit status, or the signal
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Spawns a worker into `spec`'s sandbox with /dev/null on fd 0, pipes to
  // the caller on fds 1 and 2 (stdout, stderr: read them while the worker
  // lives, as a full pipe blocks it and a closed one kills it by SIGPIPE)
  // and its channel on fd 3, and sends it `first_message` (its spec). Blocking (clone3 with new namespaces takes
  // milliseconds). The worker's PDEATHSIG is tied to the calling thread: call
  // it from a thread that lives as long as the worker should.
  virtual Result<SpawnedWorker> spawn(const sandbox::Spec& spec, std::string_view first_message) = 0;
  // spawn() on the launcher's spawning thread, which lives as long as the
  // launcher; `done` runs there with the outcome.
  virtual void spawn_async(sandbox::Spec spec, std::string first_message,
                           std::function<void(Result<SpawnedWorker>)> done) = 0;
  // Returns once every spawn_async() so far is done (its `done` returned).
  virtual void wait_idle() = 0;
  // SIGKILL; harmless when the worker is gone already.
  virtual void kill(const SpawnedWorker& w) = 0;
  // How the worker ended, once it has; nullopt while it runs. Never blocks.
  virtual std::optional<WorkerExit> try_reap(const SpawnedWorker& w) = 0;
  // Kills the worker, waits for its end and closes its fds (*w is reset).
  virtual void kill_and_reap(SpawnedWorker* w) = 0;

  // Asks the worker to end normally: ferryd stops sending on its channel, so
  // the worker reads EOF, runs its plugin's shutdown hook and exits 0. It may
  // still send (log lines). Harmless on a worker that is gone.
  virtual void end(const SpawnedWorker& w);
  // Waits up to `grace_ms` for the workers to exit (all at once, e.g. after
  // end()), then kills those still running, and reaps every one through
  // kill_and_reap (each *w is reset). Returns how many had to be killed.
  // Blocking: not for the loop thread.
  virtual int reap_within(std::span<SpawnedWorker* const> workers, int grace_ms);
};

// The real thing: clone3 into the sandbox's namespaces, then execve() of
// `worker_path` at once (no code of the multithreaded host runs in the child
// beyond async-signal-safe setup). Fails when its spawning thread cannot start.
Result<std::unique_ptr<Launcher>> make_process_launcher(std::string worker_path);

// The ferry-worker executable of the running ferryd: next to it (the build
// tree), else in the installed layout, <prefix>/libexec/ferry/ferry-worker
// beside <prefix>/bin/ferryd. When neither exists, the first (spawning then
// fails naming it).
std::string default_worker_path();

}  // namespace ferry
