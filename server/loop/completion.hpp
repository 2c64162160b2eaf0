// A finished call on its way back to the loop: which call it was and its
// outcome; or one partial result of a call still running. Plain values,
// moved between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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

// Back-pressure of one call's partial results: the executor lets a bounded
// window of them be on their way, and the loop gives credit back once it
// took them (into a connection's output under its bound, or dropped them).
// give_back() is called on the loop thread; implementations say what else.
class PartialCredit {
 public:
  virtual ~PartialCredit() = default;
  // `count` partials of `bytes` bytes in all left the call's window.
  virtual void give_back(std::size_t count, std::size_t bytes) = 0;
};

struct Completion {
  Completion() = default;
  Completion(CallRef r, ferry_code c, std::string d, std::shared_ptr<PartialCredit> p = nullptr)
      : ref(r), code(c), data(std::move(d)), partial(std::move(p)) {}

  CallRef ref;
  ferry_code code = FERRY_OK;
  std::string data;  // result payload, or the error message; a partial's bytes
  // Set on a partial result (the call goes on; code is FERRY_OK): whom the
  // loop gives its credit back to. Null on the call's one final completion,
  // which comes after all its partials.
  std::shared_ptr<PartialCredit> partial;
  // Clock::now_ns() when the call started and finished running; 0 when it
  // never started (dropped from its queue). For metrics.
  std::int64_t started_ns = 0;
  std::int64_t finished_ns = 0;
};

// Receives finished calls. Thread-safe: executors call it from any thread.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void complete(Completion&& c) = 0;
};

}  // namespace ferry
