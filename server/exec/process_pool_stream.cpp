// ProcessPool: reading a worker's channel, and a streamed call's partial
// results (docs/design.md, "Streamed partial results"). Partials are
// forwarded to the loop as they come, in chunks reassembled here; the
// worker's channel is not read while a window of them waits for a slow
// client, and credit coming back reads on.
#include "exec/process_pool.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "exec/partial_window.hpp"

namespace ferry {

// A streamed call's credit: the loop gives it back to the call's worker, if
// the pool (not stopped) still runs that very call. Loop thread only.
class ProcessPool::Credit final : public PartialCredit {
 public:
  Credit(std::shared_ptr<ProcessPool*> pool, std::uint16_t index) : pool_(std::move(pool)), index_(index) {}
  void give_back(std::size_t count, std::size_t bytes) override {
    if (*pool_ != nullptr) (*pool_)->on_credit(index_, this, count, bytes);
  }

 private:
  const std::shared_ptr<ProcessPool*> pool_;
  const std::uint16_t index_;
};

void ProcessPool::on_channel(std::uint16_t i, const io_uring_cqe& cqe, bool continued) {
  Worker& w = workers_[i];
  if (cqe.res < 0) return;  // the poll of a worker that is gone (cancelled): not this one's
  if (w.proc.channel < 0 || w.state == State::empty || w.state == State::backoff) return;
  if (!continued && (cqe.flags & IORING_CQE_F_MORE) == 0) w.poll_ended = true;
  read_channel(i);
}

// Reads what worker i sent, at most kMessagesPerWake messages (the rest at
// the loop's next turn, so a flooding worker cannot hold the loop), unless
// partials of its call wait for a slow client: then on_credit() reads on
// once they are taken.
void ProcessPool::read_channel(std::uint16_t i) {
  Worker& w = workers_[i];
  channel::Header h;
  std::string body;
  Result<channel::Received> got = channel::Received::message;
  int budget = kMessagesPerWake;
  while (!w.killed && !stalled(w) && budget-- > 0 &&
         (got = channel::recv(w.proc.channel, &h, &body, kMaxReply)).ok() && *got == channel::Received::message) {
    on_message(i, h, body);
  }
  dispatch();  // the calls answered make room: one burst of new ones
  if (w.killed) return;
  if (!got.ok() && got.status().code() == FERRY_E_BAD_REQUEST) {
    spdlog::error("plugin {}: worker {} sent a malformed message ({})", opt_.plugin, w.proc.pid,
                  got.status().message());
    kill_worker(w);
  }
  if (got.ok() && *got == channel::Received::none && w.poll_ended) {
    w.poll_ended = false;
    reactor_.ring().poll_multishot(w.proc.channel, loop::Reactor::tag(id_, kChannel, i));
  } else if (got.ok() && *got == channel::Received::message && budget < 0) {
    reactor_.ring().poll_once(w.proc.channel, loop::Reactor::tag(id_, kChannelMore, i));  // the budget ran out
  }
}

std::shared_ptr<ProcessPool::Credit> ProcessPool::make_credit(std::uint16_t i) {
  return std::make_shared<Credit>(self_, i);
}

// One partial result of the running call (in chunks of at most 48 KiB), on
// its way to the loop and the client who asked for it. The channel is read
// on only while less than a window of them waits there.
void ProcessPool::on_partial(std::uint16_t i, const channel::Header& h, std::string& body) {
  Worker& w = workers_[i];
  if (w.calls_in.empty() || h.id != w.calls_in.front().seq || !w.calls_in.front().job.stream) {
    spdlog::error("plugin {}: worker {} sent an unexpected partial result", opt_.plugin, w.proc.pid);
    return kill_worker(w);
  }
  if (w.partial_chunks.size() + body.size() > kMaxReply) {
    spdlog::error("plugin {}: worker {} sent a partial result over {} MiB", opt_.plugin, w.proc.pid, kMaxReply >> 20);
    return kill_worker(w);
  }
  if ((h.flags & channel::kFlagMore) != 0) return w.partial_chunks.append(body), void();
  if (!w.partial_chunks.empty()) body = std::move(w.partial_chunks.append(body));
  w.partial_chunks.clear();
  const InFlight& call = w.calls_in.front();
  if (call.credit == nullptr) return;  // the call was answered (cancelled): nobody wants it
  ++w.partials;
  w.partial_bytes += body.size();
  sink_.complete(Completion{call.job.ref, FERRY_OK, std::move(body), call.credit});
}

void ProcessPool::on_credit(std::uint16_t i, const Credit* credit, std::size_t count, std::size_t bytes) {
  Worker& w = workers_[i];
  if (w.calls_in.empty() || w.calls_in.front().credit.get() != credit) return;  // that call is over
  const bool was_stalled = stalled(w);
  w.partials -= std::min(count, w.partials);
  w.partial_bytes -= std::min(bytes, w.partial_bytes);
  if (was_stalled && !stalled(w) && !w.killed) read_channel(i);
}

bool ProcessPool::stalled(const Worker& w) {
  return w.partials >= kPartialWindowCount || w.partial_bytes >= kPartialWindowBytes;
}

// A cancelled call's partials are dropped from now on (the loop drops them
// anyway): its channel is read freely again, so its reply is seen in time.
void ProcessPool::drop_partials(std::uint16_t i) {
  Worker& w = workers_[i];
  if (w.calls_in.empty() || w.calls_in.front().credit == nullptr) return;
  const bool was_stalled = stalled(w);
  w.calls_in.front().credit.reset();
  w.partials = w.partial_bytes = 0;
  if (was_stalled && !w.killed) read_channel(i);
}

}  // namespace ferry
