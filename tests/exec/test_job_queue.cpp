// JobQueue ordering: strict priority, round-robin across connections within a
// priority, FIFO within a connection; take keeps it so.
#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "exec/job_queue.hpp"

using ferry::CallRef;
using ferry::Job;
using ferry::JobQueue;
using Labels = std::vector<std::string>;

namespace {

// Connection slot 1 is "a", 2 is "b", ...: job(1, 3) is "a3".
std::string label(const CallRef& ref) {
  std::string s(1, char('a' + ref.slot - 1));
  s += std::to_string(ref.call_id);
  return s;
}

CallRef ref(std::uint32_t slot, std::uint64_t id) {
  return CallRef{slot, 7, id, slot * 100000ull + id};
}

Job job(std::uint32_t slot, std::uint64_t id, int priority = 1, std::int64_t deadline_ms = 0) {
  Job j;
  j.ref = ref(slot, id);
  j.payload = label(j.ref);
  j.priority = priority;
  j.deadline_ms = deadline_ms;
  return j;
}

void admit(JobQueue& q, Job&& j) { REQUIRE(q.admit(std::move(j), 0)); }

// Pops up to n jobs (all when n < 0), checking each arrived intact.
Labels pop(JobQueue& q, int n = -1) {
  Labels out;
  Job j;
  while (n-- != 0 && q.pop(&j)) {
    CHECK(j.payload == label(j.ref));
    out.push_back(label(j.ref));
  }
  return out;
}

}  // namespace

TEST_CASE("higher priority goes first, round-robin across connections within one", "[job_queue]") {
  JobQueue q(100);
  admit(q, job(1, 1, 1));
  admit(q, job(1, 2, 1));
  admit(q, job(1, 3, 1));
  admit(q, job(2, 1, 1));
  admit(q, job(1, 4, 9));   // clamped to 2
  admit(q, job(3, 1, 0));
  admit(q, job(4, 1, -5));  // clamped to 0
  admit(q, job(3, 2, 0));
  admit(q, job(2, 2, 2));
  CHECK(q.size() == 9);
  CHECK(pop(q) == Labels{"c1", "d1", "c2", "a1", "b1", "a2", "a3", "a4", "b2"});
  CHECK(q.empty());
}

TEST_CASE("a second connection is not starved by a first one's backlog", "[job_queue]") {
  JobQueue q(1000);
  for (int i = 1; i <= 100; ++i) admit(q, job(1, i));
  admit(q, job(2, 1));
  admit(q, job(2, 2));
  CHECK(q.size() == 102);
  Labels want{"a1", "b1", "a2", "b2"};
  for (int i = 3; i <= 100; ++i) want.push_back(label(ref(1, i)));
  CHECK(pop(q) == want);
  CHECK(q.size() == 0);
}

TEST_CASE("calls of one connection keep their order, connections take turns in join order", "[job_queue]") {
  JobQueue q(100);
  for (auto [slot, id] : {std::pair{1, 1}, {1, 2}, {1, 3}, {2, 1}, {3, 1}, {2, 2}, {3, 2}, {3, 3}}) {
    admit(q, job(slot, id));
  }
  CHECK(pop(q) == Labels{"a1", "b1", "c1", "a2", "b2", "c2", "a3", "c3"});
}

TEST_CASE("a connection that empties rejoins at the back of the rotation", "[job_queue]") {
  JobQueue q(100);
  admit(q, job(1, 1));
  admit(q, job(1, 2));
  for (int i = 1; i <= 3; ++i) admit(q, job(2, i));
  CHECK(pop(q, 3) == Labels{"a1", "b1", "a2"});  // a leaves, b is alone
  admit(q, job(3, 1));
  admit(q, job(1, 3));
  CHECK(q.size() == 4);
  CHECK(pop(q) == Labels{"b2", "c1", "a3", "b3"});
}

TEST_CASE("many connections going idle and busy again keep taking turns", "[job_queue]") {
  JobQueue q(1000);
  for (int round = 0; round < 3; ++round) {  // entries and nodes reused each round
    Labels want;
    for (std::uint32_t s = 1; s <= 60; ++s) {
      admit(q, job(s, 2 * round + 1));
      admit(q, job(s, 2 * round + 2));
    }
    for (int i = 1; i <= 2; ++i) {
      for (std::uint32_t s = 1; s <= 60; ++s) want.push_back(label(ref(s, 2 * round + i)));
    }
    CHECK(pop(q) == want);
    CHECK(q.empty());
  }
}

TEST_CASE("admission refuses at capacity and a refused call never enters the rotation", "[job_queue]") {
  JobQueue q(4);
  CHECK(q.admit(job(1, 1), 0));
  CHECK(q.admit(job(1, 2), 0));
  CHECK(q.admit(job(1, 3), 0));
  CHECK_FALSE(q.admit(job(2, 1), 1));  // 3 queued + 1 running
  CHECK(q.admit(job(2, 2), 0));
  CHECK_FALSE(q.admit(job(3, 1), 0));
  CHECK(q.size() == 4);
  q.set_capacity(5);
  CHECK(q.admit(job(3, 2), 0));
  CHECK(pop(q) == Labels{"a1", "b2", "c2", "a2", "a3"});
  CHECK(q.size() == 0);
}

