// The worker's control thread: the only reader of the channel once the
// worker is ready. It queues calls for the main thread (which runs them one
// at a time, in the order ferryd sent them: ferryd pipelines several) and
// acts on `cancel` messages at once: through the running call's CallControl
// (so ctx.cancelled() and ctx.cancel_fd() see it), or by marking a queued
// call so that it never runs. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/call_control.hpp"
#include "worker/channel.hpp"

namespace ferry::worker {

class Control {
 public:
  // How long a call may run on after ferryd vanished before the worker exits.
  static constexpr int kOrphanGraceMs = 1000;

  struct Call {
    channel::Header header;
    std::string payload;
    bool skip = false;          // cancelled while queued: reply without running it
    bool cancel_first = false;  // cancelled before it started: starts cancelled
  };

  // Starts reading `channel` on a thread of its own.
  Control(int channel, std::size_t max_body);
  ~Control();  // ends the reading (shutdown) and joins the thread

  // Waits for the next call and makes it the running one (its CallControl
  // reset to its deadline, cancelled at once if a cancel came first, or
  // call->skip when it must not run at all). False
  // once the channel is done: exit_status() says how.
  bool next(Call* call);
  // The running call's control, for CallEnv.
  CallControl* control() { return &control_; }
  // 0 when ferryd closed the channel (a normal end), else why reading failed.
  int exit_status();

 private:
  void read_loop();
  void hand_over(std::vector<Call>* burst);
  void on_cancel(const channel::Header& h);
  void on_eof();
  void close(int status);
  bool closed();

  const int channel_;
  const std::size_t max_body_;
  CallControl control_;
  std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::deque<Call> calls_;
  std::uint64_t running_ = 0;    // id of the call the main thread runs
  bool closed_ = false;
  int status_ = 0;
  std::thread reader_;  // last: starts once the fields above exist
};

}  // namespace ferry::worker
