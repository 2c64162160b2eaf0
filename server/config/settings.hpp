// [plugins.NAME.settings] → the text of a JSON object, handed to the plugin's
// init. Internal to the config parser (config.cpp). Pure: thread-safe.
#pragma once

#include <optional>
#include <string>

#include <toml++/toml.h>

namespace ferry::config {

// Every plugin's settings travel in each describing worker's spec, whose
// receiver takes at most 1 MiB (docs/worker-channel.md): room is kept for
// the rest of the spec.
constexpr std::size_t kMaxSettingsBytes = 512 * 1024;

// Where a TOML value JSON cannot hold (inf or nan) was found.
struct Unrepresentable {
  const toml::node* node = nullptr;
  std::string key;  // dotted path from `key`, e.g. plugins.x.settings.limits[2]
};

// Converts `table` (found at dotted `key`) to compact JSON text, keys sorted:
// strings, integers, finite floats, booleans, arrays and tables as
// themselves; dates, times and date-times as ISO 8601 strings
// ("1979-05-27", "07:32:00", "1979-05-27T07:32:00Z"). Nothing, with *bad
// set, when a value has no JSON form.
std::optional<std::string> settings_json(const toml::table& table, const std::string& key, Unrepresentable* bad);

}  // namespace ferry::config
