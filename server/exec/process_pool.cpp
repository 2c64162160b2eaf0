#include "exec/process_pool.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/text.hpp"
#include "plugins/registry.hpp"
#include "worker/spec.hpp"

namespace ferry {
namespace {

constexpr std::size_t kMaxLoggedFailure = 512;

std::uint64_t rss_kb(int pid) {
  char path[64], buf[128];
  std::snprintf(path, sizeof path, "/proc/%d/statm", pid);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long long size = 0, resident = 0;
  std::sscanf(buf, "%llu %llu", &size, &resident);
  return resident * std::uint64_t(sysconf(_SC_PAGESIZE)) / 1024;
}

const char* state_name(int s) {
  static const char* const names[] = {"empty", "backoff", "spawning", "starting", "idle", "busy", "retiring"};
  return names[s];
}

}  // namespace

ProcessPool::ProcessPool(Options opt, loop::Reactor& reactor, CompletionSink& sink, Launcher& launcher,
                         const Clock& clock)
    : opt_(std::move(opt)),
      reactor_(reactor),
      sink_(sink),
      launcher_(launcher),
      clock_(clock),
      id_(reactor.add(this)),
      queue_(opt_.cfg->workers + opt_.cfg->queue_limit),
      workers_(std::size_t(opt_.cfg->workers)) {
  for (std::uint16_t i = 0; i < workers_.size(); ++i) spawn(i);
}

ProcessPool::~ProcessPool() { stop(); }  // stop() also leaves the reactor

// Starts worker i: clone3 and the spec message happen on the spawning thread
// while the loop carries on (state spawning); on_spawned() takes over on the
// loop when opt_.post delivers the result.
void ProcessPool::spawn(std::uint16_t i) {
  Worker& w = workers_[i];
  const Backoff backoff = w.backoff;
  const std::uint32_t generation = w.spawn_gen + 1;
  w = Worker{};
  w.backoff = backoff;
  w.spawn_gen = generation;
  w.spawned_ms = clock_.now_ms();
  w.state = State::spawning;
  std::weak_ptr<int> alive = alive_;
  auto post = opt_.post;
  Launcher* launcher = &launcher_;
  WorkerSpec spec{opt_.plugin_path, opt_.cfg->sandbox, std::uint32_t(opt_.max_call_depth)};
  spec.settings = {{opt_.plugin, opt_.settings}};
  launcher_.spawn_async(spec.sandbox, encode_worker_spec(spec),
                        [this, alive, post, launcher, i, generation](Result<SpawnedWorker> proc) {
                          post([this, alive, launcher, i, generation, proc = std::move(proc)]() mutable {
                            if (alive.expired()) {  // its pool is gone
                              if (proc.ok()) launcher->kill_and_reap(&proc.value());
                              return;
                            }
                            on_spawned(i, generation, std::move(proc));
                          });
                        });
}

void ProcessPool::on_spawned(std::uint16_t i, std::uint32_t generation, Result<SpawnedWorker> proc) {
  Worker& w = workers_[i];
  if (stopping_ || w.spawn_gen != generation) {
    if (proc.ok()) launcher_.kill_and_reap(&proc.value());
    return;
  }
  if (!proc.ok()) {
    spdlog::error("plugin {}: cannot spawn a worker: {}", opt_.plugin, proc.status().message());
    w.backoff.failed();
    if (ending_all_) return w.state = State::empty, check_ended();
    return schedule_respawn(i);
  }
  w.proc = *proc;
  w.state = State::starting;
  auto& ring = reactor_.ring();
  ring.poll_multishot(w.proc.channel, loop::Reactor::tag(id_, kChannel, i));
  ring.poll_once(w.proc.pidfd, loop::Reactor::tag(id_, kExit, i));
  start_log(i);
  if (ending_all_) end_worker(i);  // its init gets its fini too
}

void ProcessPool::on_io(std::uint8_t sub, std::uint16_t i, const io_uring_cqe& cqe) {
  if (i >= workers_.size()) return;
  Worker& w = workers_[i];
  switch (sub) {
    case kChannel: return on_channel(i, cqe);
    case kChannelMore: return on_channel(i, cqe, true);
    case kStdout: case kStderr: case kStdoutMore: case kStderrMore: return on_output(i, sub, cqe);
    case kLogSummary:
      if (cqe.res == -ETIME) on_log_summary(i);  // not -ECANCELED: that worker is gone
      return;
    case kExit: return on_exit(i);
    case kRespawn:
      if (!stopping_ && !ending_all_ && w.state == State::backoff) spawn(i);
      return;
    case kKill:
      if (cqe.res == -ETIME) on_kill_timer(i);
      return;
    case kEndGrace: return on_end_grace(i);
    case kExitSummary:
      if (cqe.res == -ETIME) on_exit_summary();
      return;
    default: return;
  }
}

void ProcessPool::on_message(std::uint16_t i, const channel::Header& h, std::string& body) {
  Worker& w = workers_[i];
  switch (h.type) {
    case channel::Type::ready:
      if (w.ending || w.exited) return;  // ended while it started: it reads EOF next
      return on_ready(w, body), dispatch();
    case channel::Type::reply: return on_reply(i, h, body);
    case channel::Type::log: return on_log(i, h, body);
    case channel::Type::partial: return on_partial(i, h, body);
    // A dying worker's last words: anything after them gets it killed.
    case channel::Type::violation: w.violation = int(h.code); return kill_worker(w);
    case channel::Type::fatal: w.fatal_signal = int(h.code); return kill_worker(w);
    case channel::Type::failed:
      if (w.state != State::starting) break;
      w.failure = printable(body.substr(0, kMaxLoggedFailure));
      spdlog::error("plugin {}: worker {} failed to start: {}", opt_.plugin, w.proc.pid, w.failure);
      return kill_worker(w);
    default: break;
  }
  spdlog::error("plugin {}: worker {} sent an unexpected message (type {})", opt_.plugin, w.proc.pid, int(h.type));
  kill_worker(w);
}

void ProcessPool::on_ready(Worker& w, const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (w.state != State::starting || j.is_discarded() || !j.contains("functions") ||
      j["functions"] != nlohmann::json(opt_.functions)) {
    spdlog::error("plugin {}: worker {} loaded a different plugin than ferryd did", opt_.plugin, w.proc.pid);
    return kill_worker(w);
  }
  w.state = State::idle;
  w.backoff.succeeded();
  spdlog::debug("plugin {}: worker {} ready in {} ms", opt_.plugin, w.proc.pid, clock_.now_ms() - w.spawned_ms);
}

void ProcessPool::on_reply(std::uint16_t i, const channel::Header& h, std::string& body) {
  Worker& w = workers_[i];
  if (!answers_running(w, h)) {
    spdlog::error("plugin {}: worker {} sent an unexpected reply", opt_.plugin, w.proc.pid);
    return kill_worker(w);
  }
  answer_running(i, h, body);
  if (!w.exited && !w.calls_in.empty() && w.calls_in.front().cancel_code != FERRY_OK) arm_kill(i);  // it skips that one
  after_call(i);
}

// Recycles a worker that served its quota or grew too big once its calls
// are answered (it takes no more meanwhile). New work comes from
// read_channel()'s dispatch(), once per wake-up.
void ProcessPool::after_call(std::uint16_t i) {
  Worker& w = workers_[i];
  if (w.exited) return;  // its pid may be another process's now
  const auto& cfg = *opt_.cfg;
  if (cfg.max_rss_mb != 0 && w.drain_why.empty()) {
    const std::uint64_t kb = rss_kb(w.proc.pid);
    if (kb > cfg.max_rss_mb * 1024) {
      w.drain_why = "RSS " + std::to_string(kb / 1024) + " MB over max_rss_mb " + std::to_string(cfg.max_rss_mb);
    }
  }
  if (!w.drain_why.empty() && w.calls_in.empty() && !w.killed && !w.ending) retire(i, w.drain_why);
}

void ProcessPool::retire(std::uint16_t i, const std::string& why) {
  note_recycle(i, why);
  end_worker(i);  // replaced once it exited
}

void ProcessPool::kill_worker(Worker& w) {
  if (w.exited) return;  // gone already: whatever it sent last is only read
  w.killed = true;
  launcher_.kill(w.proc);
}

void ProcessPool::on_exit(std::uint16_t i) {
  Worker& w = workers_[i];
  const std::optional<WorkerExit> exit = launcher_.try_reap(w.proc);
  if (!exit) {  // not gone after all (a spurious wake-up): keep watching
    if (w.proc.pidfd >= 0) reactor_.ring().poll_once(w.proc.pidfd, loop::Reactor::tag(id_, kExit, i));
    return;
  }
  read_replies_at_exit(i);
  if (w.kill_seq == 0 && !w.calls_in.empty()) w.cancel_code = w.calls_in.front().cancel_code;
  finish_log(i);  // its last words first
  note_worker_exit(i, *exit);
  fail_or_requeue(i, exit->how, exit->status);
  const bool started = w.state != State::starting;
  if (!started) w.backoff.failed();
  reactor_.ring().cancel(loop::Reactor::tag(id_, kChannel, i), loop::Reactor::tag(id_, kIgnore, i));
  if (w.ending) reactor_.ring().timeout_remove(loop::Reactor::tag(id_, kEndGrace, i), loop::Reactor::tag(id_, kIgnore, i));
  close(w.proc.channel);
  close(w.proc.pidfd);
  w.proc = SpawnedWorker{};
  w.state = State::empty;
  if (ending_all_) return check_ended();
  dispatch();  // the calls put back, to the other workers
  if (stopping_ || (retiring_ && queue_.empty())) return;
  ++restarts_;
  if (started) return spawn(i), void();
  schedule_respawn(i);
}

// A dead worker's channel may still hold what it sent before it died: all
// of it is read (a dead peer's queue is bounded by its socket buffer) and
// handled as if it lived, but with no window for partials, so a call it
// finished gets its partials and then its reply, in order, and its death is
// blamed on the call it was running when it died, not on one it had finished.
void ProcessPool::read_replies_at_exit(std::uint16_t i) {
  Worker& w = workers_[i];
  w.exited = true;
  channel::Header h;
  std::string body;
  while (w.proc.channel >= 0) {
    const Result<channel::Received> got = channel::recv(w.proc.channel, &h, &body, kMaxReply, false);
    if (!got.ok() || *got != channel::Received::message) return;
    on_message(i, h, body);
  }
}

// A dead worker's calls: the one it was running gets the error its death
// means; the ones behind it never started, so they go back to the front of
// the queue in their order, or are answered now if they were cancelled
// meanwhile. None runs twice: if ferryd killed it for a call that returned
// after all, the call after that one had probably started, so it fails too.
void ProcessPool::fail_or_requeue(std::uint16_t i, int how, int status) {
  Worker& w = workers_[i];
  if (!w.calls_in.empty()) {
    InFlight& front = w.calls_in.front();
    if (w.kill_seq == 0 || front.seq == w.kill_seq) {
      finish(front.job, death_code(w, how, status), death_message(w, how, status));
    } else {
      finish(front.job, front.cancel_code != FERRY_OK ? front.cancel_code : FERRY_E_WORKER_CRASHED,
             "the worker was killed as this call started: the call before it returned too late");
    }
    pop_call(i);
  }
  for (auto it = w.calls_in.rbegin(); it != w.calls_in.rend(); ++it) {
    if (it->cancel_code != FERRY_OK) {
      finish(it->job, it->cancel_code, "cancelled before it started");
    } else {
      it->job.started_ns = 0;
      queue_.requeue(std::move(it->job));
    }
  }
  in_flight_ -= int(w.calls_in.size());
  w.calls_in.clear();
  w.bytes_in = 0;
}

// Crash-loop guard (Backoff): 100 ms, 200 ms, ... up to 30 s between start attempts.
void ProcessPool::schedule_respawn(std::uint16_t i) {
  Worker& w = workers_[i];
  const std::int64_t delay = std::max<std::int64_t>(w.backoff.delay_ms(), Backoff::kFirstMs);
  if (w.backoff.crash_loop()) {
    spdlog::error("plugin {}: crash loop: {} start failures in a row, next attempt in {} ms{}{}", opt_.plugin,
                  w.backoff.failures(), delay, w.failure.empty() ? "" : "; last error: ", w.failure);
  }
  w.state = State::backoff;
  w.respawn_ts = loop::at_ms(clock_.now_ms() + delay);
  reactor_.ring().timeout_at(&w.respawn_ts, loop::Reactor::tag(id_, kRespawn, i));
}

ferry_code ProcessPool::death_code(const Worker& w, int how, int status) const {
  if (w.cancel_code != FERRY_OK) return w.cancel_code;
  if (w.violation >= 0) return FERRY_E_SANDBOX_VIOLATION;
  if (how != CLD_EXITED && status == SIGSYS) return FERRY_E_SANDBOX_VIOLATION;
  return FERRY_E_WORKER_CRASHED;
}

std::string ProcessPool::death_message(const Worker& w, int how, int status) const {
  if (w.cancel_code == FERRY_E_TIMEOUT) return "deadline passed; the worker running the call was killed";
  if (w.cancel_code != FERRY_OK) return "cancelled; the worker running the call was killed";
  if (w.violation >= 0) {
    return "sandbox violation: syscall " + sandbox::syscall_name(w.violation) + " is not allowed";
  }
  if (w.fatal_signal != 0) how = CLD_KILLED, status = w.fatal_signal;
  if (how == CLD_EXITED) return "worker exited with status " + std::to_string(status);
  std::string sig = sigabbrev_np(status) != nullptr ? sigabbrev_np(status) : std::to_string(status);
  return "worker crashed: SIG" + sig + " (" + strsignal(status) + ")";
}

// `ran_ns`: how long the worker says the call ran (0: unknown), so its time
// waiting in the worker's pipeline counts as queued, not running.
void ProcessPool::finish(Job& job, ferry_code code, std::string data, std::int64_t ran_ns) {
  ++completed_;
  Completion c{job.ref, code, std::move(data)};
  c.finished_ns = clock_.now_ns();
  c.started_ns = job.started_ns;
  if (ran_ns > 0 && job.started_ns != 0) c.started_ns = std::max(job.started_ns, c.finished_ns - ran_ns);
  sink_.complete(std::move(c));
}

ExecutorStats ProcessPool::stats() const {
  ExecutorStats st{.workers = int(workers_.size()), .queued = queue_.size(),
                   .queued_by_priority = {queue_.size_at(0), queue_.size_at(1), queue_.size_at(2)},
                   .running = busy(), .completed = completed_, .stuck = 0, .restarts = restarts_, .procs = {}};
  st.exits = exit_counts_;
  for (const auto& w : workers_) {
    st.procs.push_back(WorkerInfo{w.proc.pid, state_name(int(w.state)), w.calls,
                                  w.proc.pid > 0 ? rss_kb(w.proc.pid) : 0, w.backoff.failures(), w.failure});
  }
  return st;
}

}  // namespace ferry
