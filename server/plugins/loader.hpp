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

#include "common/status.hpp"
#include "config/config.hpp"
#include "plugins/registry.hpp"
#include "worker/launcher.hpp"

namespace ferry {

// What a worker reports about a plugin file it loaded.
struct PluginDescription {
  std::string name;
  std::string version;
  std::vector<std::string> functions;  // sorted full names
};

// Whether a refusal may pass by itself (internal: no worker could start, the
// file could not be copied; timeout: no answer in time), so the file is
// retried at every sync; any other code blames the file's contents, which
// are retried once they change.
inline bool is_passing(const Status& st) {
  return st.code() == FERRY_E_INTERNAL || st.code() == FERRY_E_TIMEOUT;
}

// Has a worker launched under `spec` load `file` and waits (up to 10 s) for
// its description, or says why the file was refused (see is_passing). The
// worker's init gets its plugin's entry of `settings` (it learns the name by
// loading); an init that refuses them refuses the file, with its reason.
// Described, the worker is asked to end normally (its plugin's shutdown hook
// runs), and killed if it has not within 2 s.
Result<PluginDescription> describe_plugin(Launcher& launcher, const std::filesystem::path& file,
                                          const sandbox::Spec& spec, const config::SettingsMap& settings = {});

// ferryd's private copies of plugin files, one per version loaded, so a file
// of plugin_dir may be replaced or rewritten at any time and every version
// loads under its own name (dlopen caches by path). Not thread-safe: the
// reloader's thread alone copies.
class SnapshotStore {
 public:
  // A fresh directory under $TMPDIR, readable by workers.
  static Result<SnapshotStore> create();
  // A read-only copy of `source`, under a name never used before.
  Result<std::filesystem::path> copy(const std::filesystem::path& source);
  // Deletes the directory and every copy in it.
  void remove_all();

 private:
  explicit SnapshotStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
  std::uint64_t count_ = 0;
};

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
  std::string settings;  // settings_key() when it was last loaded or refused
};
using KnownFiles = std::map<std::filesystem::path, KnownFile>;

// What a file's load depends on besides its bytes and executor: its
// plugin's settings, or, while its plugin is unknown (the file was refused
// before it joined), every plugin's. When it changes, the file is loaded
// again: new settings make a new version, as new bytes do.
std::string settings_key(const config::Config& cfg, const std::string& plugin);

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
// `known` (or whose plugin's executor kind or settings_key differs in cfg):
// copies it into `snapshots`, has a sandboxed worker describe the copy, and
// opens thread-executor plugins with `open` (their settings come from cfg).
// Blocking; touches no registry. A refused file is logged with its reason.
SyncResult sync_plugins(const config::Config& cfg, Launcher& launcher, SnapshotStore& snapshots,
                        const KnownFiles& known, const OpenOptions& open = {});

}  // namespace ferry
