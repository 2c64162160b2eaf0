// The `process` executor: a plugin's calls run in pre-started, sandboxed
// ferry-worker processes. Each worker gets up to `pipeline_depth` calls ahead
// of its replies and runs them in order, so the oldest call in flight is the
// one running and the others have not started. Supervised from the
// event loop: channel polls, pidfd exit polls and respawn timers are all
// io_uring operations. Deadlines are the loop's (server/calls.hpp): at a
// call's deadline it calls cancel(), which drops a queued call and tells the
// worker of a sent one (a running one's ctx.cancelled() and cancel_fd() see
// it; one not started never runs); a worker whose running cancelled call has
// not replied kCancelGraceMs later is killed. A dead worker fails only the
// call it was running; the calls behind it go back to the queue. It is
// replaced (with backoff when it dies before becoming ready). Workers
// recycled, retired with their pool or stopped with ferryd end normally
// (process_pool_end.cpp): their channel is closed, they run their plugin's
// shutdown hook and exit; only past a bound are they killed. What workers
// log and print is read on the ring too and logged through a bounded
// WorkerLog each (process_pool_logs.cpp). Loop thread only.
#pragma once

#include <linux/time_types.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/event_limit.hpp"
#include "config/config.hpp"
#include "exec/backoff.hpp"
#include "exec/executor.hpp"
#include "exec/job_queue.hpp"
#include "exec/worker_exit.hpp"
#include "exec/worker_log.hpp"
#include "loop/reactor.hpp"
#include "worker/channel.hpp"
#include "worker/launcher.hpp"

namespace ferry {

class ProcessPool final : public Executor, public loop::IoClient {
 public:
  struct Options {
    std::string plugin;
    std::string plugin_path;
    std::vector<std::string> functions;  // sorted full names: a call's index
    const config::PluginConfig* cfg = nullptr;
    int max_call_depth = 64;  // for nested calls inside the workers
    // Runs a task on the loop thread at its next turn (thread-safe): how a
    // worker spawned off the loop reaches the pool.
    std::function<void(std::function<void()>)> post;
    std::string settings = "{}";  // the version's settings (Plugin::settings), for the workers' init
  };
  // Workers come from `launcher`; `clock` times backoff. Both, the reactor
  // and the sink must outlive the pool.
  ProcessPool(Options opt, loop::Reactor& reactor, CompletionSink& sink, Launcher& launcher, const Clock& clock);
  ~ProcessPool() override;

  bool submit(Job&& job) override;
  // After batch_wakes(), submit() only queues: flush() (once per loop turn)
  // sends the turn's calls, one sendmmsg() per worker.
  void batch_wakes() override { batching_ = true; }
  void flush() override { dispatch(); }
  void cancel(const CallRef& ref, ferry_code why) override;
  void retire() override { retiring_ = true; }
  // Ends every worker (Executor::end): each gets kEndGraceMs after its
  // channel closes, then is killed.
  void end(std::function<void()> done) override;
  // Ends every worker and reaps it, waiting synchronously (all at once, up to
  // kEndGraceMs); a worker still running a call is killed at once. Then
  // leaves the reactor: call it on the loop thread (or once the loop is gone).
  int stop() override;
  ExecutorStats stats() const override;
  const char* kind() const override { return "process"; }
  void on_io(std::uint8_t sub, std::uint16_t index, const io_uring_cqe& cqe) override;

  // How long a worker asked to end (its shutdown hook) may take.
  static constexpr int kEndGraceMs = 5000;

 private:
  // How long a cancelled call may take to return before its worker is
  // killed: the thread executor's "stuck" threshold.
  static constexpr std::int64_t kCancelGraceMs = 100;
  // What one wake-up reads of one worker's channel (messages) and of each of
  // its output pipes (bytes): a worker that floods them cannot hold the
  // loop; the rest is read at the loop's next turn (the *More polls).
  static constexpr int kMessagesPerWake = 64;
  static constexpr std::size_t kOutputPerWake = 64 * 1024;
  // The most ferryd reads of one reply, or of one partial's chunks together:
  // a hostile worker cannot make it hold more.
  static constexpr std::size_t kMaxReply = std::size_t(256) << 20;
  // A worker with calls in flight takes another only while their bytes stay
  // under this: CALLs waiting in the channel must fit its socket buffer
  // (about 200 KiB), since ferryd's sends never wait.
  static constexpr std::size_t kPipelineBytes = 64 * 1024;
  // A worker whose running call has run this long takes no more calls
  // behind it: pipelines are for short calls.
  static constexpr std::int64_t kPipelineAfterNs = 2'000'000;

