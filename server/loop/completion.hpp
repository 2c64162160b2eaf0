// A finished call on its way back to the loop: which call it was and its
// outcome. Plain values, moved between threads.
#pragma once

#include <cstdint>
#include <string>

#include "ferry/errors.h"

namespace ferry {

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

}  // namespace ferry
