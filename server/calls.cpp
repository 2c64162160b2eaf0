#include "calls.hpp"

namespace ferry {

std::uint64_t CallTable::add(std::uint32_t slot, std::uint32_t conn_gen, std::uint64_t call_id) {
  std::uint32_t i;
  if (!free_.empty()) {
    i = free_.back();
    free_.pop_back();
  } else {
    i = std::uint32_t(entries_.size());
    entries_.emplace_back();
  }
  Entry& e = entries_[i];
  const std::uint32_t gen = e.gen + 1;
  e = Entry{};
  e.gen = gen;
  e.used = true;
  e.call_id = call_id;
  e.slot = slot;
  e.conn_gen = conn_gen;
  ++live_;
  ++unanswered_;
  return token_of(i);
}

CallTable::Entry* CallTable::find(std::uint64_t token) {
  const std::uint64_t i = (token & 0xffffffffu) - 1;
  if (i >= entries_.size()) return nullptr;
  Entry& e = entries_[i];
  return e.used && e.gen == std::uint32_t(token >> 32) ? &e : nullptr;
}

void CallTable::arm(std::uint64_t token, std::int64_t deadline_ms, void* lane, FunctionMetrics* metrics,
                    std::int64_t admitted_ns) {
  Entry* e = find(token);
  if (e == nullptr) return;
  e->lane = lane;
  e->metrics = metrics;
  e->admitted_ns = admitted_ns;
  if (e->heap_pos != kNone) heap_remove(e->heap_pos);  // re-armed: its old place in the heap is wrong
  e->deadline_ms = deadline_ms;
  if (deadline_ms == 0 || e->answered) return;
  heap_.push_back(std::uint32_t((token & 0xffffffffu) - 1));
  place(std::uint32_t(heap_.size() - 1), heap_.back());
  sift_up(std::uint32_t(heap_.size() - 1));
}

void CallTable::answer(Entry& e) {
  if (e.answered) return;
  e.answered = true;
  --unanswered_;
  if (e.heap_pos != kNone) heap_remove(e.heap_pos);
}

void CallTable::release(std::uint64_t token) {
  Entry* e = find(token);
  if (e == nullptr) return;
  answer(*e);
  e->used = false;
  e->lane = nullptr;
  --live_;
  free_.push_back(std::uint32_t((token & 0xffffffffu) - 1));
}

std::int64_t CallTable::next_deadline() const {
  return heap_.empty() ? 0 : entries_[heap_.front()].deadline_ms;
}

std::uint64_t CallTable::expired(std::int64_t now) const {
  if (heap_.empty() || entries_[heap_.front()].deadline_ms > now) return 0;
  return token_of(heap_.front());
}

void CallTable::place(std::uint32_t pos, std::uint32_t index) {
  heap_[pos] = index;
  entries_[index].heap_pos = pos;
}

void CallTable::heap_remove(std::uint32_t pos) {
  entries_[heap_[pos]].heap_pos = kNone;
  const std::uint32_t last = heap_.back();
  heap_.pop_back();
  if (pos == heap_.size()) return;
  place(pos, last);
  sift_up(pos);
  sift_down(entries_[last].heap_pos);
}

void CallTable::sift_up(std::uint32_t pos) {
  const std::uint32_t index = heap_[pos];
  while (pos > 0) {
    const std::uint32_t parent = (pos - 1) / 2;
    if (!before(index, heap_[parent])) break;
    place(pos, heap_[parent]);
    pos = parent;
  }
  place(pos, index);
}

void CallTable::sift_down(std::uint32_t pos) {
  const std::uint32_t index = heap_[pos];
  const auto n = std::uint32_t(heap_.size());
  while (true) {
    std::uint32_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
    if (!before(heap_[child], index)) break;
    place(pos, heap_[child]);
    pos = child;
  }
  place(pos, index);
}

}  // namespace ferry