  class Credit;  // gives a streamed call's partial credit back to its worker
  enum Sub : std::uint8_t { kChannel = 1, kExit, kRespawn, kIgnore, kKill, kEndGrace,
                            kChannelMore, kStdout, kStderr, kStdoutMore, kStderrMore, kLogSummary, kExitSummary };
  enum class State { empty, backoff, spawning, starting, idle, busy, retiring };
  // A call sent to a worker, not answered yet.
  struct InFlight {
    Job job;
    std::uint64_t seq = 0;              // its CALL's id
    ferry_code cancel_code = FERRY_OK;  // cancelled (or timed out): its reply is dropped
    std::int64_t kill_by_ms = 0;        // running and cancelled: its worker is killed then
    std::shared_ptr<Credit> credit;     // a streamed call's, while its partials are wanted
  };
  struct Worker {
    SpawnedWorker proc;
    State state = State::empty;
    std::deque<InFlight> calls_in;  // in the order sent: the front one runs, the rest wait
    std::size_t bytes_in = 0;       // their wire_bytes()
    std::vector<channel::Outgoing> outbox;  // CALLs dispatch() sends at its end, bodies in calls_in
    std::int64_t head_ns = 0;       // when the running call started, as ferryd knows it
    bool refill = false;            // dispatch() may add calls: it had at most half its depth then
    std::uint64_t calls = 0;        // CALLs sent
    std::string drain_why;          // set: takes no more calls, recycled once calls_in is empty
    int violation = -1;  // syscall reported by the SIGSYS handler
    int fatal_signal = 0;  // signal the worker reported before exiting
    ferry_code cancel_code = FERRY_OK;  // at its exit: the running call's, if that was cancelled
    std::uint64_t kill_seq = 0;          // killed at the cancel grace of this call
    __kernel_timespec kill_ts{};         // when it is killed if the running call has not returned
    bool killed = false;  // SIGKILL sent: gets no more calls, whatever it still sends
    bool exited = false;  // reaped: what its channel still holds is read, nothing is sent or done to it
    bool ending = false;  // asked to end (channel closed): gets no more calls
    std::int64_t end_by_ms = 0;  // killed if still running then
    __kernel_timespec end_ts{};
    std::unique_ptr<WorkerLog> log;   // its LOG messages, stdout and stderr; from on_spawned
    __kernel_timespec summary_ts{};   // when log's summary of dropped lines is due
    bool summary_armed = false;       // a timer for it is pending
    Backoff backoff;         // consecutive deaths before ready
    std::string failure;     // last `failed` message
    std::int64_t spawned_ms = 0;
    std::uint32_t spawn_gen = 0;  // tells a spawn's result from an older one's
    __kernel_timespec respawn_ts{};
    // Partial results of its running call (if its client asked, see
    // InFlight::credit): forwarded to the loop, not yet taken. While a
    // window's worth waits, its channel is not read, so the worker blocks in
    // its send.
    std::size_t partials = 0, partial_bytes = 0;
    std::string partial_chunks;  // a partial arriving in chunks, so far
    bool poll_ended = false;  // the channel's multishot poll ended: re-arm once drained
  };

