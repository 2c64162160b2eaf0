// Fixture "ops", built twice (fixture_ops_v1.so, fixture_ops_v2.so; the
// version comes from OPS_VERSION) for the live-operations tests:
//   version()          -> "1" or "2": which build answered
//   echo(x)            -> x
//   cooperate(ms)      -> true after ms, or false as soon as ctx.cancelled()
//   ignore(ms)         -> true after ms, never looking at ctx.cancelled()
//   counts()           -> {"started", "noticed", "finished"} of cooperate/ignore
//   await_noticed(n)   -> true once n cooperate calls saw their cancellation
//                         (false after 10 s)
//   recurse(n)         -> n, by nesting n calls of itself (ctx.call), each
//                         level adding 1 to what the level below returned
//   call(fn, args)     -> the result of the nested call fn(args...); its
//                         error propagates with the callee's code
//   poll_cancel(ms)    -> true once poll() on ctx.cancel_fd() returns readable
//                         (recording when), false after ms
//   last_wake()        -> CLOCK_MONOTONIC microseconds of poll_cancel's last
//                         wake, 0 before any
#include <poll.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include <ferry/plugin.hpp>

#ifndef OPS_VERSION
#error "build with -DOPS_VERSION=\"1\" or \"2\""
#endif

namespace {

struct Counts {
  std::mutex mu;
  std::condition_variable cv;
  std::int64_t started = 0, noticed = 0, finished = 0;
};

Counts& counts() {
  static Counts c;
  return c;
}

void bump(std::int64_t Counts::*field) {
  auto& c = counts();
  std::lock_guard lock(c.mu);
  ++(c.*field);
  c.cv.notify_all();
}

bool cooperate(ferry::Context& ctx, std::int64_t ms) {
  bump(&Counts::started);
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (ctx.cancelled()) {
      bump(&Counts::noticed);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  bump(&Counts::finished);
  return true;
}

bool ignore(std::int64_t ms) {
  bump(&Counts::started);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  bump(&Counts::finished);
  return true;
}

bool await_noticed(std::int64_t n) {
  auto& c = counts();
  std::unique_lock lock(c.mu);
  return c.cv.wait_for(lock, std::chrono::seconds(10), [&] { return c.noticed >= n; });
}

// Counts its own levels: the host does not expose the depth.
std::int64_t recurse(ferry::Context& ctx, std::int64_t n) {
  if (n <= 0) return 0;
  return ctx.call("ops.recurse", nlohmann::json::array({n - 1})).get<std::int64_t>() + 1;
}

nlohmann::json call(ferry::Context& ctx, const std::string& fn, const nlohmann::json& args) {
  return ctx.call(fn, args);
}

std::atomic<std::int64_t> last_wake_us{0};

std::int64_t monotonic_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// Blocks in poll() alone: only the cancel fd can end it early.
bool poll_cancel(ferry::Context& ctx, std::int64_t ms) {
  bump(&Counts::started);
  pollfd p{ctx.cancel_fd(), POLLIN, 0};
  if (p.fd < 0) throw ferry::Error(FERRY_E_INTERNAL, "no cancel fd");
  if (::poll(&p, 1, int(ms)) != 1) return false;
  last_wake_us.store(monotonic_us());
  bump(&Counts::noticed);
  return true;
}

}  // namespace

FERRY_PLUGIN("ops", OPS_VERSION) {
  plugin.def("version", [] { return std::string(OPS_VERSION); });
  plugin.raw("echo", [](std::string_view in) { return std::string(in); });
  plugin.def("cooperate", cooperate);
  plugin.def("ignore", ignore);
  plugin.def("await_noticed", await_noticed);
  plugin.def("recurse", recurse);
  plugin.def("call", call);
  plugin.def("poll_cancel", poll_cancel);
  plugin.def("last_wake", [] { return last_wake_us.load(); });
  plugin.def("counts", [] {
    auto& c = counts();
    std::lock_guard lock(c.mu);
    return nlohmann::json{{"started", c.started}, {"noticed", c.noticed}, {"finished", c.finished}};
  });
}
