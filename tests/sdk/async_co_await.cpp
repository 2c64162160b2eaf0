// Must not compile: a result awaitable through a free operator co_await, in a
// function that also takes the Context (sdk_rejects_co_await).
#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("async_co_await", "0") {
  plugin.def("twice", [](ferry::Context&, int x) { return Deferred{2 * x}; });
}
