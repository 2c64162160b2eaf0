// server.toml → Config: parse with toml++, then walk each table through a
// list of known keys. The first error found is reported; nothing is logged here
// (the caller decides whether a bad config is fatal or a refused reload).
#include "config/config.hpp"

#include "config/readers.hpp"
#include "config/settings.hpp"
#include "sandbox/fields.hpp"

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <memory>
#include <span>
#include <system_error>
#include <utility>

#include <toml++/toml.h>

namespace ferry::config {
namespace {

namespace fs = std::filesystem;
using namespace detail;  // NOLINT: the readers are this file's vocabulary

// Flip to true once the process executor lands; the check below then vanishes.
constexpr bool kProcessExecutorSupported = true;

constexpr std::array<std::string_view, 7> kLogLevels = {
    "trace", "debug", "info", "warn", "error", "critical", "off"};

// Largest socket path bind() accepts (sun_path includes the terminating NUL).
constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

bool read_socket_path(Ctx& c, const toml::node& n, const std::string& key, fs::path& out) {
  if (!read_path(c, n, key, out)) return false;
  if (out.native().size() > kMaxSocketPath)
    return fail(c, n, key, "resolves to " + out.string() + ", longer than the " +
                               std::to_string(kMaxSocketPath) + " bytes a socket path may have");
  return true;
}

bool read_socket_mode(Ctx& c, const toml::node& n, const std::string& key, std::uint32_t& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  std::uint32_t mode = 0;
  const char* end = s->data() + s->size();
  auto [ptr, ec] = std::from_chars(s->data(), end, mode, 8);
  if (s->empty() || ec != std::errc() || ptr != end || mode > 0777)
    return fail(c, n, key, "must be an octal string such as \"0660\", at most \"0777\"");
  out = mode;
  return true;
}

bool read_log_level(Ctx& c, const toml::node& n, const std::string& key, std::string& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  if (std::find(kLogLevels.begin(), kLogLevels.end(), *s) == kLogLevels.end())
    return fail(c, n, key, "must be one of trace, debug, info, warn, error, critical, off");
  out = *s;
  return true;
}

bool read_log_format(Ctx& c, const toml::node& n, const std::string& key, LogFormat& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  if (*s != "text" && *s != "json") return fail(c, n, key, "must be \"text\" or \"json\"");
  out = *s == "json" ? LogFormat::json : LogFormat::text;
  return true;
}

// "ADDRESS:PORT": an IPv4 address, or an IPv6 one in brackets; port 0..65535.
bool read_listen(Ctx& c, const toml::node& n, const std::string& key, std::string& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  if (s->empty()) return out.clear(), true;
  const auto colon = s->rfind(':');
  std::uint32_t port = 0;
  const char* end = s->data() + s->size();
  const bool port_ok = colon != std::string::npos && colon + 1 < s->size() &&
                       std::from_chars(s->data() + colon + 1, end, port).ptr == end && port <= 65535;
  const std::string host = colon == std::string::npos ? "" : s->substr(0, colon);
  in6_addr a6;
  in_addr a4;
  const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']' &&
                  inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) == 1;
  if (!port_ok || !(v6 || inet_pton(AF_INET, host.c_str(), &a4) == 1))
    return fail(c, n, key, "must be \"ADDRESS:PORT\", e.g. \"127.0.0.1:9464\" or \"[::1]:9464\"");
  out = *s;
  return true;
}

bool read_executor(Ctx& c, const toml::node& n, const std::string& key, ExecutorKind& out) {
  const std::string* s = read_string(c, n, key);
  if (!s) return false;
  if (*s != "thread" && *s != "process")
    return fail(c, n, key, "must be \"thread\" or \"process\"");
  if (*s == "process" && !kProcessExecutorSupported)
    return fail(c, n, key, "\"process\" is not yet supported (use \"thread\")");
  out = *s == "thread" ? ExecutorKind::thread : ExecutorKind::process;
  return true;
}

// ---- key tables: one row per accepted key ----

template <class T>
struct Field {
  std::string_view key;
  bool (*read)(Ctx&, const toml::node&, const std::string&, T&);
};

using SC = ServerConfig;
using PC = PluginConfig;
using Node = toml::node;
using Key = std::string;

const Field<ServerConfig> kServerFields[] = {
    {"socket_path", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_socket_path(c, n, k, s.socket_path); }},
    {"socket_mode", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_socket_mode(c, n, k, s.socket_mode); }},
    {"plugin_dir", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_path(c, n, k, s.plugin_dir); }},
    {"log_level", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_log_level(c, n, k, s.log_level); }},
    {"log_format", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_log_format(c, n, k, s.log_format); }},
    {"log_file", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_path(c, n, k, s.log_file); }},
    {"max_frame_bytes", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 1024, 1073741824, s.max_frame_bytes); }},
    {"max_connections", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 1, 65536, s.max_connections); }},
    {"drain_timeout_ms", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 0, 3600000, s.drain_timeout_ms); }},
    {"handshake_timeout_ms", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 0, 3600000, s.handshake_timeout_ms); }},
    {"idle_timeout_ms", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 0, 86400000, s.idle_timeout_ms); }},
    {"max_call_depth", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_int(c, n, k, 1, 1000, s.max_call_depth); }},
    {"metrics_listen", [](Ctx& c, const Node& n, const Key& k, SC& s) {
       return read_listen(c, n, k, s.metrics_listen); }},
};

