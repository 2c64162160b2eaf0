// Starts ferry-worker processes: clone3() into the sandbox's namespaces, then
// execve() at once (no code of the multithreaded host runs in the child
// beyond async-signal-safe setup). Call from a thread that lives as long as
// the worker should: its PR_SET_PDEATHSIG fires when the creating thread
// exits (ferryd's pools use spawn_worker_async's thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "sandbox/sandbox.hpp"

namespace ferry {

struct SpawnedWorker {
  pid_t pid = -1;
  int pidfd = -1;    // for supervision: readable once the worker exited
  int channel = -1;  // host end of the SOCK_SEQPACKET channel
};

// Spawns `worker_path` with the channel on its fd 3, an empty environment and
// the namespaces `spec` asks for. Returns "" or what failed (with errno).
std::string spawn_worker(const std::string& worker_path, const sandbox::Spec& spec,
                         SpawnedWorker* out);

// Spawns a worker on a thread of its own and sends it `first_message` (its
// spec), so the loop does not wait for clone3 (a few ms with new
// namespaces). `done` runs on that thread with the worker (pid -1 if none
// started) and "" or what failed. The thread lives as long as the process:
// a worker's PDEATHSIG is tied to the thread that created it.
void spawn_worker_async(std::string worker_path, sandbox::Spec spec, std::string first_message,
                        std::function<void(SpawnedWorker, std::string)> done);

// Waits until every spawn_worker_async request so far is done (its `done`
// has returned). ferryd calls it before tearing down what `done` uses.
void wait_for_spawns();

// The JSON the host sends as the worker's first (spec) message, and back.
// `max_call_depth` bounds nested calls inside the worker (server.max_call_depth);
// decoding a spec without it gives 64.
std::string encode_worker_spec(const std::string& plugin_path, const sandbox::Spec& spec,
                               std::uint32_t max_call_depth = 64);
bool decode_worker_spec(const std::string& json, std::string* plugin_path, sandbox::Spec* spec,
                        std::uint32_t* max_call_depth = nullptr);

// The ferry-worker executable installed next to the running ferryd.
std::string default_worker_path();

}  // namespace ferry
