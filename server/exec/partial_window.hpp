// One streamed call's partial results on their way from the thread running it
// to the loop, with back-pressure: at most kPartialWindowBytes (or
// kPartialWindowCount partials) emitted and not yet taken by the loop. emit()
// waits for credit, and gives up as soon as the call is cancelled or passes
// its deadline. Thread-safe: emit() on the call's thread, give_back() on the
// loop, wake() from whoever cancels the call.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

#include "common/clock.hpp"
#include "loop/completion.hpp"
#include "plugins/sinks.hpp"

namespace ferry {

// The window of every streamed call, in both executors: what ferryd may hold
// of one call's partials while its client is slow. A single partial larger
// than the window still goes, alone.
inline constexpr std::size_t kPartialWindowBytes = std::size_t(1) << 20;
inline constexpr std::size_t kPartialWindowCount = 4096;

class PartialWindow final : public PartialSink,
                            public PartialCredit,
                            public std::enable_shared_from_this<PartialWindow> {
 public:
  // Partials of call `ref` go to `sink`, before the call's own completion.
  // `deadline_ms` (Clock ms, 0 = none) bounds every wait for credit.
  PartialWindow(CallRef ref, std::int64_t deadline_ms, CompletionSink& sink, const Clock& clock);

  // FERRY_OK once `data` is on its way; FERRY_E_TIMEOUT or FERRY_E_CANCELLED
  // if the call ended while it waited for credit (nothing was sent).
  ferry_code emit(std::string_view data, CallControl* control) override;
  void give_back(std::size_t count, std::size_t bytes) override;
  // The call was cancelled (its control is): an emit() waiting returns.
  void wake();

 private:
  bool fits(std::size_t size) const;                 // with mu_ held
  ferry_code ended(const CallControl* control) const;  // timeout, cancelled or ok
  void wait(std::unique_lock<std::mutex>& lock);

  const CallRef ref_;
  const std::int64_t deadline_ms_;
  CompletionSink& sink_;
  const Clock& clock_;
  std::mutex mu_;  // guards the counts; held while a partial is handed to the sink, to keep order
  std::condition_variable cv_;
  std::size_t count_ = 0;  // partials emitted, credit not yet back
  std::size_t bytes_ = 0;
};

}  // namespace ferry
