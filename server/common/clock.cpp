#include "common/clock.hpp"

#include <time.h>

namespace ferry {

std::int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::int64_t SystemClock::now_ms() const { return monotonic_ms(); }

}  // namespace ferry
