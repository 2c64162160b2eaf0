#include "worker/control.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

namespace ferry::worker {

Control::Control(int channel, std::size_t max_body)
    : channel_(channel), max_body_(max_body), reader_([this] { read_loop(); }) {}

Control::~Control() {
  // A worker that gives up with the channel still open: end the read first.
  if (!closed()) shutdown(channel_, SHUT_RD);
  if (reader_.joinable()) reader_.join();
}

bool Control::closed() {
  std::lock_guard lock(mu_);
  return closed_;
}

// Reads a burst (whatever waits after the first message, up to kBurst
// calls) before handing its calls over, so the main thread is woken once
// per burst, not per call.
void Control::read_loop() {
  constexpr std::size_t kBurst = 64;
  channel::Header h;
  std::string body;
  std::vector<Call> burst;
  while (true) {
    const Result<channel::Received> got = channel::recv(channel_, &h, &body, max_body_, burst.empty());
    if (got.ok() && *got == channel::Received::none) {
      hand_over(&burst);
      continue;
    }
    if (!got.ok() || *got != channel::Received::message || h.type != channel::Type::call) hand_over(&burst);
    if (got.ok() && *got == channel::Received::eof) return on_eof();  // ferryd is done with us
    if (!got.ok() || *got != channel::Received::message) return close(4);
    if (h.type == channel::Type::cancel) {
      on_cancel(h);
      continue;
    }
    if (h.type != channel::Type::call) return close(4);
    burst.push_back(Call{h, std::move(body)});
    body = {};
    if (burst.size() >= kBurst) hand_over(&burst);
  }
}

void Control::hand_over(std::vector<Call>* burst) {
  if (burst->empty()) return;
  std::lock_guard lock(mu_);
  for (Call& c : *burst) calls_.push_back(std::move(c));
  burst->clear();
  cv_.notify_one();
}

// A cancel names the running call, or one that has not started: queued
// behind others in ferryd's view (kFlagQueued: it never runs), else the next
// one, which the cancel overtook (it starts cancelled). For a call already
// answered it comes too late and is ignored.
void Control::on_cancel(const channel::Header& h) {
  std::lock_guard lock(mu_);
  if (running_ == h.id) return control_.cancel();
  for (Call& c : calls_) {
    if (c.header.id != h.id) continue;
    c.skip = (h.flags & channel::kFlagQueued) != 0;
    c.cancel_first = true;
  }
}

// ferryd ends a worker only between calls, so an end of the channel during a
// call means ferryd is gone (killed: the kernel's parent-death signal is not
// always delivered). The call is cancelled; if it does not return within
// kOrphanGraceMs, the worker exits without running any more plugin code.
void Control::on_eof() {
  close(0);
  std::unique_lock lock(mu_);
  if (running_ == 0) return;
  control_.cancel();
  if (!cv_.wait_for(lock, std::chrono::milliseconds(kOrphanGraceMs), [&] { return running_ == 0; })) _exit(6);
}

void Control::close(int status) {
  std::lock_guard lock(mu_);
  closed_ = true;
  status_ = status;
  cv_.notify_one();
}

bool Control::next(Call* call) {
  std::unique_lock lock(mu_);
  running_ = 0;
  cv_.notify_all();  // on_eof() may wait for the call to end
  cv_.wait(lock, [&] { return !calls_.empty() || closed_; });
  if (closed_) return false;  // ferryd is gone (or spoke nonsense): what is queued never starts
  *call = std::move(calls_.front());
  calls_.pop_front();
  running_ = call->header.id;
  control_.reset(call->header.deadline_ms);
  if (call->cancel_first) control_.cancel();
  return true;
}

int Control::exit_status() {
  std::lock_guard lock(mu_);
  return status_;
}

}  // namespace ferry::worker
