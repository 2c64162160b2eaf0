// What ferryd makes of one worker's log: its LOG messages and the bytes of
// its stdout and stderr become lines of ferryd's log, "[plugin] worker PID
// call N: text" or "[plugin] worker PID stdout: text", with control
// characters replaced, cut at channel::kMaxLogLine bytes, and bounded
// together by one LogLimiter, whose drops are summed up in one line at most
// once per second. A worker cannot make it hold more than one unfinished
// line per stream. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/log_limit.hpp"

namespace ferry {

// Splits a byte stream into lines; a line longer than `max` bytes is cut
// there (cut_line's marker) and the rest of it skipped, so at most max + 1
// bytes wait for a line's end. Plain logic; not thread-safe.
class LineSplitter {
 public:
  using Line = std::function<void(std::string_view)>;
  explicit LineSplitter(std::size_t max) : max_(max) {}
  // Calls line(text) for each line `bytes` completes, without its '\n'.
  void feed(std::string_view bytes, const Line& line);
  // The unfinished last line, if any (the stream ended without a '\n').
  void flush(const Line& line);

 private:
  const std::size_t max_;
  std::string partial_;
  bool skipping_ = false;  // the rest of a line already cut
};

class WorkerLog {
 public:
  // Takes each finished line with its FERRY_LOG_* level: spdlog by default.
  using Writer = std::function<void(int level, const std::string& line)>;
  enum class Stream { out, err };

  WorkerLog(std::string plugin, int pid, Writer writer = {});

  // A LOG message: `level` as sent (above FERRY_LOG_ERROR counts as error),
  // `call_id` the client's id of the call that logged (0: none), `lost` the
  // lines the worker dropped before it, and its text ("": none, only lost).
  void message(std::uint32_t level, std::uint64_t call_id, std::uint64_t lost, std::string_view text,
               std::int64_t now_ms);
  // Bytes read from the worker's stdout (logged at info) or stderr (warn).
  void output(Stream stream, std::string_view bytes, std::int64_t now_ms);
  // When a summary of dropped lines is due (0: none), and writing it then.
  std::int64_t summary_due_ms() const { return limit_.summary_due_ms(); }
  void summarize(std::int64_t now_ms);
  // The worker is gone: its unfinished lines, then every drop not yet told.
  void finish(std::int64_t now_ms);

 private:
  void write_output(bool err, std::string_view line, std::int64_t now_ms);
  void write(int level, std::string_view source, std::string_view text, std::int64_t now_ms);
  void write_summary(std::uint64_t dropped);

  const std::string plugin_;
  const int pid_;
  Writer writer_;
  LogLimiter limit_;
  LineSplitter out_;
  LineSplitter err_;
};

}  // namespace ferry
