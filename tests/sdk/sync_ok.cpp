// Must compile (sdk_accepts_sync): the positive control for the sdk_rejects_*
// checks. Same includes and types, used in every way except as a result.
#include <string>
#include <string_view>

#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("sync_ok", "0") {
  plugin.def("twice", [](int x) { return 2 * x; });
  plugin.def("awaits", [](ferry::Context&, int x) {
    await_both(x);
    twice_coroutine(x);
    return std::async([x] { return 2 * x; }).get();
  });
  plugin.raw("echo", [](std::string_view in) {
    return std::async([s = std::string(in)] { return s; }).share().get();
  });
}
