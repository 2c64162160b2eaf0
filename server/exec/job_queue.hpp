// Admission and ordering shared by every executor: at most `capacity` calls
// admitted (queued + running), queued calls taken highest priority first and
// in arrival order within a priority. Not thread-safe: the owner locks.
#pragma once

#include <algorithm>
#include <deque>

#include "exec/job.hpp"

namespace ferry {

class JobQueue {
 public:
  explicit JobQueue(int capacity) : capacity_(capacity) {}

  // False (caller answers busy) when queued + running would pass capacity.
  bool admit(Job&& job, int running) {
    if (size_ + running >= capacity_) return false;
    levels_[std::clamp(job.priority, 0, 2)].push_back(std::move(job));
    ++size_;
    return true;
  }
  bool pop(Job* job) {
    for (auto& q : levels_) {
      if (q.empty()) continue;
      *job = std::move(q.front());
      q.pop_front();
      --size_;
      return true;
    }
    return false;
  }
  // Removes every queued job whose deadline is at or before `now`, calling
  // expired(job) for each; returns the earliest deadline left (0: none).
  template <class F>
  std::int64_t expire(std::int64_t now, F&& expired) {
    std::int64_t earliest = 0;
    for (auto& q : levels_) {
      for (auto it = q.begin(); it != q.end();) {
        if (it->deadline_ms != 0 && it->deadline_ms <= now) {
          expired(*it);
          it = q.erase(it);
          --size_;
          continue;
        }
        if (it->deadline_ms != 0 && (earliest == 0 || it->deadline_ms < earliest)) earliest = it->deadline_ms;
        ++it;
      }
    }
    return earliest;
  }
  int size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void set_capacity(int capacity) { capacity_ = capacity; }

 private:
  int capacity_;
  int size_ = 0;
  std::deque<Job> levels_[3];  // by Job::priority: 0 high, 1 normal, 2 low
};

}  // namespace ferry
