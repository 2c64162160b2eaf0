// A Clock that moves only when a test says so. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/clock.hpp"

namespace ferry {

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
