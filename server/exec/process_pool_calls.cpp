// ProcessPool: handing calls to workers. Each worker gets up to
// pipeline_depth calls ahead of its replies, sent in one burst per loop turn
// (docs/worker-channel.md, "Pipelining"); its oldest call in flight is the
// running one. Cancelling a call sent to a worker: the running one gets its
// cancel grace, one waiting behind it never runs.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "exec/process_pool.hpp"
#include "plugins/registry.hpp"

namespace ferry {

bool ProcessPool::submit(Job&& job) {
  if (stopping_ || !queue_.admit(std::move(job), busy())) return false;
  if (!batching_) dispatch();
  return true;
}

// Ready, not on its way out, its pipeline not full.
bool ProcessPool::takes_calls(const Worker& w) const {
  return (w.state == State::idle || w.state == State::busy) && !w.killed && !w.ending && w.drain_why.empty() &&
         int(w.calls_in.size()) < opt_.cfg->pipeline_depth;
}

// What a call takes of its worker's channel buffer: its payload inline, or
// little more than a header for a memfd (counted as one full inline body,
// so only one rides in a pipeline).
std::size_t ProcessPool::wire_bytes(const Job& job) {
  return std::min(job.payload.size(), channel::kInlineMax) + sizeof(channel::Header);
}

// The worker for `job`, or -1: an idle one if any; else the one with the
// fewest calls in flight among those with room for it behind its running
// call (pipeline_depth, kPipelineBytes, Worker::refill, queues_behind),
// unless that call has run for over kPipelineAfterNs (a slow call: the next
// call is better off waiting here for whichever worker frees up first). A worker that is starting takes
// calls in milliseconds: as many queued calls as there are such workers
// wait for them, not behind another call.
int ProcessPool::worker_for(const Job* job) const {
  const int queued = queue_.size() + (job != nullptr ? 1 : 0);  // `job` was popped
  int best = -1;
  std::int64_t now_ns = 0;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const Worker& w = workers_[i];
    if (!takes_calls(w)) continue;
    if (w.calls_in.empty()) return int(i);
    if (!w.refill || !queues_behind(w)) continue;
    if (queued <= starting_) continue;  // the starting workers take those
    if (now_ns == 0) now_ns = clock_.now_ns();
    if (now_ns - w.head_ns > kPipelineAfterNs) continue;
    if (job != nullptr && w.bytes_in + wire_bytes(*job) > kPipelineBytes) continue;
    if (best < 0 || w.calls_in.size() < workers_[std::size_t(best)].calls_in.size()) best = int(i);
  }
  return best;
}

// May a call wait behind w's calls? Not behind a streamed one (a client
// reading its partials slowly stalls the channel: the calls behind would be
// its hostages), nor behind one being cancelled (its worker may be killed).
bool ProcessPool::queues_behind(const Worker& w) {
  const InFlight& last = w.calls_in.back();
  return !last.job.stream && last.cancel_code == FERRY_OK && w.calls_in.front().cancel_code == FERRY_OK;
}

void ProcessPool::dispatch() {
  starting_ = int(std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) {
    return w.state == State::spawning || w.state == State::starting;
  }));
  // A worker's pipeline is topped up once it ran down to half: bursts of
  // several calls, so it wakes once per burst, not once per reply.
  for (Worker& w : workers_) w.refill = int(w.calls_in.size()) * 2 <= opt_.cfg->pipeline_depth;
  while (!queue_.empty() && worker_for(nullptr) >= 0) {
    Job job;
    while (queue_.pop(&job)) {
      if (job.deadline_ms == 0 || clock_.now_ms() < job.deadline_ms) break;
      finish(job, FERRY_E_TIMEOUT, "deadline passed before the call started");
      job.fn.reset();
    }
    if (!job.fn) break;
    const int i = worker_for(&job);
    if (i < 0) {
      queue_.requeue(std::move(job));  // too big for any pipeline now
      break;
    }
    start_call(std::uint16_t(i), std::move(job));
  }
  send_outboxes();
}

// One burst per worker: it wakes once for all its new calls. Those its
// channel had no room for go back to the queue, to be sent later.
void ProcessPool::send_outboxes() {
  for (std::uint16_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.outbox.empty()) continue;
    const Result<std::size_t> sent = channel::send_many(w.proc.channel, w.outbox.data(), w.outbox.size());
    const std::size_t unsent = sent.ok() ? w.outbox.size() - *sent : 0;
    w.outbox.clear();
    if (!sent.ok()) {
      spdlog::error("plugin {}: worker {}: {}", opt_.plugin, w.proc.pid, sent.status().message());
      kill_worker(w);  // the exit handler answers its calls
    }
    for (std::size_t k = 0; k < unsent; ++k) unsend_last(i);
    if (unsent > 0 && w.calls_in.empty()) after_call(i);  // recycled if it was to be
  }
}

// Takes worker i's newest call back (its CALL did not go) to the front of
// the queue: the newest first, so they keep their order.
void ProcessPool::unsend_last(std::uint16_t i) {
  Worker& w = workers_[i];
  InFlight& call = w.calls_in.back();
  w.bytes_in -= std::min(w.bytes_in, wire_bytes(call.job));
  --w.calls;  // its id is the next CALL's
  if (call.cancel_code != FERRY_OK) {
    finish(call.job, call.cancel_code, "cancelled before it started");
  } else {
    call.job.started_ns = 0;
    queue_.requeue(std::move(call.job));
  }
  w.calls_in.pop_back();
  --in_flight_;
  if (w.state == State::busy && w.calls_in.empty()) w.state = State::idle;
}

