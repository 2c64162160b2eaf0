// A ferry-worker's LogSink: each line goes to ferryd as one LOG message on
// the channel (docs/worker-channel.md), sent without waiting, so a full
// channel drops the line instead of blocking the plugin's thread. Lines
// dropped here or by the plugin's rate bound are not described in lines of
// their own: their count rides on the next LOG message that gets through,
// and ferryd sums them up with its own drops. Thread-safe: one sendmsg per
// message, which SOCK_SEQPACKET keeps whole.
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
  // Sent as a LOG message without text (only the count).
  void dropped(std::string_view plugin, std::uint64_t n) override;
  // Lines dropped and not yet told to ferryd.
  std::uint64_t pending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  void send(int level, std::uint64_t call_id, std::string_view text, std::uint64_t lost_before);

  const int channel_;
  std::atomic<std::uint64_t> pending_{0};
};

}  // namespace ferry::worker
