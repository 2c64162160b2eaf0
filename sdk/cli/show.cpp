// The built-ins of `ferry` (list, status, reload): the server's JSON,
// rendered for people, or as it came with --json.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"

namespace ferry_cli {
namespace {

using nlohmann::json;

std::string string_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

using Row = std::array<std::string, 5>;  // FUNCTION PLUGIN VERSION EXECUTOR LOADED

// Rows of the table from a ferry.list reply; nullopt when it has the wrong shape.
std::optional<std::vector<Row>> list_rows(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object() || !doc.contains("plugins") || !doc["plugins"].is_array()) return std::nullopt;
  std::vector<Row> rows;
  for (const json& plugin : doc["plugins"]) {
    if (!plugin.is_object() || !plugin.contains("functions") || !plugin["functions"].is_array()) return std::nullopt;
    for (const json& fn : plugin["functions"]) {
      if (!fn.is_string()) return std::nullopt;
      rows.push_back({fn.get<std::string>(), string_field(plugin, "name"), string_field(plugin, "version"),
                      string_field(plugin, "executor"), string_field(plugin, "loaded_at")});
    }
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

void print_table(std::vector<Row> rows) {
  rows.insert(rows.begin(), Row{"FUNCTION", "PLUGIN", "VERSION", "EXECUTOR", "LOADED"});
  std::array<std::size_t, 5> width{};
  for (const Row& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  for (const Row& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c)
      line += c + 1 < r.size() ? r[c] + std::string(width[c] - r[c].size() + 2, ' ') : r[c];
    std::cout << line << '\n';
  }
}

// Calls a built-in (ferry.list, ferry.status): --json or an error reply is
// reported as is; otherwise `print` renders the reply and returns the status.
template <class Print>
int run_builtin(const Options& o, const char* fn, Print print) {
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  std::optional<ferry::Reply> reply = client->call(fn, "[]");
  if (o.json || !reply || reply->kind != ferry::ReplyKind::result) return report(*client, reply);
  return print(reply->data);
}

std::uint64_t uint_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

// One line per plugin, then one per worker process of a process pool.
void print_status(const json& doc) {
  for (const json& p : doc["plugins"]) {
    std::printf("%s %s  %s x%llu  queued %llu  running %llu  completed %llu", string_field(p, "name").c_str(),
                string_field(p, "version").c_str(), string_field(p, "executor").c_str(),
                (unsigned long long)uint_field(p, "workers"), (unsigned long long)uint_field(p, "queued"),
                (unsigned long long)uint_field(p, "running"), (unsigned long long)uint_field(p, "completed"));
    if (string_field(p, "executor") == "process") {
      std::printf("  restarts %llu", (unsigned long long)uint_field(p, "restarts"));
    } else {
      std::printf("  threads %llu  stuck %llu", (unsigned long long)uint_field(p, "threads"),
                  (unsigned long long)uint_field(p, "stuck"));
    }
    if (uint_field(p, "draining_versions") != 0) {
      std::printf("  old versions finishing %llu", (unsigned long long)uint_field(p, "draining_versions"));
    }
    std::printf("  loaded %s", string_field(p, "loaded_at").c_str());
    std::printf("  health %s", string_field(p, "health").c_str());
    if (const std::string why = string_field(p, "health_reason"); !why.empty()) std::printf(": %s", why.c_str());
    std::printf("\n");
    for (const json& w : p.value("processes", json::array())) {
      std::printf("  pid %-8llu %-9s calls %-8llu rss %.1f MiB\n", (unsigned long long)uint_field(w, "pid"),
                  string_field(w, "state").c_str(), (unsigned long long)uint_field(w, "calls"),
                  double(uint_field(w, "rss_kb")) / 1024.0);
    }
  }
}

}  // namespace

int run_list(const Options& o) {
  return run_builtin(o, "ferry.list", [](const std::string& data) {
    std::optional<std::vector<Row>> rows = list_rows(data);
    if (!rows) return fail(kExitUnexpected, "unexpected ferry.list reply: " + data);
    print_table(std::move(*rows));
    return 0;
  });
}

int run_status(const Options& o) {
  return run_builtin(o, "ferry.status", [](const std::string& data) {
    json doc = json::parse(data, nullptr, false);
    if (!doc.is_object() || !doc.contains("plugins") || !doc["plugins"].is_array())
      return fail(kExitUnexpected, "unexpected ferry.status reply: " + data);
    print_status(doc);
    return 0;
  });
}

// `ferry reload`: what changed, one line each; exit 0 when the config was
// valid (a refused plugin file is reported, and the old version kept).
int run_reload(const Options& o) {
  return run_builtin(o, "ferry.reload", [](const std::string& data) {
    json doc = json::parse(data, nullptr, false);
    if (!doc.is_object()) return fail(kExitUnexpected, "unexpected ferry.reload reply: " + data);
    std::printf("config: %s\n", string_field(doc, "config").c_str());
    for (const json& p : doc.value("loaded", json::array())) {
      std::printf("loaded %s %s from %s\n", string_field(p, "plugin").c_str(), string_field(p, "version").c_str(),
                  string_field(p, "file").c_str());
    }
    for (const json& p : doc.value("removed", json::array())) {
      std::printf("removed %s (%s)\n", string_field(p, "plugin").c_str(), string_field(p, "file").c_str());
    }
    for (const json& p : doc.value("refused", json::array())) {
      std::printf("refused %s: %s\n", string_field(p, "file").c_str(), string_field(p, "why").c_str());
    }
    return 0;
  });
}

}  // namespace ferry_cli
