// CallTable (server/calls.hpp): tokens, the unanswered count and the deadline
// heap, checked step by step against a plain map with a brute-force minimum.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "calls.hpp"

using ferry::CallTable;

namespace {

void* lane(int n) { return reinterpret_cast<void*>(std::uintptr_t(n)); }

// What the table should hold for one live token, written the plain way.
struct Want {
  std::uint32_t slot = 0;
  std::uint32_t conn_gen = 0;
  std::uint64_t call_id = 0;
  std::int64_t deadline_ms = 0;
  void* lane = nullptr;
  bool answered = false;
  bool armed = false;
};

class Model {
 public:
  std::map<std::uint64_t, Want> live;

  std::size_t unanswered() const {
    return std::size_t(std::count_if(live.begin(), live.end(), [](const auto& kv) { return !kv.second.answered; }));
  }
  // The smallest deadline of an unanswered call, 0 if none.
  std::int64_t next_deadline() const {
    std::int64_t best = 0;
    for (const auto& [token, w] : live) {
      if (!w.answered && w.deadline_ms != 0 && (best == 0 || w.deadline_ms < best)) best = w.deadline_ms;
    }
    return best;
  }
  // Unanswered calls whose deadline is at or before now: any may be the answer.
  std::set<std::uint64_t> due(std::int64_t now) const {
    std::set<std::uint64_t> out;
    for (const auto& [token, w] : live) {
      if (!w.answered && w.deadline_ms != 0 && w.deadline_ms <= now) out.insert(token);
    }
    return out;
  }
  std::set<std::uint64_t> unanswered_tokens() const {
    std::set<std::uint64_t> out;
    for (const auto& [token, w] : live) {
      if (!w.answered) out.insert(token);
    }
    return out;
  }
};

// expired(now) names a call that is due, or 0 when none is.
void check_expired(const CallTable& t, const Model& m, std::int64_t now) {
  const std::set<std::uint64_t> due = m.due(now);
  const std::uint64_t expired = t.expired(now);
  if (due.empty()) REQUIRE(expired == 0);
  else REQUIRE(due.count(expired) == 1);
}

// Every observable of the table equals the model's.
void check_same(CallTable& t, const Model& m, std::int64_t now) {
  REQUIRE(t.live() == m.live.size());
  REQUIRE(t.unanswered() == m.unanswered());
  REQUIRE(t.next_deadline() == m.next_deadline());
  check_expired(t, m, now);
  std::set<std::uint64_t> visited;
  t.for_each_unanswered([&](std::uint64_t token, CallTable::Entry& e) {
    REQUIRE(visited.insert(token).second);
    REQUIRE(t.find(token) == &e);
  });
  REQUIRE(visited == m.unanswered_tokens());
  for (const auto& [token, w] : m.live) {
    const CallTable::Entry* e = t.find(token);
    REQUIRE(e != nullptr);
    REQUIRE(e->slot == w.slot);
    REQUIRE(e->conn_gen == w.conn_gen);
    REQUIRE(e->call_id == w.call_id);
    REQUIRE(e->lane == w.lane);
    REQUIRE(e->answered == w.answered);
    if (w.armed) REQUIRE(e->deadline_ms == w.deadline_ms);
  }
}

// Random operations on a table and its model, in the ratios the server makes.
class Run {
 public:
  explicit Run(std::uint32_t seed) : rng_(seed) {}

