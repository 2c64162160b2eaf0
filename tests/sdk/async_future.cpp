// Must not compile: a function returning std::future (sdk_rejects_future).
#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("async_future", "0") {
  plugin.def("twice", [](int x) { return std::async([x] { return 2 * x; }); });
}
