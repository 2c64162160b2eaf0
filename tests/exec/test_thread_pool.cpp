// The thread executor with a real plugin: admission, results, drain.
#include <catch2/catch.hpp>

#include "fake_clock.hpp"

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "common/clock.hpp"
#include "exec/thread_pool.hpp"
#include "plugins/registry.hpp"

using ferry::Completion;
using ferry::Job;
using ferry::ThreadPool;

namespace {

// Collects completions from pool threads.
class Collector final : public ferry::CompletionSink {
 public:
  void complete(Completion&& c) override {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(c));
    cv_.notify_all();
  }
  std::vector<Completion> wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return items_.size() >= n; });
    return items_;
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Completion> items_;
};

// Real threads and real plugins; a fake clock decides when a cancelled call
// counts as stuck, so no test waits for wall-clock time to pass.
struct Fixture {
  ferry::FakeClock clock;
  ferry::Invoker invoker{clock};
  ferry::Registry reg;
  Fixture() {
    REQUIRE(reg.load(std::string(FERRY_FIXTURE_DIR) + "/fixture_latch.so").ok());
    REQUIRE(reg.load(std::string(FERRY_FIXTURE_DIR) + "/fixture_good.so").ok());
    REQUIRE(reg.load(std::string(FERRY_FIXTURE_DIR) + "/fixture_ops_v1.so").ok());
  }
  Job job(std::uint64_t id, const char* fn, std::string payload) {
    Job j;
    j.ref.call_id = id;
    j.fn = reg.find(fn);
    REQUIRE(j.fn != nullptr);
    j.payload = std::move(payload);
    return j;
  }
};

}  // namespace

TEST_CASE("every submitted job completes exactly once with its own result", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("good", 4, 1000, sink, f.invoker);
  for (int i = 1; i <= 500; ++i) {
    REQUIRE(pool.submit(f.job(i, "good.add", "[" + std::to_string(i) + ",1]")));
  }
  auto done = sink.wait_for(500);
  std::set<std::uint64_t> ids;
  for (const auto& c : done) {
    CHECK(c.code == FERRY_OK);
    CHECK(c.data == std::to_string(c.ref.call_id + 1));
    ids.insert(c.ref.call_id);
  }
  CHECK(ids.size() == 500);
  pool.stop();
  CHECK(sink.size() == 500);
}

TEST_CASE("a pool at capacity refuses at once and admits again when a slot frees", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("latch", 2, 1, sink, f.invoker);
  REQUIRE(pool.submit(f.job(1, "latch.wait", R"(["cap"])")));
  REQUIRE(pool.submit(f.job(2, "latch.wait", R"(["cap"])")));
  REQUIRE(pool.submit(f.job(3, "latch.wait", R"(["cap"])")));
  CHECK_FALSE(pool.submit(f.job(4, "latch.wait", R"(["cap"])")));  // 2 running + 1 queued
  CHECK(sink.size() == 0);
  // Release them through a second pool: the latch is shared by the library.
  ThreadPool side("side", 1, 1, sink, f.invoker);
  REQUIRE(side.submit(f.job(5, "latch.open", R"(["cap"])")));
  auto done = sink.wait_for(4);
  CHECK(done.size() == 4);
  CHECK(pool.submit(f.job(6, "latch.waiting", R"(["cap"])")));
  pool.stop();
  side.stop();
  CHECK(sink.size() == 5);
}

TEST_CASE("batched wakes: bursts submitted without a wake run once flush() is called", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("good", 2, 1000, sink, f.invoker);
  pool.batch_wakes();  // as the loop's pools: submit() leaves the wake to flush()
  int id = 0;
  for (int burst = 0; burst < 20; ++burst) {
    for (int i = 0; i < 16; ++i, ++id) REQUIRE(pool.submit(f.job(id + 1, "good.add", "[" + std::to_string(id) + ",1]")));
    pool.flush();
    sink.wait_for(std::size_t(id));  // every burst completes: no job waits for a wake that never comes
  }
  auto done = sink.wait_for(320);
  std::set<std::uint64_t> ids;
  for (const auto& c : done) {
    CHECK(c.code == FERRY_OK);
    CHECK(c.data == std::to_string(c.ref.call_id));
    ids.insert(c.ref.call_id);
  }
  CHECK(ids.size() == 320);
  pool.stop();
}

