#include "exec/factory.hpp"

#include <spdlog/spdlog.h>

#include "exec/process_pool.hpp"
#include "exec/thread_pool.hpp"

namespace ferry {
namespace {

class PoolFactory final : public ExecutorFactory {
 public:
  explicit PoolFactory(ExecutorEnv env) : env_(std::move(env)), features_(sandbox::probe()) {}

  Result<std::unique_ptr<Executor>> make(const Plugin& plugin, const config::PluginConfig& pc,
                                         int max_call_depth) override {
    if (pc.executor == config::ExecutorKind::thread) return thread_pool(plugin, pc);
    return process_pool(plugin, pc, max_call_depth);
  }

  void wait_idle() override { env_.launcher.wait_idle(); }

 private:
  Result<std::unique_ptr<Executor>> thread_pool(const Plugin& plugin, const config::PluginConfig& pc) {
    if (!plugin.library.is_loaded()) {  // registered for a process pool only: it could not be opened here
      return Status::Error("it is configured for the thread executor but could not be loaded into ferryd");
    }
    return std::unique_ptr<Executor>(std::make_unique<ThreadPool>(
        plugin.name, pc.workers, pc.queue_limit, env_.sink, env_.invoker, env_.clock, pc.max_stuck_threads));
  }

  Result<std::unique_ptr<Executor>> process_pool(const Plugin& plugin, const config::PluginConfig& pc,
                                                 int max_call_depth) {
    if (pc.sandbox.enabled && !features_.missing.empty()) {
      if (!pc.sandbox.allow_weaker) {
        return Status::Error("its sandbox needs " + features_.missing +
                             " (set sandbox.allow_weaker = true to run it anyway)");
      }
      spdlog::warn("plugin {}: running with a weaker sandbox: this kernel lacks {}", plugin.name, features_.missing);
    }
    ProcessPool::Options opt{plugin.name, plugin.path.string(), plugin.functions, &pc, max_call_depth, env_.post};
    return std::unique_ptr<Executor>(
        std::make_unique<ProcessPool>(std::move(opt), env_.reactor, env_.sink, env_.launcher, env_.clock));
  }

  ExecutorEnv env_;
  const sandbox::Features features_;
};

}  // namespace

std::unique_ptr<ExecutorFactory> make_executor_factory(ExecutorEnv env) {
  return std::make_unique<PoolFactory>(std::move(env));
}

}  // namespace ferry
