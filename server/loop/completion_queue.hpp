// Hands finished calls from executor threads to the loop thread.
// complete() is thread-safe; drain() and fd() belong to the loop thread.
// One eventfd write per burst: a producer writes only when the loop has
// drained everything since the last write.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.hpp"

#include "loop/completion.hpp"

namespace ferry::loop {

class CompletionQueue final : public CompletionSink {
 public:
  // Fails when no eventfd can be made.
  static Result<std::unique_ptr<CompletionQueue>> create();
  ~CompletionQueue() override;
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  void complete(Completion&& c) override;
  // Runs `task` on the loop thread at its next turn (e.g. a reload's result).
  void post(std::function<void()> task);
  // Takes every posted task (the loop runs them).
  void drain_tasks(std::vector<std::function<void()>>* out);
  // Takes every pending completion (swapped into *out, which is cleared first).
  void drain(std::vector<Completion>* out);
  // Consumes the eventfd counter after a wake-up (non-blocking read).
  void ack();
  int fd() const { return fd_; }

 private:
  explicit CompletionQueue(int fd) : fd_(fd) {}
  const int fd_;
  std::mutex mu_;
  std::vector<Completion> items_;
  std::vector<std::function<void()>> tasks_;
  bool wake_pending_ = false;
};

}  // namespace ferry::loop
