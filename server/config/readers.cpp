#include "config/readers.hpp"

namespace ferry::config::detail {

namespace fs = std::filesystem;

// Records "<file>:<line>: <key>: <msg>" and returns false, so checks chain.
bool fail(Ctx& c, const toml::node& n, const std::string& key, std::string_view msg) {
  c.error = c.file + ":" + std::to_string(n.source().begin.line) + ": " + key + ": ";
  c.error += msg;
  return false;
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

fs::path resolve(const fs::path& dir, const fs::path& p) {
  return p.is_absolute() ? p : (dir / p).lexically_normal();
}

const std::string* read_string(Ctx& c, const toml::node& n, const std::string& key) {
  const auto* v = n.as_string();
  if (!v) fail(c, n, key, "must be a string");
  return v ? &v->get() : nullptr;
}

bool read_path(Ctx& c, const toml::node& n, const std::string& key, fs::path& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  if (s->empty() || s->find('\0') != std::string::npos)
    return fail(c, n, key, "must be a non-empty path");
  out = resolve(c.dir, *s);
  return true;
}

bool read_bool(Ctx& c, const toml::node& n, const std::string& key, bool& out) {
  const auto* v = n.as_boolean();
  if (!v) return fail(c, n, key, "must be true or false");
  out = v->get();
  return true;
}

// An array of paths, each resolved against the config file's directory.
bool read_path_list(Ctx& c, const toml::node& n, const std::string& key,
                    std::vector<std::string>& out) {
  const auto* a = n.as_array();
  if (!a) return fail(c, n, key, "must be an array of paths");
  out.clear();
  for (std::size_t i = 0; i < a->size(); ++i) {
    fs::path p;
    if (!read_path(c, *a->get(i), key + "[" + std::to_string(i) + "]", p)) return false;
    out.push_back(p.string());
  }
  return true;
}

}  // namespace ferry::config::detail
