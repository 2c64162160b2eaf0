// Builds the executor of a lane: a thread pool or a process pool, as the
// plugin's config says, or why the plugin cannot run here. Router is given
// one (LevelDB Env style), so tests can hand it other executors; ferryd's
// own is wired in main.cpp. Loop thread only.
#pragma once

#include <functional>
#include <memory>

#include "common/clock.hpp"
#include "common/status.hpp"
#include "config/config.hpp"
#include "exec/executor.hpp"
#include "loop/reactor.hpp"
#include "plugins/invoke.hpp"
#include "plugins/registry.hpp"
#include "worker/launcher.hpp"

namespace ferry {

class ExecutorFactory {
 public:
  virtual ~ExecutorFactory() = default;
  // An executor for `plugin` under `pc` (which must outlive it);
  // `max_call_depth` bounds nested calls inside process workers. An error
  // says why the plugin is not started (it is logged by the caller).
  virtual Result<std::unique_ptr<Executor>> make(const Plugin& plugin, const config::PluginConfig& pc,
                                                 int max_call_depth) = 0;
  // Returns once nothing an executor started off the loop is still in
  // progress (worker spawns), so no late result reaches a stopped loop.
  virtual void wait_idle() = 0;
};

// What ferryd's executors need; everything must outlive the factory.
struct ExecutorEnv {
  loop::Reactor& reactor;
  CompletionSink& sink;
  Launcher& launcher;
  const Invoker& invoker;
  const Clock& clock;
  // Runs a task on the loop thread at its next turn (thread-safe): how a
  // worker spawned off the loop reaches its pool.
  std::function<void(std::function<void()>)> post;
};

// Thread pools and process pools; probes the kernel's sandbox features at
// the first process pool.
std::unique_ptr<ExecutorFactory> make_executor_factory(ExecutorEnv env);

}  // namespace ferry