void ProcessPool::start_call(std::uint16_t i, Job&& job) {
  Worker& w = workers_[i];
  const auto& names = opt_.functions;
  const auto it = std::lower_bound(names.begin(), names.end(), job.fn->name);
  const bool stream = job.stream;
  channel::Header h{channel::Type::call, stream ? channel::kFlagPartials : 0, ++w.calls, job.deadline_ms,
                    std::uint32_t(it - names.begin())};
  job.started_ns = clock_.now_ns();  // until its reply says how long it ran
  w.bytes_in += wire_bytes(job);
  if (w.calls_in.empty()) w.head_ns = job.started_ns;
  w.calls_in.emplace_back().job = std::move(job);
  w.calls_in.back().seq = h.id;
  w.outbox.push_back(channel::Outgoing{h, w.calls_in.back().job.payload});  // deque: the payload stays put
  if (stream) w.calls_in.back().credit = make_credit(i);
  ++in_flight_;
  w.state = State::busy;
  const std::uint64_t max = opt_.cfg->max_calls_per_worker;
  if (max != 0 && w.calls >= max) w.drain_why = "served " + std::to_string(w.calls) + " calls (max_calls_per_worker)";
}

// The worker's oldest call is answered: the next one runs now.
void ProcessPool::pop_call(std::uint16_t i) {
  Worker& w = workers_[i];
  w.bytes_in -= std::min(w.bytes_in, wire_bytes(w.calls_in.front().job));
  w.calls_in.pop_front();
  --in_flight_;
  w.partials = w.partial_bytes = 0;
  w.partial_chunks.clear();
  w.head_ns = clock_.now_ns();  // the next call runs from about now
  if (w.state == State::busy && w.calls_in.empty()) w.state = State::idle;
}

// Is h the reply to worker w's running call (its oldest)?
bool ProcessPool::answers_running(const Worker& w, const channel::Header& h) {
  return !w.calls_in.empty() && h.id == w.calls_in.front().seq && h.code < FERRY_CODE_COUNT;
}

// The running call's reply: its result, or dropped if the call was
// cancelled meanwhile (the loop answered it then).
void ProcessPool::answer_running(std::uint16_t i, const channel::Header& h, std::string& body) {
  InFlight& call = workers_[i].calls_in.front();
  if (call.cancel_code != FERRY_OK) {
    finish(call.job, call.cancel_code, "cancelled; the call returned");
  } else {
    finish(call.job, ferry_code(h.code), std::move(body), h.deadline_ms);
  }
  pop_call(i);
}

void ProcessPool::cancel(const CallRef& ref, ferry_code why) {
  Job job;
  if (queue_.take(ref, &job)) return finish(job, why, "cancelled before it started");
  for (std::uint16_t i = 0; i < workers_.size(); ++i) {
    for (InFlight& call : workers_[i].calls_in) {
      if (call.job.ref == ref) return cancel_sent(i, call, why);
    }
  }
}

// Tells the worker: the running call's CallControl is cancelled (it may
// not have started yet: then it starts cancelled), a call waiting behind it
// never runs. A killed worker is told nothing: its exit answers the call.
void ProcessPool::cancel_sent(std::uint16_t i, InFlight& call, ferry_code why) {
  Worker& w = workers_[i];
  if (call.cancel_code != FERRY_OK) return;  // already told
  call.cancel_code = why;
  if (w.killed) return;
  const bool running = &call == &w.calls_in.front();
  const channel::Header h{channel::Type::cancel, running ? 0 : channel::kFlagQueued, call.seq};
  if (!channel::send(w.proc.channel, h, {}).ok()) return kill_worker(w);  // the exit handler completes the call
  if (!running) return call.credit.reset();
  arm_kill(i);
  drop_partials(i);  // last: it may read replies, which changes calls_in
}

// The running call was cancelled: its worker is killed if the call has not
// returned within kCancelGraceMs (one that had not started returns at once).
void ProcessPool::arm_kill(std::uint16_t i) {
  Worker& w = workers_[i];
  InFlight& call = w.calls_in.front();
  call.kill_by_ms = clock_.now_ms() + kCancelGraceMs;
  w.kill_ts = loop::at_ms(call.kill_by_ms);
  reactor_.ring().timeout_at(&w.kill_ts, loop::Reactor::tag(id_, kKill, i));
}

// A timer of arm_kill(): of the running call, or of one that returned in
// time (then the running call is another, not due yet, or not cancelled).
// What the worker sent is read first: a reply waiting there means the call
// did return, and killing the worker then would kill the call behind it,
// which has probably started.
void ProcessPool::on_kill_timer(std::uint16_t i) {
  Worker& w = workers_[i];
  if (!kill_due(w)) return;
  read_channel(i);
  if (!kill_due(w)) return;
  const InFlight& call = w.calls_in.front();
  w.kill_seq = call.seq;
  w.cancel_code = call.cancel_code;
  kill_worker(w);  // the exit handler completes the call and logs why (note_worker_exit)
}

// Is w's running call cancelled and past its cancel grace?
bool ProcessPool::kill_due(const Worker& w) const {
  if (w.killed || w.exited || w.calls_in.empty()) return false;
  const InFlight& call = w.calls_in.front();
  return call.cancel_code != FERRY_OK && clock_.now_ms() >= call.kill_by_ms;
}

}  // namespace ferry
