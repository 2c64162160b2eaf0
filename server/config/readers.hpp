// The typed readers server.toml's tables are walked with: each checks one
// TOML value's type, then its range or form, and on failure records one
// message naming file, line and key. Private to server/config/; plain
// functions on the Ctx of one parse, not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

namespace ferry::config::detail {

// State of one parse: where relative paths point, and the first error.
struct Ctx {
  std::string file;            // as given by the caller: it prefixes every message
  std::filesystem::path dir;   // absolute directory of the config file
  std::string error;
};

// Records "<file>:<line>: <key>: <msg>" and returns false, so checks chain.
bool fail(Ctx& c, const toml::node& n, const std::string& key, std::string_view msg);
// "path.key", or "key" at the top.
std::string join(const std::string& path, std::string_view key);
// p against dir, unless it is absolute.
std::filesystem::path resolve(const std::filesystem::path& dir, const std::filesystem::path& p);

template <class Int>
bool read_int(Ctx& c, const toml::node& n, const std::string& key, std::int64_t lo, std::int64_t hi, Int& out) {
  const auto* v = n.as_integer();
  if (!v) return fail(c, n, key, "must be an integer");
  if (v->get() < lo || v->get() > hi)
    return fail(c, n, key, "must be " + std::to_string(lo) + ".." + std::to_string(hi));
  out = static_cast<Int>(v->get());
  return true;
}

// The string, or null (error recorded) when the value is not one.
const std::string* read_string(Ctx& c, const toml::node& n, const std::string& key);
// A non-empty path, resolved against the config file's directory.
bool read_path(Ctx& c, const toml::node& n, const std::string& key, std::filesystem::path& out);
bool read_bool(Ctx& c, const toml::node& n, const std::string& key, bool& out);
// An array of paths, each resolved against the config file's directory.
bool read_path_list(Ctx& c, const toml::node& n, const std::string& key, std::vector<std::string>& out);

}  // namespace ferry::config::detail
