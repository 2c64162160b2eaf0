// Routes a CALL to its plugin's executor: lookup, deadline, admission, built-ins.
// Loop thread only (executors report back through the CompletionSink).
//
// Each plugin's calls run in a *lane*: one executor built from one plugin
// version and one config. A new version or a changed config gets a new lane;
// the old lane only finishes the calls it already has, then is stopped and
// dropped (with it, the last reference to the old library).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "config/config.hpp"
#include "exec/executor.hpp"
#include "exec/factory.hpp"
#include "ferry/wire.hpp"
#include "plugins/invoke.hpp"
#include "metrics.hpp"
#include "plugins/registry.hpp"

namespace ferry {

// A reply the router gives at once, without an executor.
struct Immediate {
  ferry_code code = FERRY_OK;
  std::string data;
};

// Where an admitted call went: the lane handle (for cancel() and finished())
// and its deadline.
// `metrics`: the called function's counters, set whenever the function is
// known (also for an immediate reply such as busy).
struct Route {
  void* lane = nullptr;
  std::int64_t deadline_ms = 0;
  FunctionMetrics* metrics = nullptr;
  std::int64_t admitted_ns = 0;  // Clock::now_ns() at admission
};

class Router {
 public:
  // Lanes' executors come from `factory`; `invoker` is told what nested
  // calls reach; `clock` sets deadlines. `defer` runs a task on the loop's
  // next turn, `off_loop` on another thread (both thread-safe): retired
  // lanes are torn down through both. Builds the lanes of cfg at once (see
  // apply()). Everything given must outlive the router.
  using Runner = std::function<void(std::function<void()>)>;
  // Calls are counted in `metrics`.
  Router(std::shared_ptr<const config::Config> cfg, Registry& registry, ExecutorFactory& factory, Invoker& invoker,
         const Clock& clock, Runner defer, Runner off_loop, Metrics& metrics);
  ~Router();

  // Hands the call to a lane (nullopt: *route says where; the reply comes
  // through the sink), or returns the reply to send now (built-in, unknown
  // function, busy, ...).
  std::optional<Immediate> dispatch(const CallRef& ref, const proto::Call& call, Route* route);
  // The loop stopped waiting for a call of `lane` (see Executor::cancel).
  void cancel(void* lane, const CallRef& ref, ferry_code why);
  // A call of `lane` reached the loop through the sink: a retired lane with
  // nothing left is stopped.
  void finished(void* lane);
  // Wakes the workers of the lanes that got calls since the last flush:
  // the loop calls it once per turn (Executor::batch_wakes).
  void flush();

  // Makes the registry's current plugins and `cfg` live: one lane per
  // plugin, of the kind and size cfg says; a plugin whose library or
  // settings changed gets a new lane, a removed one loses its lane; lanes
  // being replaced finish their calls first. A process plugin whose sandbox
  // needs a kernel feature this machine lacks is not started (unless its
  // config allows the weaker sandbox).
  void apply(std::shared_ptr<const config::Config> cfg);
  const config::Config& config() const { return *cfg_; }

  // Each plugin's state now, for a metrics scrape.
  std::vector<PluginGauges> gauges() const;
  // Who answers `ferry.metrics`: its argument is the format, "text" or "json".
  void set_metrics_handler(std::function<std::string(std::string_view format)> f) { metrics_text_ = std::move(f); }

  // Who answers `ferry.reload` (through the sink, once the reload is done).
  void set_reload_handler(std::function<void(const CallRef&)> f) { reload_ = std::move(f); }

  // From now on every call is answered shutting_down.
  void begin_shutdown() { shutting_down_ = true; }
  // Stops every lane. Returns how many threads were left running plugin code
  // that ignored its cancellation (the caller should exit promptly).
  int stop();

 private:
  struct Lane {
    std::shared_ptr<const Plugin> plugin;
    config::PluginConfig cfg;  // the executor keeps a pointer to it
    std::unique_ptr<Executor> executor;
    std::uint64_t outstanding = 0;  // admitted, not yet finished()
    std::uint32_t max_call_depth = 0;  // what its workers were told (process)
    bool retired = false;
    bool flush_due = false;  // its executor got calls this turn: flush() wakes its workers
    std::vector<FunctionMetrics*> metrics;  // by Function::index
  };
  std::shared_ptr<Lane> make_lane(const std::shared_ptr<const Plugin>& plugin, const config::PluginConfig& pc);
  void retire(std::shared_ptr<Lane> lane);
  void dispose(std::shared_ptr<Lane> lane);
  void ended(Lane* lane);
  std::string list_json() const;
  std::optional<Immediate> builtin(const CallRef& ref, const proto::Call& call, Route* route);
  Immediate metrics_reply(std::span<const std::uint8_t> payload) const;
  bool known(std::string_view name) const;

  std::shared_ptr<const config::Config> cfg_;
  Registry& registry_;
  ExecutorFactory& factory_;
  Invoker& invoker_;
  const Clock& clock_;
  Metrics& metrics_;
  std::map<std::string, std::shared_ptr<Lane>, std::less<>> lanes_;  // by plugin name
  std::vector<std::shared_ptr<Lane>> to_flush_;  // flush_due lanes
  std::vector<std::shared_ptr<Lane>> retired_;  // replaced, finishing their calls
  std::vector<std::shared_ptr<Lane>> ending_;   // process lanes with no calls left, workers ending
  std::map<std::string, std::string, std::less<>> disabled_;  // plugin name -> why
  // Worker exits of process lanes already dropped, by plugin (metrics).
  std::map<std::string, std::array<std::uint64_t, kExitReasonCount>, std::less<>> exits_gone_;
  bool shutting_down_ = false;
  int abandoned_threads_ = 0;
  std::function<void(const CallRef&)> reload_;
  std::function<std::string(std::string_view)> metrics_text_;
  Runner defer_, off_loop_;
  bool final_ = false;  // stop(): no loop any more
};

}  // namespace ferry
