// A ferry-worker's LogSink: each line goes to ferryd as one LOG message on
// the channel (docs/worker-channel.md), sent without waiting, so a full
// channel drops the line instead of blocking the plugin's thread; the count
// of dropped lines goes out as a line of its own once the channel has room.
// Thread-safe: one sendmsg per line, which SOCK_SEQPACKET keeps whole.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "plugins/sinks.hpp"

namespace ferry::worker {

class ChannelLogSink final : public LogSink {
 public:
  explicit ChannelLogSink(int channel) : channel_(channel) {}

  // `call_id` is the channel id of the call that logged (0: none); `plugin`
  // is ignored, as the worker serves one plugin. Text past
  // channel::kMaxLogLine bytes is cut.
  void write(int level, std::string_view plugin, std::uint64_t call_id, std::string_view text) override;
  // Lines dropped and not yet reported.
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  bool send(int level, std::uint64_t call_id, std::string_view text);

  const int channel_;
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace ferry::worker
