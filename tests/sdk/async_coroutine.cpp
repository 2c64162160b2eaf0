// Must not compile: a coroutine cannot be a plugin function (sdk_rejects_async).
#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("async_coroutine", "0") { plugin.def("twice", twice_coroutine); }
