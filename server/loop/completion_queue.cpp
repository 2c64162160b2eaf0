#include "loop/completion_queue.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::loop {

Result<std::unique_ptr<CompletionQueue>> CompletionQueue::create() {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::Errno("eventfd");
  return std::unique_ptr<CompletionQueue>(new CompletionQueue(fd));
}

CompletionQueue::~CompletionQueue() { close(fd_); }

void CompletionQueue::complete(Completion&& c) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(c));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);  // EAGAIN only if already signalled
  }
}

void CompletionQueue::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
}

void CompletionQueue::drain_tasks(std::vector<std::function<void()>>* out) {
  out->clear();
  std::lock_guard lock(mu_);
  out->swap(tasks_);
}

void CompletionQueue::drain(std::vector<Completion>* out) {
  out->clear();
  std::lock_guard lock(mu_);
  out->swap(items_);
  wake_pending_ = false;
}

void CompletionQueue::ack() {
  std::uint64_t v;
  [[maybe_unused]] ssize_t n = read(fd_, &v, sizeof v);
}

}  // namespace ferry::loop
