// What an executor runs: plain values, moved between threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "loop/completion.hpp"

namespace ferry {

struct Function;  // plugins/registry.hpp
class Invoker;    // plugins/invoke.hpp
struct CallEnv;   // plugins/invoke.hpp

struct Job {
  CallRef ref;
  std::shared_ptr<const Function> fn;  // keeps the plugin library loaded
  std::string payload;
  std::int64_t deadline_ms = 0;  // CLOCK_MONOTONIC ms; 0 = none
  int priority = 1;              // 0 high, 1 normal, 2 low: queued calls run highest first
  bool stream = false;           // the client asked for partial results (else they are dropped)
  std::int64_t started_ns = 0;   // Clock::now_ns() when an executor started it; 0 until then
};

// Runs job.fn on this thread through `invoker` and returns its completion.
// `env`: its cancellation and partial results (the call id is the job's).
Completion run_job(const Job& job, const Invoker& invoker, CallEnv env);

}  // namespace ferry