// Resubmits the next job of a chain from inside complete(), on the pool thread.
class Chain final : public ferry::CompletionSink {
 public:
  Chain(Fixture& f, int length) : f_(f), length_(length) {}
  ThreadPool* pool = nullptr;
  void complete(Completion&& c) override {
    std::lock_guard lock(mu_);
    ++done_;
    if (c.code != FERRY_OK) ++failed_;
    if (int(c.ref.call_id) < length_ && !pool->submit(f_.job(c.ref.call_id + 1, "good.add", "[1,1]"))) ++refused_;
    cv_.notify_all();
  }
  void wait_done(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n || refused_ > 0; });
  }
  int done() { std::lock_guard lock(mu_); return done_; }
  int refused() { std::lock_guard lock(mu_); return refused_; }
  int failed() { std::lock_guard lock(mu_); return failed_; }

 private:
  Fixture& f_;
  const int length_;
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0, refused_ = 0, failed_ = 0;
};

TEST_CASE("a call's slot is free before its completion is posted: a caller reacting to it is admitted",
          "[pool]") {
  Fixture f;
  Chain chain(f, 50);
  ThreadPool pool("good", 1, 0, chain, f.invoker);  // capacity 1: the next call fits only once this one left
  chain.pool = &pool;
  REQUIRE(pool.submit(f.job(1, "good.add", "[1,1]")));
  chain.wait_done(50);
  CHECK(chain.refused() == 0);
  CHECK(chain.done() == 50);
  CHECK(chain.failed() == 0);
  pool.stop();
}

TEST_CASE("stop() finishes every admitted job before joining", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("good", 2, 100, sink, f.invoker);
  for (int i = 1; i <= 50; ++i) REQUIRE(pool.submit(f.job(i, "good.add", "[1,1]")));
  pool.stop();
  CHECK(sink.size() == 50);
  CHECK_FALSE(pool.submit(f.job(99, "good.add", "[1,1]")));
  CHECK(pool.stats().workers == 0);
}

TEST_CASE("a job past its deadline is answered timeout without running", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("good", 1, 10, sink, f.invoker);
  Job late = f.job(1, "good.add", "[1,1]");
  late.deadline_ms = f.clock.now_ms() - 1;
  REQUIRE(pool.submit(std::move(late)));
  Job on_time = f.job(2, "good.add", "[1,1]");
  on_time.deadline_ms = f.clock.now_ms() + 60000;
  REQUIRE(pool.submit(std::move(on_time)));
  auto done = sink.wait_for(2);
  CHECK(done[0].code == FERRY_E_TIMEOUT);
  CHECK(done[1].code == FERRY_OK);
  CHECK(done[1].data == "2");
}

TEST_CASE("queued jobs run highest priority first, in arrival order within a level", "[pool]") {
  Fixture f;
  Collector sink;
  ThreadPool pool("latch", 1, 10, sink, f.invoker);
  Job blocker = f.job(1, "latch.wait", R"(["prio"])");
  blocker.priority = 0;  // first among equals: always the first job the worker takes
  REQUIRE(pool.submit(std::move(blocker)));
  const int priorities[] = {2, 1, 0, 2, 0, 1};                  // low normal high low high normal
  for (int i = 0; i < 6; ++i) {
    Job j = f.job(10 + i, "good.add", "[0,0]");
    j.priority = priorities[i];
    REQUIRE(pool.submit(std::move(j)));
  }
  ThreadPool side("side", 1, 1, sink, f.invoker);
  REQUIRE(side.submit(f.job(2, "latch.open", R"(["prio"])")));
  auto done = sink.wait_for(8);
  std::vector<std::uint64_t> order;
  for (const auto& c : done) {
    if (c.ref.call_id >= 10) order.push_back(c.ref.call_id);
  }
  CHECK(order == std::vector<std::uint64_t>{12, 14, 11, 15, 10, 13});
}

TEST_CASE("blocking calls spread over every worker", "[pool]") {
  // Three calls block until a fourth runs: only possible if all four workers
  // are woken, one after the other, while work is queued.
  Fixture f;
  Collector sink;
  ThreadPool pool("latch", 4, 0, sink, f.invoker);
  for (int i = 1; i <= 3; ++i) REQUIRE(pool.submit(f.job(i, "latch.wait", R"(["spread"])")));
  REQUIRE(pool.submit(f.job(4, "latch.open", R"(["spread"])")));
  auto done = sink.wait_for(4);
  for (const auto& c : done) CHECK(c.code == FERRY_OK);
  CHECK(pool.stats().workers == 4);
}

namespace {
// Polls stats() (which also finds stuck threads) until pred holds.
template <class Pred>
ferry::ExecutorStats stats_until(ThreadPool& pool, Pred pred) {
  ferry::ExecutorStats st;
  for (int i = 0; i < 10000000; ++i) {
    st = pool.stats();
    if (pred(st)) return st;
    std::this_thread::yield();
  }
  FAIL("stats never reached the expected state");
  return st;
}
}  // namespace

