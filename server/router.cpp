#include "router.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "exec/process_pool.hpp"
#include "exec/thread_pool.hpp"
#include "sandbox/sandbox.hpp"

namespace ferry {
namespace {
nlohmann::json procs_json(const ExecutorStats& st) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : st.procs) {
    out.push_back({{"pid", p.pid}, {"state", p.state}, {"calls", p.calls}, {"rss_kb", p.rss_kb}});
  }
  return out;
}

// What the sandbox of `pc` needs that this kernel lacks ("" if nothing).
std::string missing_features(const config::PluginConfig& pc) {
  static const sandbox::Features features = sandbox::probe();
  if (pc.executor != config::ExecutorKind::process || !pc.sandbox.enabled) return {};
  return features.missing;
}

int priority_rank(proto::Priority p) {
  return p == proto::Priority::high ? 0 : p == proto::Priority::low ? 2 : 1;
}
}  // namespace

std::unique_ptr<Executor> Router::make_executor(const Plugin& plugin, const config::PluginConfig& pc,
                                                loop::Reactor& reactor, CompletionSink& sink) {
  if (pc.executor == config::ExecutorKind::thread) {
    return std::make_unique<ThreadPool>(plugin.name, pc.workers, pc.queue_limit, sink);
  }
  if (const std::string missing = missing_features(pc); !missing.empty()) {
    if (!pc.sandbox.allow_weaker) {
      disabled_[plugin.name] = "its sandbox needs " + missing + " (set sandbox.allow_weaker = true to run it anyway)";
      spdlog::error("plugin {} not started: {}", plugin.name, disabled_[plugin.name]);
      return nullptr;
    }
    spdlog::warn("plugin {}: running with a weaker sandbox: this kernel lacks {}", plugin.name, missing);
  }
  ProcessPool::Options opt{plugin.name, plugin.path.string(), default_worker_path(), plugin.functions, &pc};
  return std::make_unique<ProcessPool>(std::move(opt), reactor, sink);
}

Router::Router(const config::Config& cfg, Registry& registry, loop::Reactor& reactor, CompletionSink& sink)
    : cfg_(cfg), registry_(registry) {
  for (const auto& plugin : registry.plugins()) {
    const config::PluginConfig& pc = cfg.plugin(plugin->name);
    auto exec = make_executor(*plugin, pc, reactor, sink);
    if (exec) pools_.emplace(plugin->name, Pool{&pc, plugin, std::move(exec)});
  }
  for (const auto& [name, _] : cfg.plugins) {
    if (pools_.count(name) == 0) spdlog::warn("[plugins.{}] is configured but no such plugin is loaded", name);
  }
}

Router::~Router() { stop(); }

std::optional<Immediate> Router::dispatch(const CallRef& ref, const proto::Call& call) {
  if (shutting_down_) return Immediate{FERRY_E_SHUTTING_DOWN, "ferryd is shutting down"};
  if (call.name == "ferry.list" || call.name == "ferry.status") return Immediate{FERRY_OK, list_json()};
  auto fn = registry_.find(call.name);
  if (fn == nullptr) {
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "unknown function '" + std::string(call.name) + "'"};
  }
  auto found = pools_.find(fn->plugin->name);
  if (found == pools_.end()) {
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "'" + std::string(call.name) + "' is unavailable: plugin " +
                                                   fn->plugin->name + " was not started: " +
                                                   disabled_[fn->plugin->name]};
  }
  Pool& pool = found->second;
  const std::uint32_t limit = pool.cfg->timeout_ms;
  const std::uint32_t timeout = call.timeout_ms == 0 ? limit : std::min(call.timeout_ms, limit);
  Job job{ref, std::move(fn),
          std::string(reinterpret_cast<const char*>(call.payload.data()), call.payload.size()),
          monotonic_ms() + timeout, priority_rank(call.priority)};
  if (!pool.executor->submit(std::move(job))) {
    return Immediate{FERRY_E_BUSY, "plugin '" + pool.plugin->name + "' is busy: " +
                                       std::to_string(pool.cfg->workers) + " workers and " +
                                       std::to_string(pool.cfg->queue_limit) + " queued calls"};
  }
  return std::nullopt;
}

void Router::stop() {
  for (auto& [_, pool] : pools_) pool.executor->stop();
  pools_.clear();
  registry_.clear();
}

std::string Router::list_json() const {
  nlohmann::json plugins = nlohmann::json::array();
  for (const auto& [name, pool] : pools_) {
    const ExecutorStats st = pool.executor->stats();
    plugins.push_back({{"name", name},
                       {"version", pool.plugin->version},
                       {"path", pool.plugin->path.string()},
                       {"executor", pool.executor->kind()},
                       {"workers", pool.cfg->workers},
                       {"queue_limit", pool.cfg->queue_limit},
                       {"timeout_ms", pool.cfg->timeout_ms},
                       {"queued", st.queued},
                       {"running", st.running},
                       {"completed", st.completed},
                       {"restarts", st.restarts},
                       {"processes", procs_json(st)},
                       {"functions", pool.plugin->functions}});
  }
  return nlohmann::json{{"plugins", std::move(plugins)}}.dump();
}

}  // namespace ferry
