#include "router.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/json_text.hpp"
#include "exec/health.hpp"

namespace ferry {
namespace {
nlohmann::json procs_json(const ExecutorStats& st) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : st.procs) {
    out.push_back({{"pid", p.pid},
                   {"state", p.state},
                   {"calls", p.calls},
                   {"rss_kb", p.rss_kb},
                   {"start_failures", p.start_failures}});
  }
  return out;
}

int priority_rank(proto::Priority p) {
  return p == proto::Priority::high ? 0 : p == proto::Priority::low ? 2 : 1;
}

// Whether a lane may keep its executor under `next`. Settings belong to the
// plugin version (Plugin::settings): new ones come as a new Plugin, and
// refused ones must not restart the version that keeps serving.
bool same_pool(const config::PluginConfig& running, config::PluginConfig next) {
  next.settings = running.settings;
  return running == next;
}

std::string what_changed(const Plugin& old, const Plugin& now) {
  if (&old == &now) return "its config changed,";
  if (old.source == now.source && old.version == now.version && old.settings != now.settings) return "new settings,";
  return "new version " + now.version + ",";
}
}  // namespace

Router::Router(std::shared_ptr<const config::Config> cfg, Registry& registry, ExecutorFactory& factory,
               Invoker& invoker, const Clock& clock, Runner defer, Runner off_loop, Metrics& metrics)
    : cfg_(std::move(cfg)),
      registry_(registry),
      factory_(factory),
      invoker_(invoker),
      clock_(clock),
      metrics_(metrics),
      defer_(std::move(defer)),
      off_loop_(std::move(off_loop)) {
  apply(cfg_);
}

Router::~Router() { stop(); }

std::shared_ptr<Router::Lane> Router::make_lane(const std::shared_ptr<const Plugin>& plugin,
                                                const config::PluginConfig& pc) {
  auto lane = std::make_shared<Lane>();
  lane->plugin = plugin;
  lane->cfg = pc;
  lane->max_call_depth = cfg_->server.max_call_depth;
  Result<std::unique_ptr<Executor>> executor = factory_.make(*plugin, lane->cfg, int(lane->max_call_depth));
  if (!executor.ok()) {
    disabled_[plugin->name] = executor.status().message();
    spdlog::error("plugin {} not started: {}", plugin->name, disabled_[plugin->name]);
    return nullptr;
  }
  lane->executor = std::move(executor).value();
  lane->executor->batch_wakes();
  for (const auto& f : plugin->functions) lane->metrics.push_back(metrics_.function(f));
  return lane;
}

void Router::apply(std::shared_ptr<const config::Config> cfg) {
  cfg_ = std::move(cfg);
  std::map<std::string, std::shared_ptr<Lane>, std::less<>> next;
  for (const auto& plugin : registry_.plugins()) {
    const config::PluginConfig& pc = cfg_->plugin(plugin->name);
    auto old = lanes_.find(plugin->name);
    if (old != lanes_.end() && old->second->plugin == plugin && same_pool(old->second->cfg, pc) &&
        old->second->max_call_depth == cfg_->server.max_call_depth) {
      next.emplace(plugin->name, std::move(old->second));
      lanes_.erase(old);
      continue;
    }
    disabled_.erase(plugin->name);
    auto lane = make_lane(plugin, pc);
    if (old != lanes_.end()) {
      spdlog::info("plugin {}: {} lane replaced ({} calls still finish on the old one)", plugin->name,
                   what_changed(*old->second->plugin, *plugin), old->second->outstanding);
    }
    if (lane) next.emplace(plugin->name, std::move(lane));
  }
  std::erase_if(disabled_, [&](const auto& d) { return registry_.find_plugin(d.first) == nullptr; });
  for (auto& [name, lane] : lanes_) {  // replaced or removed
    if (registry_.find_plugin(name) == nullptr) spdlog::info("plugin {} removed", name);
    retire(std::move(lane));
  }
  lanes_ = std::move(next);
  for (const auto& [name, _] : cfg_->plugins) {
    if (registry_.find_plugin(name) == nullptr) {
      spdlog::warn("[plugins.{}] is configured but no such plugin is loaded", name);
    }
  }
  // What nested calls (ctx_call) reach from this ferryd's pool threads.
  invoker_.set_max_call_depth(int(cfg_->server.max_call_depth));
  invoker_.publish(directory_of(registry_));
}

