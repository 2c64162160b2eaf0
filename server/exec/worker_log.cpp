#include "exec/worker_log.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log_output.hpp"
#include "common/text.hpp"
#include "ferry/plugin.h"
#include "worker/channel.hpp"

namespace ferry {
namespace {

// FERRY_LOG_TRACE..ERROR are spdlog's trace..err.
void to_spdlog(int level, const std::string& line) {
  spdlog::log(spdlog::level::level_enum(std::clamp(level, int(FERRY_LOG_TRACE), int(FERRY_LOG_ERROR))), "{}", line);
}

}  // namespace

void LineSplitter::feed(std::string_view bytes, const Line& line) {
  while (!bytes.empty()) {
    const std::size_t nl = bytes.find('\n');
    if (!skipping_) {
      partial_.append(bytes.substr(0, std::min(nl, max_ + 1 - partial_.size())));
      if (partial_.size() > max_) {
        line(cut_line(partial_, max_));
        partial_.clear();
        skipping_ = true;
      }
    }
    if (nl == std::string_view::npos) return;
    if (!skipping_) line(partial_);
    partial_.clear();
    skipping_ = false;
    bytes.remove_prefix(nl + 1);
  }
}

void LineSplitter::flush(const Line& line) {
  if (!skipping_ && !partial_.empty()) line(partial_);
  partial_.clear();
  skipping_ = false;
}

WorkerLog::WorkerLog(std::string plugin, int pid, Writer writer)
    : plugin_(std::move(plugin)),
      pid_(pid),
      writer_(writer ? std::move(writer) : Writer(to_spdlog)),
      out_(channel::kMaxLogLine),
      err_(channel::kMaxLogLine) {}

void WorkerLog::message(std::uint32_t level, std::uint64_t call_id, std::uint64_t lost, std::string_view text,
                        std::int64_t now_ms) {
  limit_.count_dropped(lost, now_ms);
  if (text.empty()) return summarize(now_ms);
  const int lv = int(std::min<std::uint32_t>(level, FERRY_LOG_ERROR));  // a worker cannot log critical
  write(lv, call_id != 0 ? " call " + std::to_string(call_id) : std::string(), text, now_ms);
}

void WorkerLog::output(Stream stream, std::string_view bytes, std::int64_t now_ms) {
  const bool err = stream == Stream::err;
  (err ? err_ : out_).feed(bytes, [&](std::string_view line) { write_output(err, line, now_ms); });
}

// Blank lines are not worth a log line (nor a token).
void WorkerLog::write_output(bool err, std::string_view line, std::int64_t now_ms) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!line.empty()) write(err ? FERRY_LOG_WARN : FERRY_LOG_INFO, err ? " stderr" : " stdout", line, now_ms);
}

void WorkerLog::write(int level, std::string_view source, std::string_view text, std::int64_t now_ms) {
  const bool admitted = limit_.admit(now_ms);
  summarize(now_ms);
  if (!admitted) return;
  const LogFields with({{"plugin", plugin_}, {"pid", pid_}});
  writer_(level, "[" + plugin_ + "] worker " + std::to_string(pid_) + std::string(source) + ": " +
                     printable(cut_line(text, channel::kMaxLogLine)));
}

void WorkerLog::summarize(std::int64_t now_ms) {
  if (const std::uint64_t n = limit_.take_summary(now_ms); n != 0) write_summary(n);
}

void WorkerLog::finish(std::int64_t now_ms) {
  out_.flush([&](std::string_view line) { write_output(false, line, now_ms); });
  err_.flush([&](std::string_view line) { write_output(true, line, now_ms); });
  if (const std::uint64_t n = limit_.take_all(); n != 0) write_summary(n);
}

void WorkerLog::write_summary(std::uint64_t dropped) {
  writer_(FERRY_LOG_WARN, "[" + plugin_ + "] worker " + std::to_string(pid_) + ": " + LogLimiter::summary_text(dropped));
}

}  // namespace ferry