  void step(int n) {
    now_ += pick(0, 3);
    const int op = pick(0, 99);
    const bool crowded = model_.live.size() > 48;  // keep slots cycling, not growing
    if (op < (crowded ? 10 : 30)) add(n);
    else if (op < 45) arm();
    else if (op < 60) answer();
    else if (op < 80) release();
    else if (op < 88) expire_all();
    else check_stale();
    check_same(table_, model_, now_);
    check_expired(table_, model_, now_ + pick(-5, 400));  // and at other instants
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  // A live token, or 0 when there is none.
  std::uint64_t any_live() {
    if (model_.live.empty()) return 0;
    auto it = model_.live.begin();
    std::advance(it, pick(0, int(model_.live.size()) - 1));
    return it->first;
  }

  void add(int n) {
    Want w{std::uint32_t(pick(1, 8)), std::uint32_t(pick(0, 3)), std::uint64_t(n)};
    const std::uint64_t token = table_.add(w.slot, w.conn_gen, w.call_id);
    REQUIRE(token != 0);
    REQUIRE(model_.live.count(token) == 0);  // unique among live tokens
    REQUIRE(std::count(released_.begin(), released_.end(), token) == 0);  // never a dead one's
    model_.live.emplace(token, w);
  }

  // The server arms each call once, right after add (server.cpp); so do we.
  void arm() {
    std::vector<std::uint64_t> fresh;
    for (const auto& [token, w] : model_.live) {
      if (!w.armed) fresh.push_back(token);
    }
    if (fresh.empty()) return;
    const std::uint64_t token = fresh[std::size_t(pick(0, int(fresh.size()) - 1))];
    Want& w = model_.live[token];
    w.armed = true;
    w.deadline_ms = pick(0, 2) == 0 ? 0 : now_ + pick(0, 300);
    w.lane = lane(pick(1, 4));
    table_.arm(token, w.deadline_ms, w.lane);
  }

  void answer() {
    const std::uint64_t token = any_live();
    if (token == 0) return;
    CallTable::Entry* e = table_.find(token);
    REQUIRE(e != nullptr);
    table_.answer(*e);  // twice is harmless: abandon and deliver may both try
    if (pick(0, 3) == 0) table_.answer(*e);
    model_.live[token].answered = true;
  }

  void release() {
    const std::uint64_t token = any_live();
    if (token == 0) return;
    table_.release(token);
    model_.live.erase(token);
    released_.push_back(token);
  }

  // What Server::on_deadline does: answer every call that is due.
  void expire_all() {
    int guard = 0;
    while (const std::uint64_t token = table_.expired(now_)) {
      REQUIRE(model_.due(now_).count(token) == 1);
      table_.answer(*table_.find(token));
      model_.live[token].answered = true;
      REQUIRE(++guard <= 64);
    }
    REQUIRE(model_.due(now_).empty());
  }

  // A released token stays dead after its slot is reused: find, arm and
  // release through it touch nothing.
  void check_stale() {
    if (released_.empty()) return;
    const std::uint64_t stale = released_[std::size_t(pick(0, int(released_.size()) - 1))];
    REQUIRE(table_.find(stale) == nullptr);
    table_.arm(stale, now_ + 1, lane(99));
    table_.release(stale);
  }

  std::mt19937 rng_;
  CallTable table_;
  Model model_;
  std::vector<std::uint64_t> released_;
  std::int64_t now_ = 1000;
};

}  // namespace

TEST_CASE("random adds, arms, answers, releases and expiries match the plain model", "[call_table]") {
  for (const std::uint32_t seed : {20240611u, 7u, 987654321u}) {
    INFO("seed " << seed);
    Run run(seed);
    for (int n = 1; n <= 20000; ++n) {
      INFO("step " << n);
      run.step(n);
    }
  }
}

TEST_CASE("tokens are never 0, find refuses junk, and a reused slot gets a new token", "[call_table]") {
  CallTable t;
  CHECK(t.find(0) == nullptr);
  CHECK(t.find(1) == nullptr);
  const std::uint64_t a = t.add(3, 1, 42);
  CHECK(a != 0);
  CHECK(t.find(a & 0xffffffff00000000ull) == nullptr);  // slot part 0
  CHECK(t.find(a + 1) == nullptr);                      // a slot past the end
  CHECK(t.find(a + (1ull << 32)) == nullptr);           // a future generation
  t.release(a);
  const std::uint64_t b = t.add(3, 1, 42);  // same slot, same client id
  CHECK(b != a);
  CHECK((b & 0xffffffff) == (a & 0xffffffff));  // the slot was reused...
  CHECK(t.find(a) == nullptr);                  // ...and the old token is dead
  REQUIRE(t.find(b) != nullptr);
  CHECK(t.find(b)->call_id == 42u);
  t.release(a);  // a stale release must not free the new call
  CHECK(t.live() == 1);
  CHECK(t.find(b) != nullptr);
}

TEST_CASE("the earliest unanswered deadline leads; answered and unarmed calls never expire", "[call_table]") {
  CallTable t;
  const std::uint64_t late = t.add(1, 0, 1), early = t.add(1, 0, 2), none = t.add(1, 0, 3);
  t.arm(late, 500, lane(1));
  t.arm(early, 200, lane(1));
  t.arm(none, 0, lane(2));
  CHECK(t.next_deadline() == 200);
  CHECK(t.expired(199) == 0);
  CHECK(t.expired(200) == early);  // at the deadline, not only after it
  t.answer(*t.find(early));
  CHECK(t.next_deadline() == 500);
  CHECK(t.expired(10000) == late);
  t.answer(*t.find(late));
  CHECK(t.next_deadline() == 0);
  CHECK(t.expired(1ll << 60) == 0);
  CHECK(t.unanswered() == 1);  // `none` still waits, with no deadline
  CHECK(t.live() == 3);
}

TEST_CASE("arming an answered call or releasing an armed one leaves no deadline behind", "[call_table]") {
  CallTable t;
  const std::uint64_t a = t.add(1, 0, 1), b = t.add(1, 0, 2);
  t.answer(*t.find(a));  // the client left before the executor took it
  t.arm(a, 100, lane(1));
  CHECK(t.find(a)->lane == lane(1));
  CHECK(t.next_deadline() == 0);
  t.arm(b, 50, lane(1));
  t.release(b);  // finished before the deadline, never answered through answer()
  CHECK(t.next_deadline() == 0);
  CHECK(t.expired(1000) == 0);
  CHECK(t.unanswered() == 0);
  CHECK(t.live() == 1);
}

TEST_CASE("for_each_unanswered visits each waiting call once, with its entry", "[call_table]") {
  CallTable t;
  std::vector<std::uint64_t> tokens;
  for (std::uint64_t id = 1; id <= 5; ++id) tokens.push_back(t.add(std::uint32_t(id), 0, id));
  t.answer(*t.find(tokens[1]));
  t.release(tokens[3]);
  std::map<std::uint64_t, std::uint64_t> seen;  // token -> call id
  t.for_each_unanswered([&](std::uint64_t token, CallTable::Entry& e) { seen[token] += e.call_id; });
  CHECK(seen == std::map<std::uint64_t, std::uint64_t>{{tokens[0], 1}, {tokens[2], 3}, {tokens[4], 5}});
}

TEST_CASE("re-arming a call moves its deadline in the heap; re-arming with 0 removes it", "[call_table]") {
  CallTable t;
  const std::uint64_t a = t.add(1, 1, 1), b = t.add(1, 1, 2), c = t.add(1, 1, 3);
  t.arm(a, 100, nullptr);
  t.arm(b, 200, nullptr);
  t.arm(c, 300, nullptr);
  t.arm(a, 500, nullptr);
  CHECK(t.next_deadline() == 200);
  CHECK(t.expired(250) == b);
  t.arm(b, 0, nullptr);
  CHECK(t.next_deadline() == 300);
  CHECK(t.expired(250) == 0);
  CHECK(t.expired(400) == c);
}
