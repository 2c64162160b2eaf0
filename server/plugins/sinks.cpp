#include "plugins/sinks.hpp"

#include <spdlog/spdlog.h>

#include "common/log_limit.hpp"
#include "common/log_output.hpp"
#include "ferry/plugin.h"

namespace ferry {
namespace {

spdlog::level::level_enum to_level(int level) {
  if (level <= FERRY_LOG_TRACE) return spdlog::level::trace;
  if (level >= FERRY_LOG_ERROR) return spdlog::level::err;
  return spdlog::level::level_enum(level);  // debug, info, warn share numbering
}

}  // namespace

void LogSink::dropped(std::string_view plugin, std::uint64_t n) {
  write(FERRY_LOG_WARN, plugin, 0, LogLimiter::summary_text(n));
}

void SpdlogSink::write(int level, std::string_view plugin, std::uint64_t call_id, std::string_view text) {
  const LogFields with(call_id == 0 ? nlohmann::json{{"plugin", plugin}}
                                    : nlohmann::json{{"plugin", plugin}, {"call_id", call_id}});
  if (call_id == 0) return spdlog::log(to_level(level), "[{}] {}", plugin, text);
  spdlog::log(to_level(level), "[{}] call {}: {}", plugin, call_id, text);
}

}  // namespace ferry