  void spawn(std::uint16_t i);
  void on_spawned(std::uint16_t i, std::uint32_t generation, Result<SpawnedWorker> proc);
  void on_message(std::uint16_t i, const channel::Header& h, std::string& body);
  void on_ready(Worker& w, const std::string& body);
  void on_reply(std::uint16_t i, const channel::Header& h, std::string& body);
  // process_pool_stream.cpp: the channel and partial results
  // `continued`: woken by the kChannelMore poll that carries on a wake-up
  // which had more to read than kMessagesPerWake.
  void on_channel(std::uint16_t i, const io_uring_cqe& cqe, bool continued = false);
  void read_channel(std::uint16_t i);
  void on_partial(std::uint16_t i, const channel::Header& h, std::string& body);
  void on_credit(std::uint16_t i, const Credit* credit, std::size_t count, std::size_t bytes);
  void drop_partials(std::uint16_t i);
  std::shared_ptr<Credit> make_credit(std::uint16_t i);
  static bool stalled(const Worker& w);
  void on_exit(std::uint16_t i);
  void read_replies_at_exit(std::uint16_t i);
  void fail_or_requeue(std::uint16_t i, int how, int status);
  void after_call(std::uint16_t i);
  void retire(std::uint16_t i, const std::string& why);
  void end_worker(std::uint16_t i);
  void on_end_grace(std::uint16_t i);
  void check_ended();
  void schedule_respawn(std::uint16_t i);
  void dispatch();
  bool takes_calls(const Worker& w) const;
  static std::size_t wire_bytes(const Job& job);
  int worker_for(const Job* job) const;
  static bool queues_behind(const Worker& w);
  void start_call(std::uint16_t i, Job&& job);
  void send_outboxes();
  void unsend_last(std::uint16_t i);
  void pop_call(std::uint16_t i);
  static bool answers_running(const Worker& w, const channel::Header& h);
  void answer_running(std::uint16_t i, const channel::Header& h, std::string& body);
  void finish(Job& job, ferry_code code, std::string data, std::int64_t ran_ns = 0);
  std::string death_message(const Worker& w, int how, int status) const;
  ferry_code death_code(const Worker& w, int how, int status) const;
  int busy() const { return in_flight_; }
  void kill_worker(Worker& w);
  void cancel_sent(std::uint16_t i, InFlight& call, ferry_code why);
  void arm_kill(std::uint16_t i);
  void on_kill_timer(std::uint16_t i);
  bool kill_due(const Worker& w) const;
  // Its exit, told (process_pool_exits.cpp).
  static ExitFacts exit_facts(const Worker& w, const WorkerExit& exit);
  std::string exit_what(ExitReason reason, const Worker& w, const WorkerExit& exit) const;
  void note_worker_exit(std::uint16_t i, const WorkerExit& exit);
  void note_recycle(std::uint16_t i, const std::string& why);
  void arm_exit_summary();
  void on_exit_summary();
  // Its log (process_pool_logs.cpp).
  void start_log(std::uint16_t i);
  void on_log(std::uint16_t i, const channel::Header& h, const std::string& body);
  void on_output(std::uint16_t i, std::uint8_t sub, const io_uring_cqe& cqe);
  enum class Drained { empty, more, eof };
  Drained read_output(Worker& w, WorkerLog::Stream stream, std::size_t budget);
  void arm_log_summary(std::uint16_t i);
  void on_log_summary(std::uint16_t i);
  void finish_log(std::uint16_t i);

  Options opt_;
  loop::Reactor& reactor_;
  CompletionSink& sink_;
  Launcher& launcher_;
  const Clock& clock_;
  std::uint32_t id_;
  JobQueue queue_;
  std::vector<Worker> workers_;
  int in_flight_ = 0;  // calls sent to workers, not answered yet
  int starting_ = 0;   // workers spawning or starting, as dispatch() last counted
  bool batching_ = false;  // batch_wakes(): submit() leaves dispatching to flush()
  std::uint64_t completed_ = 0;
  std::uint64_t restarts_ = 0;
  std::array<std::uint64_t, kExitReasonCount> exit_counts_{};  // by ExitReason, for metrics
  bool stopping_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // spawn results check it: the pool may be gone
  // Credits check it: set to null by stop(), on the loop thread, as are their give_backs.
  std::shared_ptr<ProcessPool*> self_ = std::make_shared<ProcessPool*>(this);
  bool retiring_ = false;  // replaced: a worker that exits is replaced only while calls are queued
  std::function<void()> ended_;  // end(): runs once every worker is gone
  bool ending_all_ = false;      // end() was called: nothing is replaced any more
  EventLog exits_;               // worker exits, bounded per reason
  __kernel_timespec exits_ts_{};
  bool exits_armed_ = false;     // a timer for exits_' next summary is pending
};

}  // namespace ferry
