// Must not compile: a function returning an awaitable (sdk_rejects_awaitable).
#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("async_awaitable", "0") {
  plugin.def("twice", [](int x) { return Ready{2 * x}; });
}
