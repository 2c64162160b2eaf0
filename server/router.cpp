#include "router.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "exec/thread_pool.hpp"

namespace ferry {
namespace {
int priority_rank(proto::Priority p) {
  return p == proto::Priority::high ? 0 : p == proto::Priority::low ? 2 : 1;
}
}  // namespace

Router::Router(const config::Config& cfg, Registry& registry, CompletionSink& sink)
    : cfg_(cfg), registry_(registry) {
  for (const auto& plugin : registry.plugins()) {
    const config::PluginConfig& pc = cfg.plugin(plugin->name);
    auto exec = std::make_unique<ThreadPool>(plugin->name, pc.workers, pc.queue_limit, sink);
    pools_.emplace(plugin->name, Pool{&pc, plugin, std::move(exec)});
  }
  for (const auto& [name, _] : cfg.plugins) {
    if (pools_.count(name) == 0) spdlog::warn("[plugins.{}] is configured but no such plugin is loaded", name);
  }
}

Router::~Router() { stop(); }

std::optional<Immediate> Router::dispatch(const CallRef& ref, const proto::Call& call) {
  if (shutting_down_) return Immediate{FERRY_E_SHUTTING_DOWN, "ferryd is shutting down"};
  if (call.name == "ferry.list") return Immediate{FERRY_OK, list_json()};
  auto fn = registry_.find(call.name);
  if (fn == nullptr) {
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "unknown function '" + std::string(call.name) + "'"};
  }
  Pool& pool = pools_.find(fn->plugin->name)->second;
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
                       {"functions", pool.plugin->functions}});
  }
  return nlohmann::json{{"plugins", std::move(plugins)}}.dump();
}

}  // namespace ferry
