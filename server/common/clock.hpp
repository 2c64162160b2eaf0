// Time as the server sees it: milliseconds of CLOCK_MONOTONIC, the clock of
// every deadline, backoff and stuck-thread check. Injected (LevelDB Env
// style) so that tests drive that logic with a FakeClock
// (tests/common/fake_clock.hpp) instead of waiting.
// Implementations are thread-safe.
#pragma once

#include <cstdint>

namespace ferry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ms() const = 0;
  // The same clock in nanoseconds, for durations (metrics). A clock that
  // only has milliseconds may keep this default.
  virtual std::int64_t now_ns() const { return now_ms() * 1'000'000; }
};

// The real CLOCK_MONOTONIC. Stateless: the server owns one and passes it down.
class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override;
  std::int64_t now_ns() const override;
};

}  // namespace ferry