TEST_CASE("cancel: a queued job never runs; a running one sees ctx.cancelled()", "[pool]") {
  Fixture f;
  Collector done;
  ThreadPool pool("latch", 1, 4, done, f.invoker);
  Job running = f.job(1, "latch.wait", R"(["never"])");
  running.ref.token = 1;
  Job queued = f.job(2, "ops.counts", "[]");
  queued.ref.token = 2;
  const ferry::CallRef running_ref = running.ref, queued_ref = queued.ref;
  REQUIRE(pool.submit(std::move(running)));
  REQUIRE(pool.submit(std::move(queued)));
  stats_until(pool, [](const ferry::ExecutorStats& st) { return st.running == 1; });
  pool.cancel(queued_ref, FERRY_E_CANCELLED);
  auto first = done.wait_for(1);
  CHECK(first[0].ref == queued_ref);
  CHECK(first[0].code == FERRY_E_CANCELLED);
  pool.cancel(ferry::CallRef{0, 0, 99, 99}, FERRY_E_CANCELLED);  // unknown: ignored
  pool.cancel(running_ref, FERRY_E_TIMEOUT);
  auto both = done.wait_for(2);
  CHECK(both[1].ref == running_ref);
  CHECK(both[1].data == "false");  // latch.wait gave up: it saw the cancellation
  CHECK(pool.stats().stuck == 0);
  CHECK(pool.stop() == 0);
}

TEST_CASE("a thread that ignores cancellation is stuck, replaced up to the cap, then leaves", "[pool]") {
  Fixture f;
  Collector done;
  ThreadPool pool("ops", 1, 8, done, f.invoker, /*max_stuck=*/1);
  std::vector<ferry::CallRef> refs;
  for (std::uint64_t i = 1; i <= 2; ++i) {
    Job j = f.job(i, "ops.ignore", "[300]");
    j.ref.token = i;
    refs.push_back(j.ref);
    REQUIRE(pool.submit(std::move(j)));
    stats_until(pool, [](const ferry::ExecutorStats& st) { return st.running == 1; });
    pool.cancel(refs.back(), FERRY_E_TIMEOUT);
    f.clock.advance(100);  // the call ignores its cancellation for 100 ms: stuck
    auto st = stats_until(pool, [&](const ferry::ExecutorStats& s) { return s.stuck == int(i); });
    CHECK(st.running == 0);      // stuck threads hold no capacity
    CHECK(st.workers == 2);      // one replacement; the cap allows no second
  }
  // A new job waits for a thread (both are stuck, the cap reached); once the
  // stuck calls end it runs, and the pool is back to its one thread. The
  // first stuck thread to finish may take it, so it may still run when the
  // second leaves: wait for all three to be done.
  Job quick = f.job(3, "good.hello", "[]");
  REQUIRE(pool.submit(std::move(quick)));
  CHECK(done.wait_for(3).size() == 3);
  auto st = stats_until(pool, [](const ferry::ExecutorStats& s) { return s.stuck == 0 && s.workers == 1; });
  CHECK(st.running == 0);
  CHECK(pool.stop() == 0);
}

TEST_CASE("stuck threads anywhere in a larger pool get replacements", "[pool]") {
  Fixture f;
  Collector done;
  ThreadPool pool("ops", 4, 8, done, f.invoker, /*max_stuck=*/4);
  std::vector<ferry::CallRef> refs;
  for (std::uint64_t i = 1; i <= 4; ++i) {
    Job j = f.job(i, "ops.ignore", "[300]");
    j.ref.token = i;
    refs.push_back(j.ref);
    REQUIRE(pool.submit(std::move(j)));
  }
  stats_until(pool, [](const ferry::ExecutorStats& st) { return st.running == 4; });
  pool.cancel(refs[0], FERRY_E_TIMEOUT);  // whichever threads run them, not only the last one
  pool.cancel(refs[2], FERRY_E_TIMEOUT);
  f.clock.advance(100);
  auto st = stats_until(pool, [](const ferry::ExecutorStats& s) { return s.stuck == 2; });
  CHECK(st.workers == 6);
  CHECK(st.running == 2);
  st = stats_until(pool, [](const ferry::ExecutorStats& s) { return s.stuck == 0 && s.workers == 4; });
  CHECK(done.wait_for(4).size() == 4);
  CHECK(pool.stop() == 0);
}
