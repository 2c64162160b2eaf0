#include "config/settings.hpp"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/json_text.hpp"

namespace ferry::config {
namespace {

using nlohmann::json;

template <class T>
std::string iso(const T& value) {
  std::ostringstream out;
  out << value;  // toml++ prints dates and times in RFC 3339 (ISO 8601) form
  return out.str();
}

bool convert(const toml::node& n, const std::string& key, json* out, Unrepresentable* bad);

bool convert_table(const toml::table& t, const std::string& key, json* out, Unrepresentable* bad) {
  *out = json::object();
  for (auto&& [k, v] : t) {
    if (!convert(v, key + "." + std::string(k.str()), &(*out)[std::string(k.str())], bad)) return false;
  }
  return true;
}

bool convert_array(const toml::array& a, const std::string& key, json* out, Unrepresentable* bad) {
  *out = json::array();
  for (std::size_t i = 0; i < a.size(); ++i) {
    out->push_back(nullptr);
    if (!convert(*a.get(i), key + "[" + std::to_string(i) + "]", &out->back(), bad)) return false;
  }
  return true;
}

bool convert(const toml::node& n, const std::string& key, json* out, Unrepresentable* bad) {
  if (const auto* t = n.as_table()) return convert_table(*t, key, out, bad);
  if (const auto* a = n.as_array()) return convert_array(*a, key, out, bad);
  if (const auto* s = n.as_string()) return *out = s->get(), true;
  if (const auto* i = n.as_integer()) return *out = i->get(), true;
  if (const auto* b = n.as_boolean()) return *out = b->get(), true;
  if (const auto* d = n.as_date()) return *out = iso(d->get()), true;
  if (const auto* t = n.as_time()) return *out = iso(t->get()), true;
  if (const auto* dt = n.as_date_time()) return *out = iso(dt->get()), true;
  if (const auto* f = n.as_floating_point(); f != nullptr && std::isfinite(f->get())) return *out = f->get(), true;
  *bad = Unrepresentable{&n, key};
  return false;
}

}  // namespace

std::optional<std::string> settings_json(const toml::table& table, const std::string& key, Unrepresentable* bad) {
  json j;
  if (!convert_table(table, key, &j, bad)) return std::nullopt;
  return json_text(j);
}

}  // namespace ferry::config
