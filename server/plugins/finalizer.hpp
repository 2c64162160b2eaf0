// Ends thread-loaded plugin versions: runs each one's ferry_plugin_fini, then
// unloads its library, on a thread of its own. A version ends when its last
// reference goes (~Plugin), which may happen on the loop, where plugin code
// must not run (a hook may block). ferryd owns one (main.cpp) and hands it
// to open_plugin through OpenOptions. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.hpp"

namespace ferry {

class Finalizer {
 public:
  // Fails when its thread cannot start.
  static Result<std::unique_ptr<Finalizer>> create();
  // Runs what is still queued (bounded, as drain(kStopWait)); a hook that
  // outlasts that is left to its thread, which is detached.
  ~Finalizer();
  Finalizer(const Finalizer&) = delete;
  Finalizer& operator=(const Finalizer&) = delete;

  // Queues `task` (ending the version named `what`, e.g. "primes 1.2"),
  // to run after everything queued before it.
  void post(std::string what, std::function<void()> task);
  // Waits until everything posted so far has run, for at most `limit`.
  // False when a task still runs then (logged once, naming it): its
  // library stays loaded, so the process should end with _Exit.
  bool drain(std::chrono::milliseconds limit);

  // How long ferryd's stop waits for shutdown hooks.
  static constexpr std::chrono::milliseconds kStopWait{5000};

 private:
  struct State;
  explicit Finalizer(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;  // shared with the thread, which may outlive this
  std::thread thread_;
};

}  // namespace ferry
