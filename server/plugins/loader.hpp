// Loading plugin_dir, at start-up and on every change. Every plugin file is
// first described by a sandboxed ferry-worker (name, version, functions), so
// no plugin code runs inside ferryd before its config is known; then
// thread-executor plugins are opened here and process-executor plugins are
// only registered: their code runs in their workers alone. Blocking: run off
// the loop thread (or before the loop starts).
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "plugins/registry.hpp"

namespace ferry {

// What a worker reports about a plugin file it loaded.
struct PluginDescription {
  std::string name;
  std::string version;
  std::vector<std::string> functions;  // sorted full names
};

// Runs `worker_path` on `file` under `spec` and waits (up to 10 s) for its
// ready message. Returns "" or why the file was refused; *transient (if not
// null) tells a passing failure (no worker could start, no answer in time)
// from one caused by the file.
std::string describe_plugin(const std::string& worker_path, const std::filesystem::path& file,
                            const sandbox::Spec& spec, PluginDescription* out, bool* transient = nullptr);

// What ferryd remembers of a file of plugin_dir, to tell what changed.
struct FileStamp {
  std::int64_t mtime_ns = 0;
  std::uintmax_t size = 0;
  std::uint64_t inode = 0;
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};
struct KnownFile {
  FileStamp stamp;
  std::string plugin;  // the plugin it provides ("" if it was refused)
  std::string refused;  // why its current contents were refused ("" if not)
  config::ExecutorKind executor = config::ExecutorKind::thread;
};
using KnownFiles = std::map<std::filesystem::path, KnownFile>;

// The outcome of comparing plugin_dir with what is loaded.
struct SyncResult {
  struct Ready {
    std::filesystem::path source;
    FileStamp stamp;
    Prepared prepared;
  };
  std::vector<Ready> ready;                          // new or changed: to install
  std::vector<std::filesystem::path> removed;        // known files that are gone
  std::vector<std::pair<std::filesystem::path, std::string>> refused;  // file, why
  std::map<std::filesystem::path, FileStamp> seen_refused;  // stamps of refused files
  std::set<std::filesystem::path> transient;  // refused for a passing reason (no worker, timeout)
};

// Prepares every *.so of cfg.server.plugin_dir that is new or changed since
// `known` (or whose plugin's executor kind differs in cfg): copies it into
// snapshot_dir (so the file may be replaced or rewritten at any time, and
// every version loads under its own name), has a sandboxed worker describe
// the copy, and opens thread-executor plugins. Blocking; any thread; touches
// no registry. A refused file is logged with its reason.
SyncResult sync_plugins(const config::Config& cfg, const std::string& worker_path,
                        const std::filesystem::path& snapshot_dir, const KnownFiles& known);

}  // namespace ferry
