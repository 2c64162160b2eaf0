// Fixture "latch": named latches that let a test hold calls in flight.
//   wait(key)    -> true once open(key) was called (now or later); false if the
//                   call is cancelled first
//   open(key)    -> number of waiters released; later waits return at once
//   reset(key)   -> closes the latch again
//   waiting(key) -> number of calls blocked in wait(key) right now
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <ferry/plugin.hpp>

namespace {

// One key's state. `opened` counts open() calls, so a waiter released by an
// open() is not caught again by a reset() that comes before it wakes up.
struct Latch {
  bool open = false;
  std::uint64_t opened = 0;
  int waiters = 0;
};

// All latches; guarded by `mu`.
struct Latches {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Latch> by_key;
};

Latches& latches() {
  static Latches all;
  return all;
}

bool latch_wait(ferry::Context& ctx, const std::string& key) {
  auto& all = latches();
  std::unique_lock lock(all.mu);
  Latch& latch = all.by_key[key];
  if (latch.open) return true;
  const std::uint64_t seen = latch.opened;
  ++latch.waiters;
  // Poll cancellation every 10 ms: the host has no way to wake us itself.
  while (latch.opened == seen && !ctx.cancelled()) {
    all.cv.wait_for(lock, std::chrono::milliseconds(10));
  }
  --latch.waiters;
  return latch.opened != seen;
}

int latch_open(const std::string& key) {
  auto& all = latches();
  std::lock_guard lock(all.mu);
  Latch& latch = all.by_key[key];
  latch.open = true;
  ++latch.opened;
  all.cv.notify_all();
  return latch.waiters;
}

void latch_reset(const std::string& key) {
  auto& all = latches();
  std::lock_guard lock(all.mu);
  all.by_key[key].open = false;
}

int latch_waiting(const std::string& key) {
  auto& all = latches();
  std::lock_guard lock(all.mu);
  const auto it = all.by_key.find(key);
  return it == all.by_key.end() ? 0 : it->second.waiters;
}

}  // namespace

FERRY_PLUGIN("latch", "1.0.0") {
  plugin.def("wait", latch_wait);
  plugin.def("open", latch_open);
  plugin.def("reset", latch_reset);
  plugin.def("waiting", latch_waiting);
}