void Router::retire(std::shared_ptr<Lane> lane) {
  if (lane == nullptr) return;
  lane->retired = true;
  lane->executor->retire();
  if (lane->outstanding == 0) return dispose(std::move(lane));
  retired_.push_back(std::move(lane));
}

// Stops a lane with no calls left and drops it. Off the loop where that can
// be slow: a thread pool is joined on the reloader's thread (its plugin's
// fini and unload follow on the finalizer's, once the last reference goes);
// a process pool first ends its workers normally (Executor::end, on the
// loop, without blocking it), then is stopped here and freed after the
// loop's next turn has submitted whatever it queued.
void Router::dispose(std::shared_ptr<Lane> lane) {
  if (lane->flush_due) {  // on the loop, before the executor may stop or go
    lane->flush_due = false;
    lane->executor->flush();
  }
  auto finish = [](const std::shared_ptr<Lane>& l) {
    // Threads left running in plugin code still use their pool: keep it.
    if (l->executor->stop() > 0) (void)l->executor.release();
  };
  if (final_) {
    const int left = lane->executor->stop();
    abandoned_threads_ += left;
    if (left > 0) (void)lane->executor.release();
    return;
  }
  if (std::string_view(lane->executor->kind()) == "process") {
    Lane* raw = lane.get();
    ending_.push_back(std::move(lane));
    raw->executor->end([this, raw] { ended(raw); });
    return;
  }
  off_loop_([lane, finish]() mutable {
    finish(lane);
    lane.reset();
  });
}

// A process lane's workers have all ended (Executor::end).
void Router::ended(Lane* raw) {
  auto it = std::find_if(ending_.begin(), ending_.end(), [&](const auto& l) { return l.get() == raw; });
  if (it == ending_.end()) return;  // stop() took it meanwhile
  std::shared_ptr<Lane> lane = std::move(*it);
  ending_.erase(it);
  lane->executor->stop();
  // Its workers' exits stay counted: ferry_worker_exits_total must not go down.
  auto& gone = exits_gone_[lane->plugin->name];
  const ExecutorStats st = lane->executor->stats();
  for (int r = 0; r < kExitReasonCount; ++r) gone[r] += st.exits[r];
  defer_([this, lane]() mutable { off_loop_([lane]() mutable { lane.reset(); }); });
}

void Router::flush() {
  for (const auto& lane : to_flush_) {
    if (!lane->flush_due) continue;  // disposed of (and flushed) since
    lane->flush_due = false;
    lane->executor->flush();
  }
  to_flush_.clear();
}

std::optional<Immediate> Router::dispatch(const CallRef& ref, const proto::Call& call, Route* route) {
  if (shutting_down_) {
    route->metrics = known(call.name) ? metrics_.function(call.name) : metrics_.unknown();
    return Immediate{FERRY_E_SHUTTING_DOWN, "ferryd is shutting down"};
  }
  if (call.name.starts_with("ferry.")) return builtin(ref, call, route);
  auto fn = registry_.find(call.name);
  if (fn == nullptr) {
    route->metrics = metrics_.unknown();
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "unknown function '" + std::string(call.name) + "'"};
  }
  auto found = lanes_.find(fn->plugin->name);
  if (found == lanes_.end()) {
    route->metrics = metrics_.function(call.name);
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "'" + std::string(call.name) + "' is unavailable: plugin " +
                                                   fn->plugin->name + " was not started: " +
                                                   disabled_[fn->plugin->name]};
  }
  Lane& lane = *found->second;
  route->metrics = lane.metrics[fn->index];
  const std::uint32_t limit = lane.cfg.timeout_ms;
  const std::uint32_t timeout = call.timeout_ms == 0 ? limit : std::min(call.timeout_ms, limit);
  route->admitted_ns = clock_.now_ns();
  const std::int64_t deadline = route->admitted_ns / 1'000'000 + timeout;
  Job job{ref, std::move(fn), std::string(proto::as_chars(call.payload)), deadline, priority_rank(call.priority),
          (call.flags & proto::kCallPartials) != 0};
  if (!lane.executor->submit(std::move(job))) {
    return Immediate{FERRY_E_BUSY, "plugin '" + lane.plugin->name + "' is busy: " +
                                       std::to_string(lane.cfg.workers) + " workers and " +
                                       std::to_string(lane.cfg.queue_limit) + " queued calls"};
  }
  ++lane.outstanding;
  if (!lane.flush_due) {
    lane.flush_due = true;
    to_flush_.push_back(found->second);
  }
  route->lane = &lane;
  route->deadline_ms = deadline;
  return std::nullopt;
}

