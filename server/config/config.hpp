// server.toml as typed, validated structs.
// Plain values; parse_config() builds one, nothing else mutates it. Thread-compatible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.hpp"
#include "sandbox/sandbox.hpp"

namespace ferry::config {

enum class ExecutorKind { thread, process };
enum class LogFormat { text, json };

// How one plugin's calls run. Every field falls back to [defaults].
struct PluginConfig {
  ExecutorKind executor = ExecutorKind::thread;  // Default: "thread"
  int workers = 4;                               // Default: 4; 1..1024
  int queue_limit = 1024;                        // Default: 1024; 0..1000000
  std::uint32_t timeout_ms = 30000;              // Default: 30000; 1..86400000
  // Thread executor only: threads still running a call past its deadline or
  // cancellation are "stuck"; the pool starts up to this many replacements so
  // its live capacity stays `workers`.
  int max_stuck_threads = 4;  // Default: 4; 0..1024
  // Process executor only:
  std::uint64_t max_calls_per_worker = 0;  // Default: 0 (never recycle); 0..1000000000
  std::uint64_t max_rss_mb = 0;            // Default: 0 (no RSS check); 0..1048576
  // Calls sent to one worker ahead of its replies: it runs them one after
  // another, so a call may wait behind this many minus one in a worker.
  int pipeline_depth = 16;                 // Default: 16; 1..64 (1: one call at a time)
  sandbox::Spec sandbox;                   // [plugins.NAME.sandbox]
  // [plugins.NAME.settings], any TOML, as the text of a JSON object: what the
  // plugin's init gets (plugin.settings()). Per plugin: [defaults] has none.
  std::string settings = "{}";  // Default: "{}" (no table)

  friend bool operator==(const PluginConfig&, const PluginConfig&) = default;
};

struct ServerConfig {
  std::filesystem::path socket_path = "/tmp/ferry.sock";  // Default: /tmp/ferry.sock
  std::uint32_t socket_mode = 0660;                        // Default: "0660" (octal string)
  std::filesystem::path plugin_dir = "plugins";            // relative to the config file
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
  LogFormat log_format = LogFormat::text;  // Default: "text"; or "json" (one object per line)
  // Appended to, and reopened on SIGUSR1 (logrotate). Relative to the config file.
  std::filesystem::path log_file;  // Default: "" (stderr)
  std::uint32_t max_frame_bytes = 16u << 20;  // Default: 16 MiB; 1 KiB..1 GiB
  std::uint32_t max_connections = 1024;       // Default: 1024; 1..65536
  // After SIGTERM, running calls may finish for this long; the rest are then
  // answered shutting_down.
  std::uint32_t drain_timeout_ms = 10000;  // Default: 10000; 0..3600000
  // A client must send its whole HELLO this soon after it connects, or it is
  // disconnected (a protocol error); checked every second.
  std::uint32_t handshake_timeout_ms = 5000;  // Default: 5000; 0 (off)..3600000
  // A connection with no call in flight that neither sent nor got anything
  // for this long is closed; checked every second.
  std::uint32_t idle_timeout_ms = 0;  // Default: 0 (off); 0..86400000
  // Nested calls (ctx.call) deeper than this are refused call_depth_exceeded.
  std::uint32_t max_call_depth = 64;  // Default: 64; 1..1000
  // Where /metrics is served over HTTP, "ADDRESS:PORT" ("[::1]:9464" for
  // IPv6; port 0 picks a free one, logged at start). Needs a restart.
  std::string metrics_listen;  // Default: "" (off)
};

// Plugin name -> its settings (PluginConfig::settings).
using SettingsMap = std::map<std::string, std::string, std::less<>>;

struct Config {
  std::filesystem::path file;  // the file it came from (absolute)
  ServerConfig server;
  PluginConfig defaults;                         // [defaults]
  std::map<std::string, PluginConfig> plugins;   // [plugins.NAME], by NAME

  // The effective settings for a plugin: its section, or the defaults.
  const PluginConfig& plugin(const std::string& name) const;
  // Every [plugins.NAME] section's settings, by NAME.
  SettingsMap settings() const;
};

// A Config, or bad_request with one message naming file, line and key path,
// e.g. "server.toml:12: plugins.primes.workers: must be 1..1024".
Result<Config> parse_config_file(const std::filesystem::path& file);
// Parses text as if read from `file` (relative paths resolve against its directory).
Result<Config> parse_config_text(std::string_view text, const std::filesystem::path& file);

}  // namespace ferry::config