TEST_CASE("take removes one queued call by its full ref", "[job_queue]") {
  JobQueue q(100);
  for (int i = 1; i <= 3; ++i) admit(q, job(1, i));
  admit(q, job(2, 1, 0));
  admit(q, job(3, 1));
  Job out;
  CHECK(q.take(ref(1, 2), &out));
  CHECK(label(out.ref) == "a2");
  CHECK(out.payload == "a2");
  CHECK(q.size() == 4);
  CHECK_FALSE(q.take(ref(1, 2), &out));  // already taken
  CallRef stale = ref(1, 3);
  stale.token += 1;  // same connection and id, another call
  CHECK_FALSE(q.take(stale, &out));
  CHECK_FALSE(q.take(ref(9, 1), &out));
  CHECK(q.take(ref(2, 1), &out));  // b's only call: b leaves level 0
  CHECK(label(out.ref) == "b1");
  CHECK(q.take(ref(3, 1), &out));  // c leaves level 1
  CHECK(q.take(ref(1, 3), &out));  // a's last call: a4 must queue behind a1
  CHECK(q.size() == 1);
  admit(q, job(1, 4));
  admit(q, job(3, 2));
  CHECK(q.size() == 3);
  CHECK(pop(q) == Labels{"a1", "c2", "a4"});
  CHECK_FALSE(q.take(ref(1, 1), &out));  // popped, no longer queued
}

namespace {

// The rules written the plain way: per priority a map of FIFOs and a rotation.
class Model {
 public:
  void admit(const Job& j) {
    Level& lv = levels_[std::clamp(j.priority, 0, 2)];
    auto& q = lv.queues[j.ref.slot];
    if (q.empty()) lv.rotation.push_back(j.ref.slot);
    q.push_back(j);
  }
  bool pop(Job* out) {
    for (Level& lv : levels_) {
      if (lv.rotation.empty()) continue;
      const std::uint32_t slot = lv.rotation.front();
      lv.rotation.pop_front();
      auto& q = lv.queues[slot];
      *out = q.front();
      q.pop_front();
      if (!q.empty()) lv.rotation.push_back(slot);
      return true;
    }
    return false;
  }
  bool take(const CallRef& ref) {
    for (Level& lv : levels_) {
      auto& q = lv.queues[ref.slot];
      auto it = std::find_if(q.begin(), q.end(), [&](const Job& j) { return j.ref == ref; });
      if (it == q.end()) continue;
      q.erase(it);
      if (q.empty()) std::erase(lv.rotation, ref.slot);
      return true;
    }
    return false;
  }

  int size() const {
    int n = 0;
    for (const Level& lv : levels_) {
      for (const auto& [slot, q] : lv.queues) n += int(q.size());
    }
    return n;
  }

 private:
  struct Level {
    std::map<std::uint32_t, std::deque<Job>> queues;
    std::deque<std::uint32_t> rotation;
  };
  Level levels_[3];
};

}  // namespace

TEST_CASE("random admits, pops and takes match the plain rules", "[job_queue]") {
  std::mt19937 rng(20240611);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  JobQueue q(64);
  Model model;
  std::vector<CallRef> issued;
  for (int step = 0; step < 20000; ++step) {
    const int op = pick(0, 9);
    if (op < 5) {
      Job j = job(std::uint32_t(pick(1, 6)), std::uint64_t(step), pick(-1, 3), pick(0, 1) ? pick(1, 200) : 0);
      j.ref.token = std::uint64_t(step);
      const bool ok = q.admit(Job(j), 0);
      if (ok) model.admit(j);
      if (ok) issued.push_back(j.ref);
    } else if (op < 8) {
      Job got, want;
      const bool ok = q.pop(&got);
      REQUIRE(ok == model.pop(&want));
      if (ok) REQUIRE(got.ref == want.ref);
    } else if (!issued.empty()) {
      const int n = int(issued.size());  // mostly recent calls, still queued
      const CallRef ref = issued[std::size_t(pick(std::max(0, n - 30), n - 1))];
      Job got;
      const bool ok = q.take(ref, &got);
      REQUIRE(ok == model.take(ref));
      if (ok) REQUIRE(got.ref == ref);
    }
    REQUIRE(q.size() == model.size());
  }
  Job got, want;
  while (model.pop(&want)) {
    REQUIRE(q.pop(&got));
    REQUIRE(got.ref == want.ref);
  }
  CHECK(q.empty());
}

TEST_CASE("requeue puts popped jobs back first, in their order, without admission", "[job_queue]") {
  JobQueue q(3);
  for (std::uint64_t i = 1; i <= 3; ++i) admit(q, job(1, i));
  Job a1, a2;
  REQUIRE(q.pop(&a1));
  REQUIRE(q.pop(&a2));
  REQUIRE(q.admit(job(2, 1), 1));  // b joins the rotation behind a
  q.requeue(std::move(a2));  // a process worker died with a1 and a2 waiting in it: last first
  q.requeue(std::move(a1));
  q.requeue(job(3, 1, 0));  // a high-priority one: still first
  CHECK(q.size() == 5);       // over capacity: they were admitted already
  CHECK(pop(q) == Labels{"c1", "a1", "b1", "a2", "a3"});
}
