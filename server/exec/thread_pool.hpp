// Runs jobs on a set of threads with a bounded queue; the `thread` executor.
// submit()/cancel()/stats() are thread-safe; results go to the CompletionSink
// from pool threads. After batch_wakes() (the loop's pools), submit() leaves
// waking a thread to flush(), and both belong to one thread (the loop).
//
// A running call cannot be stopped from outside: cancel() sets the flag its
// ctx.cancelled() reads. A thread whose call still runs 100 ms after that is
// "stuck": it no longer counts towards the pool's capacity, and the pool
// starts a replacement (at most max_stuck at a time), so `workers` threads
// stay available. Stuck threads are found when the pool is next used
// (submit, cancel, stats), by the injected Clock. When a stuck call ends,
// its thread leaves if the pool has enough threads without it. A thread that
// cannot be started is logged, and the pool runs short.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "exec/executor.hpp"
#include "exec/job_queue.hpp"
#include "exec/partial_window.hpp"
#include "plugins/invoke.hpp"

namespace ferry {

class ThreadPool final : public Executor {
 public:
  // Calls run through `invoker`, whose clock also times stuck threads. It
  // must outlive the pool.
  ThreadPool(std::string name, int workers, int queue_limit, CompletionSink& sink, const Invoker& invoker,
             int max_stuck = 4);
  ~ThreadPool() override;

  bool submit(Job&& job) override;
  void batch_wakes() override { batch_ = true; }
  void flush() override;
  void cancel(const CallRef& ref, ferry_code why) override;
  int stop() override;
  ExecutorStats stats() const override;  // finds stuck threads too
  const char* kind() const override { return "thread"; }

 private:
  struct Thread {
    std::thread thread;
    CallControl control;  // what the running call's ctx.cancelled() and cancel_fd() read
    std::shared_ptr<PartialWindow> window;  // its partial results, if its client asked
    CallRef ref;                         // the running call
    const std::string* function = nullptr;  // its function's full name (work()'s job holds it), for the log
    std::int64_t cancelled_ms = 0;       // when its call was cancelled (0: not)
    bool busy = false;
    bool stuck = false;
    bool exited = false;  // work() returned: join it
  };
  bool start_thread();  // with mu_ held; false (logged) when no thread could start
  void find_stuck();    // with mu_ held
  void note_stuck(const Thread& t, std::int64_t now_ms, bool replaced) const;  // its one log line
  void work(Thread* self);
  bool next(Thread* self, Job* job, Completion* done);
  bool finish(Thread* self);  // with mu_ held
  bool wake_one();  // with mu_ held
  void reap();      // joins threads that left; not with mu_ held

  const std::string name_;
  const int workers_;
  const int max_stuck_;
  CompletionSink& sink_;
  const Invoker& invoker_;
  const Clock& clock_;
  mutable std::mutex mu_;  // mutable: stats() also finds stuck threads
  std::condition_variable cv_;
  std::condition_variable exited_cv_;
  JobQueue queue_;
  int running_ = 0;  // threads in a call, stuck ones included
  int stuck_ = 0;
  int cancelled_ = 0;  // threads running a cancelled call, not yet stuck
  int live_ = 0;     // threads not exited
  int idle_ = 0;     // workers waiting for a job
  int waking_ = 0;   // notified, not yet awake
  bool stopping_ = false;
  bool batch_ = false;     // batch_wakes(): submit() leaves the wake to flush()
  bool wake_due_ = false;  // a wake held for flush(); loop thread only
  std::uint64_t completed_ = 0;
  std::vector<std::unique_ptr<Thread>> threads_;
};

}  // namespace ferry
