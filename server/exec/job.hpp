// What an executor runs and what it hands back: plain values, moved between threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/errors.h"

namespace ferry {

struct Function;  // plugins/registry.hpp

// Identifies a call on the loop side; executors carry it through untouched.
// `slot`/`gen` name the connection (fair queueing shares work out by slot),
// `call_id` is the client's id, and `token` the loop's own handle of this call
// (unique while it is in flight, even when a client reuses an answered id).
struct CallRef {
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;
  std::uint64_t call_id = 0;
  std::uint64_t token = 0;
  friend bool operator==(const CallRef&, const CallRef&) = default;
};

struct Job {
  CallRef ref;
  std::shared_ptr<const Function> fn;  // keeps the plugin library loaded
  std::string payload;
  std::int64_t deadline_ms = 0;  // CLOCK_MONOTONIC ms; 0 = none
  int priority = 1;              // 0 high, 1 normal, 2 low: queued calls run highest first
};

struct Completion {
  CallRef ref;
  ferry_code code = FERRY_OK;
  std::string data;  // result payload, or the error message
};

// Receives finished calls. Thread-safe: executors call it from any thread.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void complete(Completion&& c) = 0;
};

// Milliseconds of CLOCK_MONOTONIC, the clock of every deadline.
std::int64_t monotonic_ms();

}  // namespace ferry
