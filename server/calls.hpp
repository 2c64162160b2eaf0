// The loop's table of admitted calls. An entry lives from dispatch until the
// executor reports the call finished; a min-heap orders the deadlines of the
// calls whose client has not been answered yet, so one io_uring timer for the
// earliest is enough to answer every call `timeout` on time.
// Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

namespace ferry {

struct FunctionMetrics;  // metrics.hpp

class CallTable {
 public:
  struct Entry {
    std::uint64_t call_id = 0;  // the client's id
    std::uint32_t slot = 0;     // its connection
    std::uint32_t conn_gen = 0;
    std::int64_t deadline_ms = 0;  // 0: none
    void* lane = nullptr;          // the router's handle of the executor running it
    bool answered = false;         // the client got its reply, or left
    FunctionMetrics* metrics = nullptr;  // where its outcome and durations are counted
    std::int64_t admitted_ns = 0;        // Clock::now_ns() when the router admitted it
   private:
    friend class CallTable;
    std::uint32_t gen = 0;
    std::uint32_t heap_pos = kNone;
    bool used = false;
  };

  // A new entry; returns its token (never 0), unique while the entry lives.
  std::uint64_t add(std::uint32_t slot, std::uint32_t conn_gen, std::uint64_t call_id);
  // The live entry of a token, or null.
  Entry* find(std::uint64_t token);
  // Records where the call runs, if it has one its deadline, and where it is counted.
  void arm(std::uint64_t token, std::int64_t deadline_ms, void* lane, FunctionMetrics* metrics = nullptr,
           std::int64_t admitted_ns = 0);
  // The client is answered (or gone): its deadline no longer matters.
  void answer(Entry& e);
  // Frees the entry (the executor is done with the call).
  void release(std::uint64_t token);
  // Earliest deadline of an unanswered call, 0 if none.
  std::int64_t next_deadline() const;
  // Token of an unanswered call whose deadline is at or before now, else 0.
  std::uint64_t expired(std::int64_t now) const;

  std::size_t live() const { return live_; }              // admitted, not finished
  std::size_t unanswered() const { return unanswered_; }  // admitted, client waiting
  // Calls f(token, entry) for every unanswered entry.
  template <class F>
  void for_each_unanswered(F&& f) {
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].used && !entries_[i].answered) f(token_of(i), entries_[i]);
    }
  }

 private:
  static constexpr std::uint32_t kNone = ~0u;
  std::uint64_t token_of(std::uint32_t i) const { return (std::uint64_t(entries_[i].gen) << 32) | (i + 1); }
  void heap_remove(std::uint32_t pos);
  void sift_up(std::uint32_t pos);
  void sift_down(std::uint32_t pos);
  void place(std::uint32_t pos, std::uint32_t index);
  bool before(std::uint32_t a, std::uint32_t b) const {
    return entries_[a].deadline_ms < entries_[b].deadline_ms;
  }

  std::vector<Entry> entries_;
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> heap_;  // entry indexes, earliest deadline first
  std::size_t live_ = 0;
  std::size_t unanswered_ = 0;
};

}  // namespace ferry
