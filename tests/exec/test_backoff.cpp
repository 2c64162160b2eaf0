// The crash-loop Backoff, and a process pool whose Launcher fails: the pool
// backs off, keeps calls queued, and still answers each one (cancel, stop).
#include <catch2/catch.hpp>

#include "fake_clock.hpp"

#include <cstdlib>
#include <memory>
#include <vector>

#include "exec/backoff.hpp"
#include "exec/process_pool.hpp"
#include "loop/reactor.hpp"
#include "plugins/registry.hpp"

namespace {

using ferry::Backoff;

// A launcher that cannot start anything, as on a machine out of processes.
class FailingLauncher final : public ferry::Launcher {
 public:
  ferry::Result<ferry::SpawnedWorker> spawn(const ferry::sandbox::Spec&, std::string_view) override {
    ++spawns;
    return ferry::Status::Error("clone3: Resource temporarily unavailable");
  }
  void spawn_async(ferry::sandbox::Spec spec, std::string message,
                   std::function<void(ferry::Result<ferry::SpawnedWorker>)> done) override {
    done(spawn(spec, message));
  }
  void wait_idle() override {}
  void kill(const ferry::SpawnedWorker&) override {}
  std::optional<ferry::WorkerExit> try_reap(const ferry::SpawnedWorker&) override { return std::nullopt; }
  void kill_and_reap(ferry::SpawnedWorker* w) override { *w = {}; }
  int spawns = 0;
};

class Collector final : public ferry::CompletionSink {
 public:
  void complete(ferry::Completion&& c) override { items.push_back(std::move(c)); }
  std::vector<ferry::Completion> items;
};

}  // namespace

TEST_CASE("backoff doubles from 100 ms to a 30 s cap and resets on success", "[backoff]") {
  Backoff b;
  CHECK(b.delay_ms() == 0);
  const std::int64_t expected[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
  for (std::int64_t want : expected) {
    b.failed();
    CHECK(b.delay_ms() == want);
  }
  CHECK(b.crash_loop());
  for (int i = 0; i < 100; ++i) b.failed();  // no overflow however long it fails
  CHECK(b.delay_ms() == Backoff::kMaxMs);
  b.succeeded();
  CHECK(b.delay_ms() == 0);
  CHECK_FALSE(b.crash_loop());
  b.failed();
  b.failed();
  CHECK_FALSE(b.crash_loop());  // two failures are not yet a loop
  b.failed();
  CHECK(b.crash_loop());
}

TEST_CASE("a pool whose launcher fails backs off, queues calls and still answers them", "[backoff]") {
  ferry::loop::Reactor reactor;
  if (!reactor.init(64).ok()) {
    WARN("skipped: io_uring is unavailable here");
    std::exit(77);  // ctest: skipped (SKIP_RETURN_CODE)
  }
  ferry::FakeClock clock;
  FailingLauncher launcher;
  Collector sink;
  ferry::config::PluginConfig pc;
  pc.executor = ferry::config::ExecutorKind::process;
  pc.workers = 2;
  pc.queue_limit = 1;
  auto run_now = [](std::function<void()> task) { task(); };
  ferry::ProcessPool pool({"p", "/nonexistent/p.so", {"p.f"}, &pc, 64, run_now}, reactor, sink, launcher, clock);

  CHECK(launcher.spawns == 2);
  ferry::ExecutorStats st = pool.stats();
  REQUIRE(st.procs.size() == 2);
  for (const auto& w : st.procs) CHECK(w.state == "backoff");

  auto fn = std::make_shared<ferry::Function>();
  fn->name = "p.f";
  ferry::Job job{{1, 1, 7, 70}, fn, "[]", 0, 1};
  CHECK(pool.submit(std::move(job)));                               // queued: no worker to run it
  CHECK(pool.submit(ferry::Job{{1, 1, 8, 80}, fn, "[]", 0, 1, false}));    // workers + queue_limit = 3
  CHECK(pool.submit(ferry::Job{{1, 1, 9, 90}, fn, "[]", 0, 1, false}));
  CHECK_FALSE(pool.submit(ferry::Job{{1, 1, 10, 100}, fn, "[]", 0, 1, false}));  // full: busy
  CHECK(pool.stats().queued == 3);
  CHECK(sink.items.empty());

  pool.cancel(ferry::CallRef{1, 1, 8, 80}, FERRY_E_CANCELLED);
  REQUIRE(sink.items.size() == 1);
  CHECK(sink.items[0].ref.call_id == 8);
  CHECK(sink.items[0].code == FERRY_E_CANCELLED);
  CHECK(pool.stats().queued == 2);
}
