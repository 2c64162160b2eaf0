// The worker spec: what ferryd tells a new ferry-worker in its first channel
// message (docs/worker-channel.md), as JSON. The sandbox's keys come from
// sandbox::kSpecFields, the table the config parser reads them with.
// Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/status.hpp"
#include "sandbox/sandbox.hpp"

namespace ferry {

struct WorkerSpec {
  std::string plugin_path;          // the .so the worker loads
  sandbox::Spec sandbox;            // applied before and after loading it
  std::uint32_t max_call_depth = 64;  // bounds nested calls inside the worker
  // Plugin name -> the text of its settings' JSON object (config::SettingsMap):
  // the worker's ferry_plugin_init gets its plugin's entry, "{}" when there is
  // none. A pool's worker is given its plugin's alone; a describing worker
  // every plugin's, as it learns the name only by loading the file.
  std::map<std::string, std::string, std::less<>> settings;
  friend bool operator==(const WorkerSpec&, const WorkerSpec&) = default;
};

std::string encode_worker_spec(const WorkerSpec& spec);
// bad_request when a key is missing or has the wrong type; a spec without
// max_call_depth gives 64, one without settings none (older ferryd).
Result<WorkerSpec> decode_worker_spec(std::string_view json);

}  // namespace ferry
