// A running call's cancellation, shared between the thread that runs it and
// whoever may cancel it: the flag ctx_cancelled reads and the fd
// ctx_cancel_fd hands out. Thread-safe. Reusable: a pool thread resets one
// for each call it runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace ferry {

class CallControl {
 public:
  CallControl() = default;
  CallControl(const CallControl&) = delete;
  CallControl& operator=(const CallControl&) = delete;
  ~CallControl();

  // Starts a new call with `deadline_ms` (CLOCK_MONOTONIC ms, 0 = none): not
  // cancelled, and the fd (if one was made) disarmed.
  void reset(std::int64_t deadline_ms);
  // Marks the call cancelled and makes the fd readable.
  void cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  // A timerfd that turns readable at the deadline or at cancel(), made on
  // first use (calls that never ask cost no syscall). -1 if it cannot be made.
  int fd();

 private:
  void arm_locked(std::int64_t at_ms);  // 0: disarm; <0: fire now

  std::atomic<bool> cancelled_{false};
  std::mutex mu_;  // guards the fields below
  int fd_ = -1;
  bool armed_ = false;  // the fd was armed for the current call
  std::int64_t deadline_ms_ = 0;
};

}  // namespace ferry
