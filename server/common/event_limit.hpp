// How often one kind of event (a refused connection, a crashed worker of one
// plugin, a client's bad frame, ...) is logged: the first kBurst events of a
// kind in a window of kWindowMs get a line each; the rest are counted, and
// one summary line per kind says how many: "... and 2,991 more in the last
// 10 s". A flood therefore costs a few lines per window, never one per
// event. EventLimiter is plain logic on the times the caller passes (Clock
// ms), so tests drive it with fixed times; EventLog writes through spdlog.
// Neither is thread-safe: each belongs to one thread (the loop).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>

namespace ferry {

class EventLimiter {
 public:
  // An operator needs the first few events of a flood with their context
  // (they are usually alike) and how many followed; 5 lines per kind per
  // 10 s keep a flood of thousands readable.
  static constexpr int kBurst = 5;
  static constexpr std::int64_t kWindowMs = 10000;

  explicit EventLimiter(int burst = kBurst, std::int64_t window_ms = kWindowMs);

  // Whether an event of `kind` at now_ms gets its own line; one that does
  // not is counted for the kind's summary. A kind's window starts at its
  // first event and ends with its summary (take_due).
  bool admit(std::string_view kind, std::int64_t now_ms);

  struct Summary {
    std::string kind;
    std::uint64_t count = 0;    // events not logged
    std::int64_t span_ms = 0;   // since the window's first event
  };
  // The summaries due at now_ms (their window is over), forgotten; kinds
  // whose window ended with nothing to summarize are forgotten too.
  std::vector<Summary> take_due(std::int64_t now_ms);
  // Every pending summary, due or not (the owner goes away).
  std::vector<Summary> take_all(std::int64_t now_ms);
  // When the next summary is due; 0 when none is pending.
  std::int64_t next_due_ms() const;

  // "and 2,991 more in the last 10 s"
  static std::string summary_text(std::uint64_t count, std::int64_t span_ms);

 private:
  struct Window {
    std::int64_t start_ms = 0;
    int logged = 0;
    std::uint64_t suppressed = 0;
  };
  const int burst_;
  const std::int64_t window_ms_;
  std::map<std::string, Window, std::less<>> kinds_;
};

// An EventLimiter that writes: note() logs a line unless its kind is over
// the limit; flush() writes the summaries that are due, as
// "<kind>: ... and N more in the last S s" at the kind's level. The owner
// calls flush() from a timer at next_due_ms(), so a summary comes even when
// the flood has stopped.
class EventLog {
 public:
  explicit EventLog(int burst = EventLimiter::kBurst, std::int64_t window_ms = EventLimiter::kWindowMs)
      : limiter_(burst, window_ms) {}

  // Writes `line` at `level` unless `kind` is over its limit. Returns
  // whether it was written. Due summaries are written first.
  bool note(std::string_view kind, spdlog::level::level_enum level, std::int64_t now_ms, const std::string& line);
  void flush(std::int64_t now_ms);
  void flush_all(std::int64_t now_ms);
  std::int64_t next_due_ms() const { return limiter_.next_due_ms(); }

 private:
  void write(const std::vector<EventLimiter::Summary>& due);

  EventLimiter limiter_;
  std::map<std::string, spdlog::level::level_enum, std::less<>> levels_;
};

}  // namespace ferry
