// JSON text from strings that may not be UTF-8 (file names, a plugin's
// version): invalid bytes become U+FFFD instead of an exception, so no
// name on disk can end ferryd. Thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ferry {

inline std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace ferry
