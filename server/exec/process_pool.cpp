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

bool ProcessPool::submit(Job&& job) {
  if (stopping_ || !queue_.admit(std::move(job), busy())) return false;
  dispatch();
  return true;
}

int ProcessPool::busy() const {
  return int(std::count_if(workers_.begin(), workers_.end(),
                           [](const Worker& w) { return w.state == State::busy; }));
}

void ProcessPool::dispatch() {
  for (std::uint16_t i = 0; i < workers_.size() && !queue_.empty(); ++i) {
    if (workers_[i].state != State::idle || workers_[i].killed || workers_[i].ending) continue;
    Job job;
    while (queue_.pop(&job)) {
      if (job.deadline_ms == 0 || clock_.now_ms() < job.deadline_ms) break;
      finish(job, FERRY_E_TIMEOUT, "deadline passed before the call started");
      job.fn.reset();
    }
    if (job.fn) start_call(i, std::move(job));
  }
}

void ProcessPool::start_call(std::uint16_t i, Job&& job) {
  Worker& w = workers_[i];
  const auto& names = opt_.functions;
  const auto it = std::lower_bound(names.begin(), names.end(), job.fn->name);
  channel::Header h{channel::Type::call, job.stream ? channel::kFlagPartials : 0, ++w.calls, job.deadline_ms,
                    std::uint32_t(it - names.begin())};
  w.credit = job.stream ? make_credit(i) : nullptr;
  w.partials = w.partial_bytes = 0;
  w.partial_chunks.clear();
  job.started_ns = clock_.now_ns();
  const Status sent = channel::send(w.proc.channel, h, job.payload);
  w.call.emplace(std::move(job));
  w.state = State::busy;
  if (!sent.ok()) {
    spdlog::error("plugin {}: worker {}: {}", opt_.plugin, w.proc.pid, sent.message());
    return kill_worker(w);  // the exit handler answers the call
  }
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
      if (cqe.res == -ETIME) on_kill_timer(i);  // not -ECANCELED: the call returned in time
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
      if (w.ending) return;  // ended while it started: it reads EOF next
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
  if (w.state != State::busy || h.id != w.calls || h.code >= FERRY_CODE_COUNT) {
    spdlog::error("plugin {}: worker {} sent an unexpected reply", opt_.plugin, w.proc.pid);
    return kill_worker(w);
  }
  if (w.cancel_code != FERRY_OK) {  // it stopped in time: keep the worker
    reactor_.ring().cancel(loop::Reactor::tag(id_, kKill, i), loop::Reactor::tag(id_, kIgnore, i));
    finish(*w.call, w.cancel_code, "cancelled; the call returned");
    w.cancel_code = FERRY_OK;
  } else {
    finish(*w.call, ferry_code(h.code), std::move(body));
  }
  w.call.reset();
  w.credit.reset();
  w.state = State::idle;
  after_call(i);
}

// Recycles a worker that served its quota or grew too big, else gives it work.
void ProcessPool::after_call(std::uint16_t i) {
  Worker& w = workers_[i];
  const auto& cfg = *opt_.cfg;
  if (cfg.max_calls_per_worker != 0 && w.calls >= cfg.max_calls_per_worker) {
    return retire(i, "served " + std::to_string(w.calls) + " calls (max_calls_per_worker)");
  }
  if (cfg.max_rss_mb != 0) {
    const std::uint64_t kb = rss_kb(w.proc.pid);
    if (kb > cfg.max_rss_mb * 1024) {
      return retire(i, "RSS " + std::to_string(kb / 1024) + " MB over max_rss_mb " + std::to_string(cfg.max_rss_mb));
    }
  }
  dispatch();
}

void ProcessPool::retire(std::uint16_t i, const std::string& why) {
  note_recycle(i, why);
  end_worker(i);  // replaced once it exited
}

void ProcessPool::kill_worker(Worker& w) {
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
  finish_log(i);  // its last words first
  note_worker_exit(i, *exit);
  if (w.call) {
    finish(*w.call, death_code(w, exit->how, exit->status), death_message(w, exit->how, exit->status));
    w.call.reset();
    w.credit.reset();
  }
  const bool started = w.state != State::starting;
  if (!started) w.backoff.failed();
  reactor_.ring().cancel(loop::Reactor::tag(id_, kChannel, i), loop::Reactor::tag(id_, kIgnore, i));
  if (w.ending) reactor_.ring().timeout_remove(loop::Reactor::tag(id_, kEndGrace, i), loop::Reactor::tag(id_, kIgnore, i));
  if (w.cancel_code != FERRY_OK) {  // it died in its cancel grace: that timer must not hit its replacement
    reactor_.ring().timeout_remove(loop::Reactor::tag(id_, kKill, i), loop::Reactor::tag(id_, kIgnore, i));
  }
  close(w.proc.channel);
  close(w.proc.pidfd);
  w.proc = SpawnedWorker{};
  w.state = State::empty;
  if (ending_all_) return check_ended();
  if (stopping_ || (retiring_ && queue_.empty())) return;
  ++restarts_;
  if (started) return spawn(i), void();
  schedule_respawn(i);
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

void ProcessPool::finish(Job& job, ferry_code code, std::string data) {
  ++completed_;
  Completion c{job.ref, code, std::move(data)};
  c.started_ns = job.started_ns;
  c.finished_ns = clock_.now_ns();
  sink_.complete(std::move(c));
}

void ProcessPool::cancel(const CallRef& ref, ferry_code why) {
  Job job;
  if (queue_.take(ref, &job)) return finish(job, why, "cancelled before it started");
  for (std::uint16_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.state != State::busy || !w.call || !(w.call->ref == ref) || w.killed) continue;
    return cancel_running(i, why);
  }
}

// Tells the worker (its control thread cancels the call's CallControl) and
// kills it if the call has not returned within kCancelGraceMs.
void ProcessPool::cancel_running(std::uint16_t i, ferry_code why) {
  Worker& w = workers_[i];
  if (w.cancel_code != FERRY_OK) return;  // already told
  w.cancel_code = why;
  const Status sent = channel::send(w.proc.channel, channel::Header{channel::Type::cancel, 0, w.calls}, {});
  if (!sent.ok()) return kill_worker(w);  // the exit handler completes the call
  w.kill_ts = loop::at_ms(clock_.now_ms() + kCancelGraceMs);
  reactor_.ring().timeout_at(&w.kill_ts, loop::Reactor::tag(id_, kKill, i));
  drop_partials(i);
}


void ProcessPool::on_kill_timer(std::uint16_t i) {
  Worker& w = workers_[i];
  if (w.state != State::busy || w.cancel_code == FERRY_OK || w.killed) return;  // it returned in time
  kill_worker(w);  // the exit handler completes the call and logs why (note_worker_exit)
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
