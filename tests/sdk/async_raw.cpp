// Must not compile: a raw function returning std::shared_future (sdk_rejects_raw).
#include <string>
#include <string_view>

#include <ferry/plugin.hpp>

#include "async_types.hpp"

FERRY_PLUGIN("async_raw", "0") {
  plugin.raw("echo", [](std::string_view in) {
    return std::async([s = std::string(in)] { return s; }).share();
  });
}
