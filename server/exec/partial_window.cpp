#include "exec/partial_window.hpp"

#include <algorithm>
#include <chrono>
#include <string>

#include "common/call_control.hpp"

namespace ferry {

PartialWindow::PartialWindow(CallRef ref, std::int64_t deadline_ms, CompletionSink& sink, const Clock& clock)
    : ref_(ref), deadline_ms_(deadline_ms), sink_(sink), clock_(clock) {}

ferry_code PartialWindow::emit(std::string_view data, CallControl* control) {
  std::unique_lock lock(mu_);
  while (!fits(data.size())) {
    if (const ferry_code code = ended(control); code != FERRY_OK) return code;
    wait(lock);
  }
  ++count_;
  bytes_ += data.size();
  sink_.complete(Completion{ref_, FERRY_OK, std::string(data), shared_from_this()});
  return FERRY_OK;
}

void PartialWindow::give_back(std::size_t count, std::size_t bytes) {
  {
    std::lock_guard lock(mu_);
    count_ -= std::min(count, count_);
    bytes_ -= std::min(bytes, bytes_);
  }
  cv_.notify_one();
}

void PartialWindow::wake() {
  // Taking the lock orders this after an emit() that checked the flag and
  // before it waits, so the notification cannot be lost.
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
}

bool PartialWindow::fits(std::size_t size) const {
  if (count_ == 0) return true;  // one partial always goes, however large
  return count_ < kPartialWindowCount && bytes_ + size <= kPartialWindowBytes;
}

ferry_code PartialWindow::ended(const CallControl* control) const {
  if (deadline_ms_ != 0 && clock_.now_ms() >= deadline_ms_) return FERRY_E_TIMEOUT;
  if (control != nullptr && control->cancelled()) return FERRY_E_CANCELLED;
  return FERRY_OK;
}

// Until credit comes back or wake(); at most until the deadline, which the
// loop also turns into a cancellation (and so a wake()).
void PartialWindow::wait(std::unique_lock<std::mutex>& lock) {
  if (deadline_ms_ == 0) return cv_.wait(lock);
  const std::int64_t left = std::max<std::int64_t>(deadline_ms_ - clock_.now_ms(), 1);
  cv_.wait_for(lock, std::chrono::milliseconds(left));
}

}  // namespace ferry
