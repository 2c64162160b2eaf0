// assess_health(): a plugin's health from its executor's stats, per worker
// slot (exec/health.hpp).
#include <catch2/catch.hpp>

#include <string>

#include "exec/health.hpp"

using ferry::assess_health;
using ferry::ExecutorStats;
using ferry::WorkerInfo;

namespace {

WorkerInfo worker(const char* state, int start_failures = 0, std::string failure = "") {
  WorkerInfo w;
  w.pid = state == std::string("backoff") ? 0 : 42;
  w.state = state;
  w.start_failures = start_failures;
  w.failure = std::move(failure);
  return w;
}

ExecutorStats process_pool(std::initializer_list<WorkerInfo> workers) {
  ExecutorStats st;
  st.procs = workers;
  st.workers = int(st.procs.size());
  return st;
}

}  // namespace

TEST_CASE("a thread pool is ok, and degraded while threads are stuck", "[health]") {
  ExecutorStats st;
  st.workers = 4;
  CHECK(std::string(assess_health(st).level) == "ok");
  CHECK(assess_health(st).reason.empty());
  st.stuck = 2;
  const auto h = assess_health(st);
  CHECK(std::string(h.level) == "degraded");
  CHECK(h.reason == "threads stuck in cancelled calls: 2 (replaced up to max_stuck_threads)");
}

TEST_CASE("a process pool is ok while its workers start, serve or were replaced after serving", "[health]") {
  auto st = process_pool({worker("spawning"), worker("starting"), worker("idle"), worker("busy")});
  st.restarts = 7;  // crashes during calls are the calls' failures, not the pool's
  CHECK(std::string(assess_health(st).level) == "ok");
}

TEST_CASE("a process pool with some slots failing to start is degraded", "[health]") {
  const auto h = assess_health(process_pool({worker("idle"), worker("backoff", 3, "landlock: /x: No such file")}));
  CHECK(std::string(h.level) == "degraded");
  CHECK(h.reason == "some workers die before they are ready (1 of 2); last error: landlock: /x: No such file");
}

TEST_CASE("a process pool whose every slot fails to start is unhealthy, retrying or waiting", "[health]") {
  // A slot being retried (spawning, starting) still counts: the answer does
  // not depend on the moment of the snapshot.
  for (const char* retrying : {"backoff", "spawning", "starting"}) {
    const auto h = assess_health(process_pool({worker("backoff", 2, "init failed"), worker(retrying, 1)}));
    CHECK(std::string(h.level) == "unhealthy");
    CHECK(h.reason == "every worker dies before it is ready (2 of 2, retried with backoff); last error: init failed");
  }
  const auto quiet = assess_health(process_pool({worker("starting", 1)}));
  CHECK(std::string(quiet.level) == "unhealthy");
  CHECK(quiet.reason == "every worker dies before it is ready (1 of 1, retried with backoff)");
}