// ferry.list, ferry.status, ferry.metrics, ferry.reload; other "ferry."
// names are unknown functions.
namespace {
constexpr std::string_view kBuiltins[] = {"ferry.list", "ferry.status", "ferry.metrics", "ferry.reload"};
bool is_builtin(std::string_view name) {
  return std::find(std::begin(kBuiltins), std::end(kBuiltins), name) != std::end(kBuiltins);
}
}  // namespace

// A built-in or a registered function: a name that may become a label.
bool Router::known(std::string_view name) const { return is_builtin(name) || registry_.find(name) != nullptr; }

std::optional<Immediate> Router::builtin(const CallRef& ref, const proto::Call& call, Route* route) {
  if (!is_builtin(call.name)) {
    route->metrics = metrics_.unknown();
    return Immediate{FERRY_E_UNKNOWN_FUNCTION, "unknown function '" + std::string(call.name) + "'"};
  }
  route->metrics = metrics_.function(call.name);
  if (call.name == "ferry.list" || call.name == "ferry.status") return Immediate{FERRY_OK, list_json()};
  if (call.name == "ferry.reload") {
    if (!reload_) return Immediate{FERRY_E_INTERNAL, "reloading is not available"};
    reload_(ref);
    route->lane = nullptr;  // answered when the reload is applied
    return std::nullopt;
  }
  return metrics_reply(call.payload);
}

// ferry.metrics takes no argument (the Prometheus text format) or ["text"] or ["json"].
Immediate Router::metrics_reply(std::span<const std::uint8_t> payload) const {
  if (!metrics_text_) return Immediate{FERRY_E_INTERNAL, "metrics are not available"};
  const auto args = nlohmann::json::parse(proto::as_chars(payload), nullptr, false);
  std::string format = "text";
  if (args.is_array() && args.size() == 1 && args[0].is_string()) format = args[0].get<std::string>();
  else if (!payload.empty() && !(args.is_array() && args.empty())) format = "?";
  if (format != "text" && format != "json") {
    return Immediate{FERRY_E_BAD_REQUEST, "ferry.metrics takes [] or [\"text\"] or [\"json\"]"};
  }
  return Immediate{FERRY_OK, metrics_text_(format)};
}

void Router::cancel(void* lane, const CallRef& ref, ferry_code why) {
  if (lane != nullptr) static_cast<Lane*>(lane)->executor->cancel(ref, why);
}

void Router::finished(void* handle) {
  auto* lane = static_cast<Lane*>(handle);
  if (lane == nullptr || --lane->outstanding != 0 || !lane->retired) return;
  for (auto it = retired_.begin(); it != retired_.end(); ++it) {
    if (it->get() != lane) continue;
    spdlog::info("plugin {} {}: old lane finished its calls and stops", lane->plugin->name, lane->plugin->version);
    auto last = std::move(*it);
    retired_.erase(it);
    return dispose(std::move(last));
  }
}

