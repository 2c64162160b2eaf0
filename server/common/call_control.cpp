#include "common/call_control.hpp"

#include <sys/timerfd.h>
#include <unistd.h>

namespace ferry {

CallControl::~CallControl() {
  if (fd_ >= 0) close(fd_);
}

void CallControl::reset(std::int64_t deadline_ms) {
  std::lock_guard lock(mu_);
  cancelled_.store(false, std::memory_order_relaxed);
  deadline_ms_ = deadline_ms;
  if (armed_) arm_locked(0);  // also drops an expiry the last call left unread
}

void CallControl::cancel() {
  std::lock_guard lock(mu_);
  cancelled_.store(true, std::memory_order_relaxed);
  if (fd_ >= 0) arm_locked(-1);
}

int CallControl::fd() {
  std::lock_guard lock(mu_);
  if (fd_ < 0) fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd_ >= 0 && !armed_) arm_locked(cancelled() ? -1 : deadline_ms_);
  return fd_;
}

void CallControl::arm_locked(std::int64_t at_ms) {
  itimerspec spec{};
  if (at_ms < 0) {
    spec.it_value.tv_nsec = 1;  // relative: fires at once
  } else if (at_ms > 0) {
    spec.it_value.tv_sec = at_ms / 1000;
    spec.it_value.tv_nsec = (at_ms % 1000) * 1000000;
  }
  // Disarming (all zero) also clears an expiry nobody read.
  timerfd_settime(fd_, at_ms > 0 ? TFD_TIMER_ABSTIME : 0, &spec, nullptr);
  armed_ = at_ms != 0;
}

}  // namespace ferry
