// Runs jobs on a fixed set of threads with a bounded queue; the `thread` executor.
// submit()/stats() are thread-safe; results go to the CompletionSink from pool threads.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exec/executor.hpp"
#include "exec/job_queue.hpp"

namespace ferry {

class ThreadPool final : public Executor {
 public:
  ThreadPool(std::string name, int workers, int queue_limit, CompletionSink& sink);
  ~ThreadPool() override;

  bool submit(Job&& job) override;
  void stop() override;
  ExecutorStats stats() const override;
  const char* kind() const override { return "thread"; }

 private:
  void work();
  bool next(Job* job);
  bool wake_one();  // with mu_ held

  const std::string name_;
  CompletionSink& sink_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  JobQueue queue_;
  int running_ = 0;
  int idle_ = 0;    // workers waiting for a job
  int waking_ = 0;  // notified, not yet awake
  bool stopping_ = false;
  std::uint64_t completed_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace ferry