bool read_sandbox(Ctx& c, const toml::node& n, const std::string& key, sandbox::Spec& out);
bool read_settings(Ctx& c, const toml::node& n, const std::string& key, std::string& out);

const Field<PluginConfig> kPluginFields[] = {
    {"executor", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_executor(c, n, k, p.executor); }},
    {"workers", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 1, 1024, p.workers); }},
    {"queue_limit", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 0, 1000000, p.queue_limit); }},
    {"timeout_ms", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 1, 86400000, p.timeout_ms); }},
    {"max_calls_per_worker", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 0, 1000000000, p.max_calls_per_worker); }},
    {"max_rss_mb", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 0, 1048576, p.max_rss_mb); }},
    {"pipeline_depth", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 1, 64, p.pipeline_depth); }},
    {"max_stuck_threads", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_int(c, n, k, 0, 1024, p.max_stuck_threads); }},
    {"sandbox", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_sandbox(c, n, k, p.sandbox); }},
    {"settings", [](Ctx& c, const Node& n, const Key& k, PC& p) {
       return read_settings(c, n, k, p.settings); }},
};

template <class T>
const Field<T>* find_field(std::span<const Field<T>> fields, std::string_view key) {
  auto it = std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return f.key == key; });
  return it == fields.end() ? nullptr : &*it;
}

// Reads every key of `table` (found at dotted `path`) into `out`.
template <class T>
bool read_fields(Ctx& c, const toml::table& table, const std::string& path,
                 std::span<const Field<T>> fields, T& out) {
  for (auto&& [key, node] : table) {
    const std::string full = join(path, key.str());
    const Field<T>* f = find_field(fields, key.str());
    if (!f) return fail(c, node, full, "unknown key");
    if (!f->read(c, node, full, out)) return false;
  }
  return true;
}

const toml::table* as_table(Ctx& c, const toml::node& n, const std::string& key) {
  const toml::table* t = n.as_table();
  if (!t) fail(c, n, key, "must be a table");
  return t;
}

// One key of a sandbox table, as its row of sandbox::kSpecFields says.
bool read_spec_field(Ctx& c, const toml::node& n, const std::string& key, const sandbox::SpecField& f,
                     sandbox::Spec& out) {
  if (f.flag) return read_bool(c, n, key, out.*f.flag);
  if (f.number) return read_int(c, n, key, std::int64_t(f.min), std::int64_t(f.max), out.*f.number);
  return read_path_list(c, n, key, out.*f.paths);
}

bool read_sandbox(Ctx& c, const toml::node& n, const std::string& key, sandbox::Spec& out) {
  const toml::table* t = as_table(c, n, key);
  if (!t) return false;
  for (auto&& [name, node] : *t) {
    const std::string full = join(key, name.str());
    const auto& fields = sandbox::kSpecFields;
    const auto* f = std::find_if(std::begin(fields), std::end(fields), [&](const auto& f) { return f.key == name.str(); });
    if (f == std::end(fields)) return fail(c, node, full, "unknown key");
    if (!read_spec_field(c, node, full, *f, out)) return false;
  }
  return true;
}

bool read_settings(Ctx& c, const toml::node& n, const std::string& key, std::string& out) {
  const toml::table* t = as_table(c, n, key);
  if (!t) return false;
  Unrepresentable bad;
  std::optional<std::string> json = settings_json(*t, key, &bad);
  if (!json) return fail(c, *bad.node, bad.key, "must be a finite number (JSON has no inf or nan)");
  out = std::move(*json);
  return true;
}

// ---- sections ----

bool check_top_level(Ctx& c, const toml::table& root) {
  for (auto&& [key, node] : root) {
    const std::string_view k = key.str();
    if (k != "server" && k != "defaults" && k != "plugins")
      return fail(c, node, std::string(k), "unknown key");
  }
  return true;
}

// An absent section keeps the struct's defaults.
template <class T>
bool read_section(Ctx& c, const toml::table& root, const std::string& name,
                  std::span<const Field<T>> fields, T& out) {
  const toml::node* n = root.get(name);
  if (!n) return true;
  const toml::table* t = as_table(c, *n, name);
  return t && read_fields(c, *t, name, fields, out);
}

