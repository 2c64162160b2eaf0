// How much of one source of log lines (a plugin in ferryd, a plugin in its
// worker, a worker as ferryd reads it) reaches the log: a token bucket, and
// a count of the lines it dropped, summed up in one line at most once per
// second. Plain logic on the times the caller passes (Clock ms), so tests
// drive it with fixed times; not thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace ferry {

class LogLimiter {
 public:
  // An operator reads the log, and one flooding plugin must not bury what
  // the others say nor fill the disk. 100 lines/s is more than a sane plugin
  // logs for long, yet with lines cut at 4 KiB a source writes at most
  // 400 KiB/s; a burst of 200 lets a start-up banner or a stack trace
  // through whole. The bound is per source (per worker in process mode).
  static constexpr std::int64_t kLinesPerSecond = 100;
  static constexpr std::int64_t kBurst = 200;
  // How often a summary of dropped lines may be written.
  static constexpr std::int64_t kSummaryMs = 1000;

  explicit LogLimiter(std::int64_t lines_per_second = kLinesPerSecond, std::int64_t burst = kBurst);

  // Whether a line logged at now_ms may be written; one that may not is counted.
  bool admit(std::int64_t now_ms);
  // Counts `n` lines dropped before they got here (by a worker's own bound).
  void count_dropped(std::uint64_t n, std::int64_t now_ms);
  // When the next summary is due: kSummaryMs after the first line dropped
  // since the last summary, and at least kSummaryMs after that summary.
  // 0 when nothing was dropped since.
  std::int64_t summary_due_ms() const;
  // The lines dropped since the last summary, forgotten, if a summary is due
  // at now_ms; else 0. `burst_over` (a call ended, so its flood did): no
  // waiting for the rest of the burst, only the once-per-kSummaryMs bound.
  std::uint64_t take_summary(std::int64_t now_ms, bool burst_over = false);
  // Every line dropped since the last summary, forgotten (the source is gone).
  std::uint64_t take_all();

  // The summary's text: "N log lines dropped (over 100 lines/s)".
  static std::string summary_text(std::uint64_t dropped);

 private:
  // Tokens in thousandths of a line: a millisecond adds exactly `rate_` of them.
  const std::int64_t rate_;
  const std::int64_t capacity_;
  std::int64_t tokens_;
  std::int64_t last_ms_ = -1;  // of the last refill; -1 before the first line
  std::uint64_t dropped_ = 0;
  std::int64_t first_drop_ms_ = 0;    // of the first line dropped since the last summary
  std::int64_t last_summary_ms_ = INT64_MIN / 2;  // none yet: long ago
};

}  // namespace ferry
