#include "common/log_limit.hpp"

#include <algorithm>

namespace ferry {

LogLimiter::LogLimiter(std::int64_t lines_per_second, std::int64_t burst)
    : rate_(std::max<std::int64_t>(lines_per_second, 1)),
      capacity_(std::max<std::int64_t>(burst, 1) * 1000),
      tokens_(capacity_) {}

bool LogLimiter::admit(std::int64_t now_ms) {
  if (last_ms_ >= 0 && now_ms > last_ms_) {
    // Capped before multiplying: a long silence cannot overflow.
    const std::int64_t elapsed = std::min(now_ms - last_ms_, capacity_ / rate_ + 1);
    tokens_ = std::min(capacity_, tokens_ + elapsed * rate_);
  }
  last_ms_ = std::max(last_ms_, now_ms);
  if (tokens_ >= 1000) {
    tokens_ -= 1000;
    return true;
  }
  count_dropped(1, now_ms);
  return false;
}

void LogLimiter::count_dropped(std::uint64_t n, std::int64_t now_ms) {
  if (n == 0) return;
  if (dropped_ == 0) first_drop_ms_ = now_ms;
  dropped_ = n > UINT64_MAX - dropped_ ? UINT64_MAX : dropped_ + n;  // a worker's count may be anything
}

std::int64_t LogLimiter::summary_due_ms() const {
  if (dropped_ == 0) return 0;
  return std::max(first_drop_ms_, last_summary_ms_) + kSummaryMs;
}

std::uint64_t LogLimiter::take_summary(std::int64_t now_ms, bool burst_over) {
  if (dropped_ == 0) return 0;
  const std::int64_t due = burst_over ? last_summary_ms_ + kSummaryMs : summary_due_ms();
  if (now_ms < due) return 0;
  last_summary_ms_ = now_ms;
  return take_all();
}

std::uint64_t LogLimiter::take_all() {
  const std::uint64_t n = dropped_;
  dropped_ = 0;
  return n;
}

std::string LogLimiter::summary_text(std::uint64_t dropped) {
  return std::to_string(dropped) + " log lines dropped (over " + std::to_string(kLinesPerSecond) + " lines/s)";
}

}  // namespace ferry
