// "demo": an example Ferry plugin showing the rest of the SDK.
//
//   demo.echo      [x]          -> x                  any JSON value, unchanged
//   demo.sleep_ms  [ms]         -> ms actually slept  stops early when cancelled
//   demo.fail      ["message"]  -> plugin_error "message"
//   demo.crash     []           -> kills the process (SIGSEGV), on purpose
//   demo.noop      (raw bytes)  -> null               the benchmark's no-op
//   demo.echo_raw  (raw bytes)  -> the same bytes     any bytes, JSON or not
//   demo.count     [n, ms]      -> n                  streams 1..n as partial results, one every ms
//   demo.is_prime_slow [n]      -> bool               trial division: CPU-bound work for the benchmark
//
// See plugins/primes/primes.cpp for how to start a plugin of your own.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include <ferry/plugin.hpp>

#include "trial_division.h"

namespace {

nlohmann::json echo(nlohmann::json value) { return value; }

// ctx.sleep_for waits on the call's cancel_fd, so a cancelled call (or one
// past its deadline) returns at once instead of holding a worker. Returns ms
// when it slept through, the milliseconds slept so far when cancelled.
std::int64_t sleep_ms(ferry::Context& ctx, std::int64_t ms) {
  using namespace std::chrono;
  if (ms < 0) throw ferry::Error(FERRY_E_BAD_REQUEST, "sleep_ms needs ms >= 0");
  const auto start = steady_clock::now();
  if (ctx.sleep_for(milliseconds(ms))) return ms;
  const auto slept = duration_cast<milliseconds>(steady_clock::now() - start).count();
  ctx.info("sleep_ms cancelled after " + std::to_string(slept) + " ms");
  return std::min<std::int64_t>(slept, ms);
}

// Any exception other than ferry::Error reaches the client as plugin_error
// with what() as the message.
void fail(const std::string& msg) { throw std::runtime_error(msg); }

// Writes through a null pointer the compiler cannot see through, so this
// really faults (a thread-pool executor loses the host; a process pool loses
// one worker and replies worker_crashed).
void crash() {
  // A store through a pointer the compiler cannot prove null: a real fault,
  // not undefined behaviour a sanitizer or optimizer could turn into an exit.
  volatile std::uintptr_t address = 8;
  *reinterpret_cast<volatile int*>(address) = 42;
}

// Streams 1, 2, ..., n as partial results (ctx.emit), one every `ms`
// milliseconds, and returns n. Clients that ask see each number as it comes
// (`ferry call --stream demo.count 5 200`); others get only the result. The
// waits use ctx.sleep_for, so a cancelled call stops at once; emit() throws
// once the call is over, which ends this function too.
std::int64_t count(ferry::Context& ctx, std::int64_t n, std::int64_t ms) {
  if (n < 0 || ms < 0) throw ferry::Error(FERRY_E_BAD_REQUEST, "count needs n >= 0 and ms >= 0");
  for (std::int64_t i = 1; i <= n; ++i) {
    ctx.emit(i);
    if (i < n && ms > 0 && !ctx.sleep_for(std::chrono::milliseconds(ms))) break;
  }
  return n;
}

}  // namespace

FERRY_PLUGIN("demo", "1.0.0") {
  plugin.def("echo", echo);
  plugin.def("sleep_ms", sleep_ms);
  plugin.def("fail", fail);
  plugin.def("crash", crash);
  plugin.def("count", count);
  plugin.def("is_prime_slow", [](std::uint64_t n) { return ferry_trial_division(n) != 0; });
  // raw: the payload is not parsed and the reply is these exact bytes.
  plugin.raw("noop", [](std::string_view) { return std::string("null"); });
  plugin.raw("echo_raw", [](std::string_view bytes) { return std::string(bytes); });
}
