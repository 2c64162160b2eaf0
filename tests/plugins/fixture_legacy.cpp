// Fixture "legacy10" / "legacy11": a plugin built against the frozen SDK
// headers of plugin ABI 1.0 or 1.1 (tests/plugins/abi/), which the current
// host must still load and run: no settings, no shutdown hook, no partials,
// no cancel fd. LEGACY_NAME names it.
//   abi()            -> "1.0" or "1.1": the headers it was built with
//   add(a, b)        -> a + b
//   echo (raw)       -> the same bytes
//   wait_cancel(ms)  -> true after ms, false as soon as ctx.cancelled();
//                       logs "noticed" through ctx.info when cancelled
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include <ferry/plugin.hpp>

#ifndef LEGACY_NAME
#error "build with -DLEGACY_NAME=\"legacy10\" or \"legacy11\""
#endif

namespace {

bool wait_cancel(ferry::Context& ctx, std::int64_t ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (ctx.cancelled()) {
      ctx.info("noticed");
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

FERRY_PLUGIN(LEGACY_NAME, "1.0.0") {
  plugin.def("abi", [] { return std::to_string(FERRY_ABI_MAJOR) + "." + std::to_string(FERRY_ABI_MINOR); });
  plugin.def("add", [](std::int64_t a, std::int64_t b) { return a + b; });
  plugin.raw("echo", [](std::string_view in) { return std::string(in); });
  plugin.def("wait_cancel", wait_cancel);
}
