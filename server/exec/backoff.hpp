// Crash-loop guard for a worker slot: after n consecutive start failures the
// next attempt waits 100 ms · 2^(n-1), at most 30 s. A plain value; not
// thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ferry {

class Backoff {
 public:
  static constexpr std::int64_t kFirstMs = 100;
  static constexpr std::int64_t kMaxMs = 30000;

  void failed() { ++failures_; }
  void succeeded() { failures_ = 0; }
  int failures() const { return failures_; }
  // How long to wait before the next attempt: 0 before any failure.
  std::int64_t delay_ms() const {
    if (failures_ == 0) return 0;
    const int n = std::min(failures_, 16);  // 100 << 15 is far past the cap: no overflow
    return std::min(kMaxMs, kFirstMs << (n - 1));
  }
  // Three failures in a row: worth an error in the log at every attempt.
  bool crash_loop() const { return failures_ >= 3; }

 private:
  int failures_ = 0;
};

}  // namespace ferry
