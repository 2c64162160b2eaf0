#include "common/event_limit.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ferry {
namespace {

// 2991 -> "2,991": counts in a flood are read at a glance.
std::string grouped(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

EventLimiter::EventLimiter(int burst, std::int64_t window_ms)
    : burst_(std::max(burst, 1)), window_ms_(std::max<std::int64_t>(window_ms, 1)) {}

bool EventLimiter::admit(std::string_view kind, std::int64_t now_ms) {
  auto it = kinds_.find(kind);
  if (it == kinds_.end()) it = kinds_.emplace(std::string(kind), Window{now_ms, 0, 0}).first;
  Window& w = it->second;
  if (w.suppressed == 0 && now_ms >= w.start_ms + window_ms_) w = Window{now_ms, 0, 0};  // quiet window over
  if (w.logged < burst_) {
    ++w.logged;
    return true;
  }
  ++w.suppressed;
  return false;
}

std::vector<EventLimiter::Summary> EventLimiter::take_due(std::int64_t now_ms) {
  std::vector<Summary> due;
  for (auto it = kinds_.begin(); it != kinds_.end();) {
    const Window& w = it->second;
    if (now_ms < w.start_ms + window_ms_) {
      ++it;
      continue;
    }
    if (w.suppressed > 0) due.push_back(Summary{it->first, w.suppressed, now_ms - w.start_ms});
    it = kinds_.erase(it);
  }
  return due;
}

std::vector<EventLimiter::Summary> EventLimiter::take_all(std::int64_t now_ms) {
  std::vector<Summary> all;
  for (const auto& [kind, w] : kinds_) {
    if (w.suppressed > 0) all.push_back(Summary{kind, w.suppressed, now_ms - w.start_ms});
  }
  kinds_.clear();
  return all;
}

std::int64_t EventLimiter::next_due_ms() const {
  std::int64_t next = 0;
  for (const auto& [kind, w] : kinds_) {
    if (w.suppressed == 0) continue;
    const std::int64_t due = w.start_ms + window_ms_;
    if (next == 0 || due < next) next = due;
  }
  return next;
}

std::string EventLimiter::summary_text(std::uint64_t count, std::int64_t span_ms) {
  const std::int64_t seconds = std::max<std::int64_t>((span_ms + 500) / 1000, 1);
  return "and " + grouped(count) + " more in the last " + std::to_string(seconds) + " s";
}

bool EventLog::note(std::string_view kind, spdlog::level::level_enum level, std::int64_t now_ms,
                    const std::string& line) {
  flush(now_ms);
  if (!limiter_.admit(kind, now_ms)) {
    if (levels_.find(kind) == levels_.end()) levels_.emplace(std::string(kind), level);
    return false;
  }
  spdlog::log(level, "{}", line);
  return true;
}

void EventLog::flush(std::int64_t now_ms) { write(limiter_.take_due(now_ms)); }

void EventLog::flush_all(std::int64_t now_ms) { write(limiter_.take_all(now_ms)); }

void EventLog::write(const std::vector<EventLimiter::Summary>& due) {
  for (const auto& s : due) {
    auto it = levels_.find(s.kind);
    const auto level = it != levels_.end() ? it->second : spdlog::level::warn;
    spdlog::log(level, "{}: ... {}", s.kind, EventLimiter::summary_text(s.count, s.span_ms));
    if (it != levels_.end()) levels_.erase(it);
  }
}

}  // namespace ferry
