// ProcessPool: how workers end when nothing went wrong (recycling, the pool
// retired after its last call, ferryd's stop). ferryd closes its side of the
// channel; the worker reads EOF, runs its plugin's shutdown hook and exits 0.
// One that has not exited kEndGraceMs later is killed. A kill never gives the
// hook a chance to run, so deadlines, cancels, crashes and violations still
// kill at once (process_pool.cpp).
#include <sys/wait.h>

#include <spdlog/spdlog.h>

#include <vector>

#include "exec/process_pool.hpp"

namespace ferry {

// Loop side: the exit poll sees it go; a timer kills it if it lingers.
void ProcessPool::end_worker(std::uint16_t i) {
  Worker& w = workers_[i];
  if (w.ending || w.killed || w.proc.pidfd < 0) return;
  w.ending = true;
  w.state = State::retiring;
  launcher_.end(w.proc);
  w.end_by_ms = clock_.now_ms() + kEndGraceMs;
  w.end_ts = loop::at_ms(w.end_by_ms);
  reactor_.ring().timeout_at(&w.end_ts, loop::Reactor::tag(id_, kEndGrace, i));
}

// A timer of a worker of slot i fired (or was removed): it may be an older
// worker's, so only a worker past its own bound is killed.
void ProcessPool::on_end_grace(std::uint16_t i) {
  Worker& w = workers_[i];
  if (!w.ending || w.killed || w.proc.pidfd < 0 || clock_.now_ms() < w.end_by_ms) return;
  spdlog::warn("plugin {}: worker {} did not end within {} ms of its channel closing (a slow shutdown hook?); killed",
               opt_.plugin, w.proc.pid, kEndGraceMs);
  kill_worker(w);
}

void ProcessPool::end(std::function<void()> done) {
  ended_ = std::move(done);
  ending_all_ = true;
  for (std::uint16_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.state == State::backoff) w.state = State::empty;  // its respawn timer finds nothing to do
    end_worker(i);  // a worker still spawning is ended by on_spawned
  }
  check_ended();
}

// Runs end()'s `done` once every worker is gone.
void ProcessPool::check_ended() {
  if (!ended_) return;
  for (const Worker& w : workers_) {
    if (w.state != State::empty) return;
  }
  auto done = std::move(ended_);
  ended_ = nullptr;
  done();
}

int ProcessPool::stop() {
  if (stopping_) return 0;
  stopping_ = true;
  *self_ = nullptr;  // credits of its calls go nowhere now
  // Every worker is asked to end (one running a call is killed: the drain
  // gave up on it), then all are awaited at once. The channel polls are
  // cancelled, so the ring lets go of the sockets.
  std::vector<SpawnedWorker*> live;
  for (std::uint16_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.proc.pidfd < 0) continue;
    reactor_.ring().cancel(loop::Reactor::tag(id_, kChannel, i), loop::Reactor::tag(id_, kIgnore, i));
    if (w.state == State::busy) kill_worker(w);
    if (!w.killed) launcher_.end(w.proc);
    live.push_back(&w.proc);
  }
  // The pipes stay open while the workers end (a hook that prints must not
  // die of SIGPIPE); what they said is not read any more, only the lines
  // and drops already taken are flushed below.
  if (const int killed = launcher_.reap_within(live, kEndGraceMs); killed > 0) {
    spdlog::warn("plugin {}: {} workers did not end within {} ms of ferryd's stop (a slow shutdown hook?); killed",
                 opt_.plugin, killed, kEndGraceMs);
  }
  for (std::uint16_t i = 0; i < workers_.size(); ++i) finish_log(i);
  exits_.flush_all(clock_.now_ms());
  if (exits_armed_) {
    reactor_.ring().timeout_remove(loop::Reactor::tag(id_, kExitSummary, 0), loop::Reactor::tag(id_, kIgnore, 0));
    exits_armed_ = false;
  }
  // Here, on the loop (or after it): no completion reaches the pool from
  // now on, so it may be freed on another thread (Router::ended).
  reactor_.remove(id_);
  return 0;
}

}  // namespace ferry
