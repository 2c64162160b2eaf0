// Calls a plugin function through the C ABI: the host side of ferry_ctx,
// including nested calls (ctx_call). An Invoker holds what calls share: the
// clock of their deadlines, the directory nested calls resolve names in, and
// the depth limit. Thread-safe: any number of calls may run at once, and the
// directory and limit may be republished while they do.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.hpp"
#include "common/status.hpp"
#include "ferry/plugin.h"
#include "common/call_control.hpp"
#include "plugins/registry.hpp"
#include "plugins/sinks.hpp"

namespace ferry {

// The host API table handed to every plugin (static storage, never changes).
const ferry_host_api* host_api();

// What a nested call may reach from this process. Immutable once published.
struct CallTarget {
  // Weak, so that the directory never keeps a library loaded: a function
  // whose plugin is gone answers unknown_function.
  std::weak_ptr<const Function> fn;
  bool runnable_here = false;  // false: it runs only in worker processes
};
struct CallDirectory {
  std::unordered_map<std::string, CallTarget, StringHash, std::equal_to<>> targets;
  // In a worker: its own plugin, the only one it has. A name it does not list
  // may exist elsewhere, so it is out of reach (permission_denied), not
  // unknown. Empty in ferryd, which lists every function.
  std::string only_plugin;
};

// What one client call brings besides its function and payload. Nested
// calls share their caller's.
// When a call started and finished running (Clock::now_ns()): the same
// clock reads that check its deadline, so timing it costs nothing more.
struct CallTimes {
  std::int64_t started_ns = 0;
  std::int64_t finished_ns = 0;
};

struct CallEnv {
  std::uint64_t call_id = 0;        // the client's id, for log lines
  CallControl* control = nullptr;   // cancellation and cancel_fd; null: only the deadline
  PartialSink* partials = nullptr;  // null: the caller did not ask for partials (dropped)
  CallTimes* times = nullptr;       // set when the function ran, if not null
};

class Invoker {
 public:
  // `log` (optional, must outlive the invoker) takes the calls' log lines;
  // without it they go to spdlog.
  explicit Invoker(const Clock& clock, int max_call_depth = 64, LogSink* log = nullptr);

  // Runs a client's call of `fn` on this thread unless `deadline_ms`
  // (Clock ms, 0 = none) already passed: the result payload, or the error
  // the function (or its deadline) gave.
  Result<std::string> invoke(const Function& fn, std::string_view payload, std::int64_t deadline_ms,
                             const CallEnv& env = {}) const;

  // Nested calls use `dir` from now on (ones already running keep their target).
  void publish(std::shared_ptr<const CallDirectory> dir);
  // The deepest level a nested call may run at.
  void set_max_call_depth(int depth) { max_depth_.store(depth, std::memory_order_relaxed); }

  // For the C callbacks of a call in progress.
  const Clock& clock() const { return clock_; }
  LogSink& log() const { return *log_; }
  int max_call_depth() const { return max_depth_.load(std::memory_order_relaxed); }
  std::shared_ptr<const CallDirectory> directory() const;

 private:
  const Clock& clock_;
  SpdlogSink default_sink_;
  LogSink* log_;
  std::atomic<int> max_depth_;
  mutable std::mutex mu_;  // guards dir_ (read only by nested calls: cheap)
  std::shared_ptr<const CallDirectory> dir_ = std::make_shared<CallDirectory>();
};

// Every function of `registry`; runnable here when its plugin's library is
// loaded in this process (a thread-executor plugin in ferryd, the worker's
// own plugin in a ferry-worker). `only_plugin`: see CallDirectory.
std::shared_ptr<const CallDirectory> directory_of(const Registry& registry, std::string only_plugin = {});

}  // namespace ferry
