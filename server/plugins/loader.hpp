// Start-up loading of plugin_dir. Every plugin file is first described by a
// sandboxed ferry-worker (name, version, functions), so no plugin code runs
// inside ferryd before its config is known; then thread-executor plugins are
// loaded here and process-executor plugins are only registered: their code
// runs in their workers alone. Call before the loop starts (it blocks).
#pragma once

#include <filesystem>
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
// ready message. Returns "" or why the file was refused.
std::string describe_plugin(const std::string& worker_path, const std::filesystem::path& file,
                            const sandbox::Spec& spec, PluginDescription* out);

// Loads or registers every *.so of cfg.server.plugin_dir, in name order; a
// refused file is logged with its reason. Returns how many plugins joined.
int load_plugins(const config::Config& cfg, const std::string& worker_path, Registry& registry);

}  // namespace ferry
