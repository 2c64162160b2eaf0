// Where a plugin's log lines and a call's partial results go. ferryd writes
// log lines to its own log and partials to the caller's connection; a
// ferry-worker sends both over its channel to ferryd. Interfaces only.
#pragma once

#include <cstdint>
#include <string_view>

#include "ferry/errors.h"

namespace ferry {

class CallControl;

// Thread-safe and never blocks: a plugin logs from any of its threads.
class LogSink {
 public:
  virtual ~LogSink() = default;
  // `level` is a FERRY_LOG_* value; `call_id` the client's id of the call
  // that logged, 0 for none (init, a plugin's own threads).
  virtual void write(int level, std::string_view plugin, std::uint64_t call_id, std::string_view text) = 0;
  // `n` lines of `plugin` were dropped by its rate bound (LogLimiter): by
  // default, a warning line that says so.
  virtual void dropped(std::string_view plugin, std::uint64_t n);
};

// ferryd's own: spdlog, "[plugin] call N: text". Stateless: the bound on
// what a plugin writes is its load's (ferry_instance), not the sink's.
class SpdlogSink final : public LogSink {
 public:
  void write(int level, std::string_view plugin, std::uint64_t call_id, std::string_view text) override;
};

// One call's partial results, in order. emit() may block while the caller
// is slow (back-pressure) and must return once `control` is cancelled:
// FERRY_OK, or the code the call ended with (cancelled, timeout).
class PartialSink {
 public:
  virtual ~PartialSink() = default;
  virtual ferry_code emit(std::string_view data, CallControl* control) = 0;
};

}  // namespace ferry