bool check_plugin_name(Ctx& c, const toml::node& n, const std::string& key, std::string_view name) {
  auto ok = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
  };
  if (name.empty() || !std::all_of(name.begin(), name.end(), ok))
    return fail(c, n, key, "plugin name must match [A-Za-z0-9_]+");
  if (name == "ferry")
    return fail(c, n, key, "\"ferry\" is reserved for built-in functions");
  return true;
}

// [plugins.NAME]: each starts as a copy of [defaults], so omitted keys inherit.
bool read_plugin(Ctx& c, std::string_view name, const toml::node& n, Config& cfg) {
  const std::string key = join("plugins", name);
  if (!check_plugin_name(c, n, key, name)) return false;
  const toml::table* t = as_table(c, n, key);
  PluginConfig p = cfg.defaults;
  if (!t || !read_fields<PluginConfig>(c, *t, key, kPluginFields, p)) return false;
  cfg.plugins.emplace(std::string(name), p);
  return true;
}

bool read_plugins(Ctx& c, const toml::table& root, Config& cfg) {
  const toml::node* n = root.get("plugins");
  if (!n) return true;
  const toml::table* t = as_table(c, *n, "plugins");
  if (!t) return false;
  std::size_t settings_bytes = 0;
  for (auto&& [name, node] : *t) {
    if (!read_plugin(c, name.str(), node, cfg)) return false;
    settings_bytes += cfg.plugins.at(std::string(name.str())).settings.size();
    if (settings_bytes > kMaxSettingsBytes)
      return fail(c, node, join("plugins", name.str()) + ".settings",
                  "the settings of all plugins together exceed 512 KiB as JSON");
  }
  return true;
}

// Settings belong to one plugin: [defaults] would hand every plugin the same.
bool check_defaults(Ctx& c, const toml::table& root) {
  const toml::node* n = root.get("defaults");
  const toml::node* s = n && n->is_table() ? n->as_table()->get("settings") : nullptr;
  if (!s) return true;
  return fail(c, *s, "defaults.settings", "settings are per plugin: put them in [plugins.NAME.settings]");
}

bool read_root(Ctx& c, const toml::table& root, Config& cfg) {
  return check_top_level(c, root) &&
         read_section<ServerConfig>(c, root, "server", kServerFields, cfg.server) &&
         check_defaults(c, root) &&
         read_section<PluginConfig>(c, root, "defaults", kPluginFields, cfg.defaults) &&
         read_plugins(c, root, cfg);
}

// ---- I/O and entry points ----

// The absolute, normalised form of `file` (unchanged if the cwd is unknown).
fs::path absolute_file(const fs::path& file) {
  std::error_code ec;
  fs::path abs = fs::absolute(file, ec);
  return ec ? file : abs.lexically_normal();
}

// Reads all of `file` into `out`; returns 0 or the errno of the failure.
int read_all(const fs::path& file, std::string& out) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!f) return errno;
  char buf[16384];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f.get())) out.append(buf, n);
  return std::ferror(f.get()) ? (errno ? errno : EIO) : 0;
}

std::optional<toml::table> parse_toml(Ctx& c, std::string_view text) {
  try {
    return toml::parse(text, std::string_view(c.file));
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    c.error = c.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
              std::string(e.description());
    return std::nullopt;
  }
}

}  // namespace

const PluginConfig& Config::plugin(const std::string& name) const {
  auto it = plugins.find(name);
  return it == plugins.end() ? defaults : it->second;
}

SettingsMap Config::settings() const {
  SettingsMap out;
  for (const auto& [name, p] : plugins) out.emplace(name, p.settings);
  return out;
}

Result<Config> parse_config_text(std::string_view text, const std::filesystem::path& file) {
  Config cfg;
  cfg.file = absolute_file(file);
  Ctx c{file.string(), cfg.file.parent_path(), {}};
  std::optional<toml::table> root = parse_toml(c, text);
  if (!root || !read_root(c, *root, cfg)) return Status(FERRY_E_BAD_REQUEST, std::move(c.error));
  // Keys left at their defaults are resolved too (plugin_dir's is relative).
  cfg.server.socket_path = resolve(c.dir, cfg.server.socket_path);
  cfg.server.plugin_dir = resolve(c.dir, cfg.server.plugin_dir);
  return cfg;
}

Result<Config> parse_config_file(const std::filesystem::path& file) {
  std::string text;
  if (int err = read_all(file, text))
    return Status(FERRY_E_BAD_REQUEST, file.string() + ": cannot read: " + std::generic_category().message(err));
  return parse_config_text(text, file);
}

}  // namespace ferry::config
