#include "worker/log_sink.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/text.hpp"
#include "ferry/plugin.h"
#include "worker/channel.hpp"

namespace ferry::worker {

// An empty line is not worth a message (ferryd would not log it).
void ChannelLogSink::write(int level, std::string_view, std::uint64_t call_id, std::string_view text) {
  if (!text.empty()) send(level, call_id, text, 1);
}

void ChannelLogSink::dropped(std::string_view, std::uint64_t n) { send(FERRY_LOG_WARN, 0, {}, n); }

// The count of lines lost before this one goes in `deadline_ms`; if the
// message does not fit, that count and `lost` (what this message stood for:
// its line, or the lines it was to report) wait for the next one.
// Never the memfd path: a cut line is far below channel::kInlineMax.
void ChannelLogSink::send(int level, std::uint64_t call_id, std::string_view text, std::uint64_t lost) {
  static_assert(channel::kMaxLogLine + 16 < channel::kInlineMax);
  const std::uint64_t before = pending_.exchange(0, std::memory_order_relaxed);
  channel::Header h{channel::Type::log, 0, call_id};
  h.code = std::uint32_t(std::clamp<int>(level, FERRY_LOG_TRACE, FERRY_LOG_ERROR));
  const bool count_only = text.empty();
  h.deadline_ms = std::int64_t(std::min<std::uint64_t>(before + (count_only ? lost : 0), INT64_MAX));
  const Status sent = text.size() <= channel::kMaxLogLine
                          ? channel::send_nowait(channel_, h, text)
                          : channel::send_nowait(channel_, h, cut_line(text, channel::kMaxLogLine));
  if (!sent.ok()) pending_.fetch_add(before + lost, std::memory_order_relaxed);
}

}  // namespace ferry::worker
