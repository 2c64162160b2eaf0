// Time as the server sees it: milliseconds of CLOCK_MONOTONIC, the clock of
// every deadline, backoff and stuck-thread check. Injected (LevelDB Env
// style) so that tests drive that logic with a FakeClock instead of waiting.
// Implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace ferry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ms() const = 0;
};

// The real CLOCK_MONOTONIC. Stateless: the server owns one and passes it down.
class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override;
};

// A clock that moves only when told to. For tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(std::int64_t start_ms = 1000) : now_(start_ms) {}
  std::int64_t now_ms() const override { return now_.load(std::memory_order_relaxed); }
  void advance(std::int64_t ms) { now_.fetch_add(ms, std::memory_order_relaxed); }
  void set(std::int64_t ms) { now_.store(ms, std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> now_;
};

}  // namespace ferry
