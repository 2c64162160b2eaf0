#include "worker/log_sink.hpp"

#include <algorithm>
#include <string>

#include "common/text.hpp"
#include "ferry/plugin.h"
#include "worker/channel.hpp"

namespace ferry::worker {

void ChannelLogSink::write(int level, std::string_view, std::uint64_t call_id, std::string_view text) {
  if (const std::uint64_t n = dropped_.exchange(0, std::memory_order_relaxed); n != 0) {
    const std::string summary = std::to_string(n) + " log lines dropped: the channel to ferryd was full";
    if (!send(FERRY_LOG_WARN, 0, summary)) dropped_.fetch_add(n, std::memory_order_relaxed);
  }
  if (!send(level, call_id, text)) dropped_.fetch_add(1, std::memory_order_relaxed);
}

// Never the memfd path: a cut line is far below channel::kInlineMax.
bool ChannelLogSink::send(int level, std::uint64_t call_id, std::string_view text) {
  static_assert(channel::kMaxLogLine + 16 < channel::kInlineMax);
  channel::Header h{channel::Type::log, 0, call_id};
  h.code = std::uint32_t(std::clamp<int>(level, FERRY_LOG_TRACE, FERRY_LOG_ERROR));
  if (text.size() <= channel::kMaxLogLine) return channel::send_nowait(channel_, h, text).ok();
  return channel::send_nowait(channel_, h, cut_line(text, channel::kMaxLogLine)).ok();
}

}  // namespace ferry::worker
