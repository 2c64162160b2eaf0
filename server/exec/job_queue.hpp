// Admission and ordering shared by every executor: at most `capacity` calls
// admitted (queued + running), queued calls taken highest priority first and,
// within a priority, round-robin across connections (FIFO within one). Not
// thread-safe: the owner locks.
//
// Fairness: a connection (Job::ref.slot) joins the back of its priority's
// rotation when it queues a call there with none pending, and leaves it when
// its last one is taken. So the call k-th in its connection's queue waits at
// most k * N pops at its priority, N being the connections with calls queued
// there (plus any higher-priority work): one busy client cannot starve others.
//
// Hot path without allocation: jobs live in a slab reused through a free list
// and are linked per connection, connections are linked into the rotation.
// A connection's entry is kept once seen (slots are reused connection-table
// indices, so there are at most max_connections of them per priority).
#pragma once

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "exec/job.hpp"

namespace ferry {

class JobQueue {
 public:
  explicit JobQueue(int capacity) : capacity_(capacity) {}
  // The rotation points into the maps, so a copy would dangle.
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // False (caller answers busy) when queued + running would pass capacity.
  bool admit(Job&& job, int running) {
    if (size_ + running >= capacity_) return false;
    Level& lv = levels_[std::clamp(job.priority, 0, 2)];
    Conn& c = conn(lv, job.ref.slot);
    const bool joins = c.head == kNone;
    append(c, store(std::move(job)));
    if (joins) join(lv, &c);
    ++size_;
    ++lv.size;
    return true;
  }
  bool pop(Job* job) {
    for (Level& lv : levels_) {
      Conn* c = lv.first;
      if (c == nullptr) continue;
      const std::uint32_t i = c->head;
      *job = std::move(nodes_[i].job);
      c->head = nodes_[i].next;
      release(i);
      --size_;
      --lv.size;
      next_turn(lv, c);
      return true;
    }
    return false;
  }
  // Puts back a job that was popped but never ran (its worker died with it
  // still waiting there): first in its connection's FIFO, that connection
  // next in its priority's rotation. Admission is not checked again: the
  // job was counted as running until now.
  void requeue(Job&& job) {
    Level& lv = levels_[std::clamp(job.priority, 0, 2)];
    Conn& c = conn(lv, job.ref.slot);
    const std::uint32_t i = store(std::move(job));
    nodes_[i].next = c.head;
    if (c.head == kNone) {
      c.tail = i;
    } else {
      leave(lv, &c);
    }
    c.head = i;
    c.next = lv.first;
    lv.first = &c;
    if (lv.last == nullptr) lv.last = &c;
    ++size_;
    ++lv.size;
  }
  // Moves the queued job with this ref into *out (a cancelled call); false
  // when it is not queued. Costs that connection's queue plus the rotation.
  bool take(const CallRef& ref, Job* out) {
    for (Level& lv : levels_) {
      auto it = lv.conns.find(ref.slot);
      if (it == lv.conns.end() || !unlink(it->second, ref, out)) continue;
      --size_;
      --lv.size;
      if (it->second.head == kNone) leave(lv, &it->second);
      return true;
    }
    return false;
  }
  int size() const { return size_; }
  // Queued jobs of one priority (0 high, 1 normal, 2 low).
  int size_at(int priority) const { return levels_[std::clamp(priority, 0, 2)].size; }
  bool empty() const { return size_ == 0; }
  void set_capacity(int capacity) { capacity_ = capacity; }

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  struct Node {
    Job job;
    std::uint32_t next = kNone;  // next job of the connection, or of the free list
  };
  struct Conn {  // one connection's calls at one priority, a FIFO through nodes_
    std::uint32_t slot = 0;
    std::uint32_t head = kNone;  // kNone: nothing queued, not in the rotation
    std::uint32_t tail = kNone;
    Conn* next = nullptr;  // next turn in the rotation
  };
  struct Level {
    std::unordered_map<std::uint32_t, Conn> conns;  // by slot; never erased
    Conn* first = nullptr;                          // the rotation, next turn first
    Conn* last = nullptr;
    Conn* recent = nullptr;  // the last connection to queue: skips the hash
    int size = 0;            // jobs queued at this priority
  };

  static Conn& conn(Level& lv, std::uint32_t slot) {
    if (lv.recent != nullptr && lv.recent->slot == slot) return *lv.recent;
    Conn& c = lv.conns.try_emplace(slot, Conn{slot}).first->second;
    lv.recent = &c;
    return c;
  }
  std::uint32_t store(Job&& job) {
    if (free_ == kNone) {
      nodes_.push_back(Node{std::move(job)});
      return std::uint32_t(nodes_.size() - 1);
    }
    const std::uint32_t i = free_;
    free_ = std::exchange(nodes_[i].next, kNone);
    nodes_[i].job = std::move(job);
    return i;
  }
  // Frees node i; its job must already be moved out.
  void release(std::uint32_t i) { nodes_[i].next = std::exchange(free_, i); }
  void append(Conn& c, std::uint32_t i) {
    if (c.head == kNone) {
      c.head = i;
    } else {
      nodes_[c.tail].next = i;
    }
    c.tail = i;
  }
  static void join(Level& lv, Conn* c) {
    c->next = nullptr;
    if (lv.last == nullptr) {
      lv.first = c;
    } else {
      lv.last->next = c;
    }
    lv.last = c;
  }
  // After c (at the front) gave a job: back of the rotation, or out if empty.
  static void next_turn(Level& lv, Conn* c) {
    lv.first = c->next;
    if (lv.first == nullptr) lv.last = nullptr;
    if (c->head != kNone) join(lv, c);
  }
  static void leave(Level& lv, Conn* c) {
    Conn* prev = nullptr;
    Conn** link = &lv.first;
    for (; *link != c; link = &(*link)->next) prev = *link;
    *link = std::exchange(c->next, nullptr);
    if (lv.last == c) lv.last = prev;
  }
  // Moves c's job with this ref into *out and frees its node.
  bool unlink(Conn& c, const CallRef& ref, Job* out) {
    std::uint32_t prev = kNone;
    for (std::uint32_t* link = &c.head; *link != kNone; link = &nodes_[*link].next) {
      const std::uint32_t i = *link;
      if (nodes_[i].job.ref == ref) {
        *out = std::move(nodes_[i].job);
        *link = nodes_[i].next;
        if (c.tail == i) c.tail = prev;
        release(i);
        return true;
      }
      prev = i;
    }
    return false;
  }
  int capacity_;
  int size_ = 0;
  Level levels_[3];          // by Job::priority: 0 high, 1 normal, 2 low
  std::vector<Node> nodes_;  // every queued job, and free nodes for the next
  std::uint32_t free_ = kNone;
};

}  // namespace ferry
