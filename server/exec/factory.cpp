#include "exec/factory.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "exec/process_pool.hpp"
#include "exec/thread_pool.hpp"

namespace ferry {
namespace {

class PoolFactory final : public ExecutorFactory {
 public:
  explicit PoolFactory(ExecutorEnv env) : env_(std::move(env)) {}

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
    auto pool = std::make_unique<ThreadPool>(plugin.name, pc.workers, pc.queue_limit, env_.sink, env_.invoker,
                                             pc.max_stuck_threads);
    if (pool->stats().workers == 0) return Status::Error("no thread of its pool could start");
    return std::unique_ptr<Executor>(std::move(pool));
  }

  Result<std::unique_ptr<Executor>> process_pool(const Plugin& plugin, const config::PluginConfig& pc,
                                                 int max_call_depth) {
    const std::string& missing = missing_features();
    if (pc.sandbox.enabled && !missing.empty()) {
      if (!pc.sandbox.allow_weaker) {
        return Status::Error("its sandbox needs " + missing + " (set sandbox.allow_weaker = true to run it anyway)");
      }
      spdlog::warn("plugin {}: running with a weaker sandbox: this kernel lacks {}", plugin.name, missing);
    }
    ProcessPool::Options opt{plugin.name, plugin.path.string(), plugin.functions, &pc, max_call_depth, env_.post,
                             plugin.settings};
    return std::unique_ptr<Executor>(
        std::make_unique<ProcessPool>(std::move(opt), env_.reactor, env_.sink, env_.launcher, env_.clock));
  }

  // What this kernel lacks for a full sandbox; probed (it forks) at the
  // first process pool only.
  const std::string& missing_features() {
    if (!features_) features_ = sandbox::probe();
    return features_->missing;
  }

  ExecutorEnv env_;
  std::optional<sandbox::Features> features_;
};

}  // namespace

std::unique_ptr<ExecutorFactory> make_executor_factory(ExecutorEnv env) {
  return std::make_unique<PoolFactory>(std::move(env));
}

}  // namespace ferry