int Router::stop() {
  final_ = true;  // the loop is gone: everything stops here, now
  factory_.wait_idle();  // a late spawn result must not be posted to a queue that is gone
  for (auto& [_, lane] : lanes_) retire(std::move(lane));
  lanes_.clear();
  for (auto& lane : ending_) retired_.push_back(std::move(lane));  // stop() ends them, bounded
  ending_.clear();
  for (auto& lane : retired_) {
    const int left = lane->executor->stop();
    abandoned_threads_ += left;
    // Threads left running still use their pool: it must outlive them.
    if (left > 0) (void)lane->executor.release();
  }
  retired_.clear();
  registry_.clear();
  return abandoned_threads_;
}

std::string Router::list_json() const {
  nlohmann::json plugins = nlohmann::json::array();
  for (const auto& [name, lane] : lanes_) {
    const ExecutorStats st = lane->executor->stats();
    const Health health = assess_health(st);
    int old_lanes = 0;
    for (const auto& r : retired_) old_lanes += r->plugin->name == name;
    for (const auto& r : ending_) old_lanes += r->plugin->name == name;  // its workers still end
    plugins.push_back({{"name", name},
                       {"version", lane->plugin->version},
                       {"path", lane->plugin->source.string()},
                       {"loaded_at", lane->plugin->loaded_at},
                       {"executor", lane->executor->kind()},
                       {"health", health.level},
                       {"health_reason", health.reason},
                       {"workers", lane->cfg.workers},
                       {"queue_limit", lane->cfg.queue_limit},
                       {"timeout_ms", lane->cfg.timeout_ms},
                       {"queued", st.queued},
                       {"running", st.running},
                       {"stuck", st.stuck},
                       {"threads", lane->executor->kind() == std::string_view("thread") ? st.workers : 0},
                       {"completed", st.completed},
                       {"restarts", st.restarts},
                       {"draining_versions", old_lanes},
                       {"processes", procs_json(st)},
                       {"functions", lane->plugin->functions}});
  }
  nlohmann::json disabled = nlohmann::json::object();
  for (const auto& [name, why] : disabled_) disabled[name] = why;
  return json_text(nlohmann::json{{"plugins", std::move(plugins)}, {"disabled", std::move(disabled)}});
}

}  // namespace ferry

namespace ferry {
namespace {

// Adds one lane's executor state to g: a plugin's old lanes still finishing
// calls count with its serving one.
void add_gauges(const ExecutorStats& st, std::string_view kind, PluginGauges& g) {
  for (int i = 0; i < 3; ++i) g.queued[i] += st.queued_by_priority[i];
  for (int r = 0; r < kExitReasonCount; ++r) g.exits[r] += st.exits[r];
  g.running += st.running;
  g.stuck += st.stuck;
  if (kind == "thread") {
    g.workers["busy"] += st.running;
    g.workers["stuck"] += st.stuck;
    g.workers["idle"] += std::max(0, st.workers - st.running - st.stuck);
    return;
  }
  for (const WorkerInfo& w : st.procs) {
    ++g.workers[w.state];
    g.rss_bytes += w.rss_kb * 1024;
  }
}

}  // namespace

std::vector<PluginGauges> Router::gauges() const {
  std::map<std::string, PluginGauges, std::less<>> by_name;
  for (const auto& [name, lane] : lanes_) {
    PluginGauges& g = by_name[name];
    g.plugin = name;
    g.version = lane->plugin->version;
    g.executor = lane->executor->kind();
    add_gauges(lane->executor->stats(), g.executor, g);
  }
  // Exits of lanes already dropped, also of a plugin that no longer serves
  // (disabled or removed): a counter's series must not vanish or go down.
  for (const auto& [name, gone] : exits_gone_) {
    PluginGauges& g = by_name[name];
    g.plugin = name;
    for (int r = 0; r < kExitReasonCount; ++r) g.exits[r] += gone[r];
  }
  for (const auto* old : {&retired_, &ending_}) {
    for (const auto& lane : *old) {
      auto it = by_name.find(lane->plugin->name);
      if (it != by_name.end()) add_gauges(lane->executor->stats(), lane->executor->kind(), it->second);
    }
  }
  std::vector<PluginGauges> out;
  for (auto& [_, g] : by_name) out.push_back(std::move(g));
  return out;
}

}  // namespace ferry
