// Loads plugin libraries (Boost.DLL) and maps "plugin.function" names to entry points.
// Not thread-safe: built and queried on the loop thread. Function objects are
// immutable and shared; each keeps its library loaded while referenced.
#pragma once

#include <boost/dll/shared_library.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "common/status.hpp"
#include "ferry/plugin.h"
#include "plugins/sinks.hpp"

// The host's side of the opaque ferry_instance: one load of a plugin. Its
// log lines (instance_log and ctx_log alike) pass one LogLimiter, under `mu`;
// lines still counted as dropped are reported when the load goes.
struct ferry_instance {
  ferry_instance(std::string plugin_name, ferry::LogSink* sink, const ferry::Clock* log_clock)
      : plugin(std::move(plugin_name)), log(sink), clock(log_clock) {}
  ~ferry_instance();
  ferry_instance(const ferry_instance&) = delete;
  ferry_instance& operator=(const ferry_instance&) = delete;

  const std::string plugin;
  ferry::LogSink* const log;      // where instance_log writes; outlives the load
  const ferry::Clock* const clock;  // times the log's rate bound
  std::mutex mu;                  // guards limit: held for a few arithmetic steps
  ferry::LogLimiter limit;
};

namespace ferry {

class Finalizer;

// One loaded library (or, for a process plugin, its description). When the
// last reference goes, a version whose init succeeded gets its
// ferry_plugin_fini, then its library unloads: on `finalizer`'s thread when
// it has one, else right there (ferry-worker, tests).
struct Plugin {
  Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;
  ~Plugin();  // removes `snapshot` (the mapping, if any, stays valid); see above

  std::string name;
  std::string version;
  std::filesystem::path path;    // the file loaded (a private snapshot when hot-loaded)
  std::filesystem::path source;  // the file in plugin_dir it came from
  std::string loaded_at;         // UTC, ISO 8601
  std::filesystem::path snapshot;  // a private copy of source this owns, or empty
  // The settings its init accepted (a process plugin: its describing
  // worker's init); its workers get the same. Part of what makes a version.
  std::string settings = "{}";
  ferry_plugin_fini_fn fini = nullptr;  // set once init succeeded, if exported
  Finalizer* finalizer = nullptr;       // must outlive this
  // What the plugin's Logger writes through (loaded here only); declared
  // before `library`, so it outlives the unload.
  std::unique_ptr<ferry_instance> instance;
  boost::dll::shared_library library;
  std::vector<std::string> functions;  // full names, sorted
};

struct Function {
  std::string name;  // "plugin.function"
  ferry_fn fn = nullptr;
  void* user = nullptr;
  std::shared_ptr<const Plugin> plugin;
  std::uint32_t index = 0;  // its place in plugin->functions (set by Registry::install)
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A plugin made ready off the loop thread, not yet in a registry: opened and
// initialised (thread executor) or only described (process executor).
struct Prepared {
  std::shared_ptr<Plugin> plugin;
  std::vector<Function> functions;
};

// Plugin name -> its settings, the text of a JSON object.
using SettingsMap = std::map<std::string, std::string, std::less<>>;

// What ferry_plugin_init gets besides the host table, and who ends the load.
struct OpenOptions {
  const SettingsMap* settings = nullptr;  // a plugin not listed gets "{}"
  LogSink* log = nullptr;                 // for the plugin's Logger; null: spdlog. Must outlive the load
  Finalizer* finalizer = nullptr;         // see Plugin; null: fini runs where the last reference goes
  const Clock* clock = nullptr;           // times the log's rate bound; null: the system clock
};

// Opens `file` and runs its ferry_plugin_init. Thread-safe: it touches no
// registry. A file that is not a usable plugin: bad_request, or
// unsupported_version when built against another ABI major; the message says
// why (for an init that refuses, the plugin's own reason).
Status open_plugin(const std::filesystem::path& file, const OpenOptions& options, Prepared* out);
// A plugin that is never loaded here (its process pool runs it): its
// functions route to that pool; their entry points stay null. `settings`:
// what its describing worker's init accepted.
Prepared described_plugin(const std::filesystem::path& file, const std::string& name, const std::string& version,
                          const std::vector<std::string>& functions, const std::string& settings = "{}");

// The plugin files of `dir`: its regular *.so files, absolute, in name order.
// An unreadable directory is logged and yields none.
std::vector<std::filesystem::path> plugin_files(const std::filesystem::path& dir);

class Registry {
 public:
  // Loads one library (open_plugin, then install); a refusal is logged.
  Status load(const std::filesystem::path& file, const OpenOptions& options = {});

  // Publishes a prepared plugin; with `replace`, in place of a loaded plugin
  // of the same name. A refusal (bad_request) changes nothing.
  Status install(Prepared p, bool replace);

  std::shared_ptr<const Function> find(std::string_view name) const;
  std::shared_ptr<const Plugin> find_plugin(std::string_view name) const;
  // Drops one plugin and its functions (calls holding them keep it loaded).
  void remove(std::string_view name);
  const std::vector<std::shared_ptr<const Plugin>>& plugins() const { return plugins_; }
  // Drops every plugin; libraries unload once no call holds them.
  void clear();

 private:
  Status admit(const Plugin& p, bool replace) const;


  std::vector<std::shared_ptr<const Plugin>> plugins_;
  std::unordered_map<std::string, std::shared_ptr<const Function>, StringHash, std::equal_to<>>
      functions_;
};

}  // namespace ferry
