// Routes a CALL to its plugin's executor: lookup, deadline, admission, built-ins.
// Loop thread only (executors report back through the CompletionSink).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "exec/executor.hpp"
#include "loop/reactor.hpp"
#include "plugins/registry.hpp"
#include "protocol/frame.hpp"

namespace ferry {

// A reply the router gives at once, without an executor.
struct Immediate {
  ferry_code code = FERRY_OK;
  std::string data;
};

class Router {
 public:
  // One executor per loaded plugin, of the kind and size its config says.
  // A process plugin whose sandbox needs a kernel feature this machine lacks
  // is not started (unless its config allows the weaker sandbox).
  Router(const config::Config& cfg, Registry& registry, loop::Reactor& reactor, CompletionSink& sink);
  ~Router();

  // Hands the call to an executor (nullopt: the reply comes through the sink),
  // or returns the reply to send now (built-in, unknown function, busy, ...).
  std::optional<Immediate> dispatch(const CallRef& ref, const proto::Call& call);
  // From now on every call is answered shutting_down.
  void begin_shutdown() { shutting_down_ = true; }
  // Finishes admitted calls and joins every executor, then unloads plugins.
  void stop();

 private:
  struct Pool {
    const config::PluginConfig* cfg;
    std::shared_ptr<const Plugin> plugin;
    std::unique_ptr<Executor> executor;
  };
  std::string list_json() const;
  std::unique_ptr<Executor> make_executor(const Plugin& plugin, const config::PluginConfig& pc,
                                          loop::Reactor& reactor, CompletionSink& sink);

  const config::Config& cfg_;
  Registry& registry_;
  std::map<std::string, Pool, std::less<>> pools_;  // by plugin name
  std::map<std::string, std::string, std::less<>> disabled_;  // plugin name -> why
  bool shutting_down_ = false;
};

}  // namespace ferry
