// The process pool's side of its workers' logs (docs/worker-channel.md):
// LOG messages from the channel, and the stdout and stderr pipes read on the
// ring, each worker's lines passing one WorkerLog. A worker may flood all
// three; what one wake-up reads is bounded, and so is what is logged.
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>

#include "exec/process_pool.hpp"

namespace ferry {
namespace {

// What one wake-up reads of a pipe, in chunks of this size.
constexpr std::size_t kReadChunk = 16 * 1024;
// LOG messages still read from a worker that is gone: its channel holds at
// most a socket buffer's worth, unless a child of an unsandboxed worker
// kept it open and still writes. Bodies over kInlineMax (memfds) end it.
constexpr int kMessagesAtExit = 1024;

}  // namespace

void ProcessPool::start_log(std::uint16_t i) {
  Worker& w = workers_[i];
  w.log = std::make_unique<WorkerLog>(opt_.plugin, int(w.proc.pid));
  auto& ring = reactor_.ring();
  if (w.proc.out >= 0) ring.poll_multishot(w.proc.out, loop::Reactor::tag(id_, kStdout, i));
  if (w.proc.err >= 0) ring.poll_multishot(w.proc.err, loop::Reactor::tag(id_, kStderr, i));
}

// A LOG message: its id names the call in flight (the client's id is
// logged), else none; deadline_ms counts the lines the worker dropped before
// it. Its body is inline: LOG lines are small.
void ProcessPool::on_log(std::uint16_t i, const channel::Header& h, const std::string& body) {
  Worker& w = workers_[i];
  if ((h.flags & channel::kFlagMemfd) != 0) {
    spdlog::error("plugin {}: worker {} sent a log line in a memfd", opt_.plugin, w.proc.pid);
    return kill_worker(w);
  }
  if (!w.log) return;
  const bool its_call = h.id != 0 && !w.calls_in.empty() && h.id == w.calls_in.front().seq;
  const std::uint64_t lost = h.deadline_ms > 0 ? std::uint64_t(h.deadline_ms) : 0;
  w.log->message(h.code, its_call ? w.calls_in.front().job.ref.call_id : 0, lost, body, clock_.now_ms());
  arm_log_summary(i);
}

void ProcessPool::on_output(std::uint16_t i, std::uint8_t sub, const io_uring_cqe& cqe) {
  Worker& w = workers_[i];
  const bool err = sub == kStderr || sub == kStderrMore;
  const bool continued = sub == kStdoutMore || sub == kStderrMore;
  const int fd = err ? w.proc.err : w.proc.out;
  if (cqe.res < 0 || fd < 0 || !w.log) return;  // a cancelled poll, or a worker that is gone
  const Drained d = read_output(w, err ? WorkerLog::Stream::err : WorkerLog::Stream::out, kOutputPerWake);
  arm_log_summary(i);
  auto& ring = reactor_.ring();
  if (d == Drained::more) {
    ring.poll_once(fd, loop::Reactor::tag(id_, err ? kStderrMore : kStdoutMore, i));
  } else if (d == Drained::empty && !continued && (cqe.flags & IORING_CQE_F_MORE) == 0) {
    ring.poll_multishot(fd, loop::Reactor::tag(id_, err ? kStderr : kStdout, i));  // the kernel ended it
  }
}

// Reads up to `budget` bytes of one pipe into the worker's log: `more` when
// the budget ran out first, `eof` once the worker's end is closed.
ProcessPool::Drained ProcessPool::read_output(Worker& w, WorkerLog::Stream stream, std::size_t budget) {
  const int fd = stream == WorkerLog::Stream::err ? w.proc.err : w.proc.out;
  char buf[kReadChunk];
  for (std::size_t total = 0; total < budget;) {
    const ssize_t n = read(fd, buf, std::min(sizeof buf, budget - total));
    if (n == 0) return Drained::eof;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Drained::empty;  // EAGAIN: all read
    w.log->output(stream, std::string_view(buf, std::size_t(n)), clock_.now_ms());
    total += std::size_t(n);
  }
  return Drained::more;
}

// A timer for the summary of dropped lines, so that it comes even when the
// worker falls silent after a flood.
void ProcessPool::arm_log_summary(std::uint16_t i) {
  Worker& w = workers_[i];
  if (!w.log || w.summary_armed) return;
  const std::int64_t due = w.log->summary_due_ms();
  if (due == 0) return;
  w.summary_armed = true;
  w.summary_ts = loop::at_ms(due);
  reactor_.ring().timeout_at(&w.summary_ts, loop::Reactor::tag(id_, kLogSummary, i));
}

void ProcessPool::on_log_summary(std::uint16_t i) {
  Worker& w = workers_[i];
  w.summary_armed = false;
  if (!w.log) return;
  w.log->summarize(clock_.now_ms());
  arm_log_summary(i);
}

// The worker is gone, or ferryd stops: the LOG messages still in its
// channel (other messages of a dead worker are dropped, as ever), what its
// pipes still hold, its unfinished lines and the last summary; then its
// pipes are closed and their polls cancelled.
void ProcessPool::finish_log(std::uint16_t i) {
  Worker& w = workers_[i];
  if (!w.log) return;
  channel::Header h;
  std::string body;
  Result<channel::Received> got = channel::Received::none;
  for (int n = 0; n < kMessagesAtExit && w.proc.channel >= 0 &&
                  (got = channel::recv(w.proc.channel, &h, &body, channel::kInlineMax)).ok() &&
                  *got == channel::Received::message;
       ++n) {
    if (h.type == channel::Type::log) on_log(i, h, body);
  }
  auto& ring = reactor_.ring();
  for (const auto stream : {WorkerLog::Stream::out, WorkerLog::Stream::err}) {
    const bool err = stream == WorkerLog::Stream::err;
    int& fd = err ? w.proc.err : w.proc.out;
    if (fd < 0) continue;
    read_output(w, stream, kOutputPerWake);
    ring.cancel(loop::Reactor::tag(id_, err ? kStderr : kStdout, i), loop::Reactor::tag(id_, kIgnore, i));
    close(fd);
    fd = -1;
  }
  w.log->finish(clock_.now_ms());
  w.log.reset();
  if (w.summary_armed) {
    ring.timeout_remove(loop::Reactor::tag(id_, kLogSummary, i), loop::Reactor::tag(id_, kIgnore, i));
    w.summary_armed = false;
  }
}

}  // namespace ferry
