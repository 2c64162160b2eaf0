// Deadlines, cancellation and the drain timeout, end to end: the real ferryd,
// the "ops" fixture plugin in thread and process mode, the real client.
#include <catch2/catch.hpp>
#include <signal.h>

#include <time.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"

using ferry::Client;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::reply_for;
using ferry::test::plugin_status;
using ferry::test::status_until;
using ferry::test::wait_until;
using json = nlohmann::json;

namespace {

std::string ops_config(const char* executor, int workers, const std::string& extra = "") {
  return std::string("[plugins.ops]\nexecutor = \"") + executor + "\"\nworkers = " + std::to_string(workers) +
         "\n" + extra + "\n[plugins.ops.sandbox]\nenabled = false\n";
}

// A status predicate: all three workers (threads or idle processes) are up.
bool three_up(const json& st) {
  if (st["executor"] == "thread") return st["threads"] == 3;
  int idle = 0;
  for (const auto& w : st["processes"]) idle += w["state"] == "idle";
  return idle == 3;
}

}  // namespace

TEST_CASE("a running call past its deadline is answered timeout at its deadline, not when it ends",
          "[integration][deadline]") {
  const char* executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config(executor, 3));
  auto c = connect(d);
  status_until(*c, "ops", three_up, "three workers up");
  // Thread mode: a function that polls ctx.cancelled(). Process mode: one
  // that never does, so only killing its worker ends it. Either would run
  // 20 s: a timeout reply can only come from its deadline.
  const std::string fn = std::string(executor) == "thread" ? "ops.cooperate" : "ops.ignore";
  std::vector<std::uint64_t> ids;  // sent latest deadline first
  for (std::uint32_t timeout : {400u, 200u, 100u}) ids.push_back(c->send_call(fn, "[20000]", timeout));
  // Each is answered by its own deadline: earliest first, whatever the load.
  for (auto id = ids.rbegin(); id != ids.rend(); ++id) CHECK(reply_for(*c, *id).code == FERRY_E_TIMEOUT);
  if (std::string(executor) == "thread") {
    // The function saw ctx.cancelled() and gave up, three times; none ran to its end.
    CHECK(must_call(*c, "ops.await_noticed", "[3]").data == "true");
    CHECK(json::parse(must_call(*c, "ops.counts", "[]").data)["finished"] == 0);
  } else {
    // Each call's worker was still running it, so it was killed and replaced.
    status_until(*c, "ops", [](const json& st) { return st["restarts"] == 3; }, "3 restarts");
  }
  CHECK(must_call(*c, "ops.echo", "2").data == "2");
}

TEST_CASE("the plugin's timeout_ms caps the client's deadline", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 1, "timeout_ms = 100"));
  auto c = connect(d);
  // Under the client's 60 s deadline this call would return true after 20 s:
  // a timeout can only come from the plugin's 100 ms.
  CHECK(must_call(*c, "ops.cooperate", "[20000]", 60000).code == FERRY_E_TIMEOUT);
  // The follow-up calls would be capped too: read the pool from ferry.status.
  status_until(*c, "ops", [](const json& st) { return st["running"] == 0; }, "the call ended");
}

TEST_CASE("a call still queued at its deadline never starts", "[integration][deadline]") {
  const char* executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config(executor, 1));
  auto c = connect(d);
  REQUIRE(must_call(*c, "ops.echo", "1").code == FERRY_OK);
  const auto running = c->send_call("ops.cooperate", "[20000]");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 1; }, "the first call running");
  const auto queued = c->send_call("ops.cooperate", "[20000]", 100);
  auto r = reply_for(*c, queued);
  CHECK(r.code == FERRY_E_TIMEOUT);
  // CANCEL answers the running call at once.
  REQUIRE(c->send_cancel(running));
  auto cancelled = reply_for(*c, running);
  CHECK(cancelled.code == FERRY_E_CANCELLED);
  // The running call saw its cancellation (in process mode through the
  // worker's control thread), so no worker was killed.
  CHECK(must_call(*c, "ops.await_noticed", "[1]").data == "true");
  auto counts = json::parse(must_call(*c, "ops.counts", "[]").data);
  CHECK(counts["started"] == 1);  // the queued call never ran
  CHECK(plugin_status(*c, "ops")["restarts"].get<int>() == 0);
}

TEST_CASE("process mode: a call that ignores its cancellation is killed after the grace", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("process", 1));
  auto c = connect(d);
  const auto id = c->send_call("ops.ignore", "[20000]");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 1; }, "the call running");
  REQUIRE(c->send_cancel(id));
  CHECK(reply_for(*c, id).code == FERRY_E_CANCELLED);  // answered at once, not after the grace
  status_until(*c, "ops", [](const json& st) { return st["restarts"] == 1 && st["running"] == 0; },
               "the worker killed and replaced");
  wait_until([&] { return c->ping().has_value() && d.log().find("ignored that for 100 ms") != std::string::npos; },
             "the kill logged");
  CHECK_THAT(d.log(), Catch::Contains("killed: its call was cancelled (cancelled) and it ignored that for 100 ms"
                                      " during ops.ignore, call " + std::to_string(id)));
  CHECK(must_call(*c, "ops.echo", "2").data == "2");
}

TEST_CASE("CANCEL of a queued call removes it; CANCEL of an answered call is ignored", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 1));
  auto c = connect(d);
  const auto running = c->send_call("ops.cooperate", "[20000]");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 1; }, "the first call running");
  const auto queued = c->send_call("ops.ignore", "[0]");
  REQUIRE(c->send_cancel(queued));
  CHECK(reply_for(*c, queued).code == FERRY_E_CANCELLED);
  REQUIRE(c->send_cancel(queued));  // already answered: no second reply
  REQUIRE(c->send_cancel(running));
  CHECK(reply_for(*c, running).code == FERRY_E_CANCELLED);
  auto counts = json::parse(must_call(*c, "ops.counts", "[]").data);
  CHECK(counts["started"] == 1);
  CHECK(counts["finished"] == 0);
  // The id of an answered call may be used again at once.
  CHECK(must_call(*c, "ops.echo", "7").data == "7");
}

TEST_CASE("a client that disconnects cancels its calls", "[integration][deadline]") {
  const char* executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config(executor, 2));
  auto observer = connect(d);
  REQUIRE(must_call(*observer, "ops.echo", "1").code == FERRY_OK);
  {
    auto gone = connect(d);
    gone->send_call("ops.cooperate", "[20000]");
    REQUIRE(gone->flush());
    status_until(*observer, "ops", [](const json& st) { return st["running"] == 1; }, "the call running");
  }
  if (std::string(executor) == "thread") {
    CHECK(must_call(*observer, "ops.await_noticed", "[1]").data == "true");
  }
  // In process mode the call returned in time, so its worker was kept.
  const json st = status_until(*observer, "ops", [](const json& s) { return s["running"] == 0; }, "nothing running");
  CHECK(st["restarts"] == 0);
}

TEST_CASE("a thread that ignores its cancellation is counted stuck and replaced", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2, "max_stuck_threads = 1"));
  auto c = connect(d);
  // ops.await_noticed(1) never looks at ctx.cancelled(): it runs until a
  // cooperate call notices a cancellation, which only this test triggers.
  // So its timeout reply comes while it still runs.
  CHECK(must_call(*c, "ops.await_noticed", "[1]", 100).code == FERRY_E_TIMEOUT);
  // Still running 100 ms after its cancellation: stuck.
  auto st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 1; }, "stuck");
  CHECK(st["threads"] == 3);  // a replacement keeps the live capacity at 2
  // Served by a live thread while the stuck call still runs.
  CHECK(must_call(*c, "ops.echo", "3").data == "3");
  CHECK(plugin_status(*c, "ops")["stuck"] == 1);
  // The cap: a second stuck call gets no further replacement.
  CHECK(must_call(*c, "ops.await_noticed", "[1]", 100).code == FERRY_E_TIMEOUT);
  st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 2; }, "two stuck");
  CHECK(st["threads"] == 3);
  // The one live thread runs a cooperate call; its cancellation ends both stuck calls.
  const auto release = c->send_call("ops.cooperate", "[20000]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 1; }, "the release running");
  REQUIRE(c->send_cancel(release));
  CHECK(reply_for(*c, release).code == FERRY_E_CANCELLED);
  // When the stuck calls end, the pool shrinks back to its size.
  st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 0 && s["threads"] == 2; }, "unstuck");
  CHECK(must_call(*c, "ops.echo", "4").data == "4");
}

TEST_CASE("drain: running calls finish within drain_timeout_ms, the rest are answered shutting_down",
          "[integration][drain]") {
  // The drain must outlast a few round trips (the release below), no more.
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 3), "drain_timeout_ms = 2000\n");
  auto c = connect(d);
  // `quick` runs until `trigger` notices a cancellation; `slow` would run 30 s.
  const auto quick = c->send_call("ops.await_noticed", "[1]");
  const auto trigger = c->send_call("ops.cooperate", "[20000]");
  const auto slow = c->send_call("ops.ignore", "[30000]");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 3; }, "three calls running");
  auto silent = connect(d);  // sends calls, never reads its replies
  for (int i = 0; i < 4; ++i) silent->send_call("ops.echo", std::string(1 << 20, '7'));
  REQUIRE(silent->flush());
  REQUIRE(c->ping("sync").has_value());
  kill(d.pid(), SIGTERM);
  // Once ferryd is draining (it refuses new calls), let `quick` finish.
  wait_until([&] { return must_call(*c, "ferry.status", "[]").code == FERRY_E_SHUTTING_DOWN; }, "draining");
  REQUIRE(c->send_cancel(trigger));
  std::map<std::uint64_t, int> codes;
  for (int i = 0; i < 3; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    codes[r->call_id] = r->code;
  }
  CHECK(codes[trigger] == FERRY_E_CANCELLED);
  CHECK(codes[quick] == FERRY_OK);  // finished during the drain
  // Had ferryd waited for it, `slow` would have returned true after 30 s.
  CHECK(codes[slow] == FERRY_E_SHUTTING_DOWN);
  // ferryd exits although `slow` still runs and `silent` never reads.
  CHECK(d.wait() == 0);
  CHECK_THAT(d.log(), Catch::Contains("drain timeout"));
}

TEST_CASE("one client flooding a plugin cannot starve another; higher priority runs first",
          "[integration][fairness]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 1));
  auto flood = connect(d);
  auto other = connect(d);
  // Hold the only thread, then queue 100 calls from one client.
  const auto holder = flood->send_call("ops.cooperate", "[20000]");
  REQUIRE(flood->flush());
  status_until(*other, "ops", [](const json& st) { return st["running"] == 1; }, "holder running");
  for (int i = 0; i < 100; ++i) flood->send_call("ops.ignore", "[0]");
  REQUIRE(flood->ping("sync").has_value());  // all 100 are queued
  // The other client's call queues behind them, at the same priority.
  const auto fair = other->send_call("ops.counts", "[]");
  REQUIRE(other->ping("sync").has_value());
  REQUIRE(flood->send_cancel(holder));
  REQUIRE(flood->flush());
  auto r = reply_for(*other, fair);
  REQUIRE(r.code == FERRY_OK);
  // Connections take turns: at most one flooding call ran before it (FIFO: 100).
  CHECK(json::parse(r.data)["finished"].get<int>() <= 1);

  // Priority: sent after 100 low-priority calls, a high-priority one runs first.
  status_until(*other, "ops", [](const json& st) { return st["running"] == 0 && st["queued"] == 0; }, "round 1 done");
  CHECK(json::parse(must_call(*other, "ops.counts", "[]").data)["finished"] == 100);
  const auto holder2 = flood->send_call("ops.cooperate", "[20000]");
  REQUIRE(flood->flush());
  status_until(*other, "ops", [](const json& st) { return st["running"] == 1; }, "holder 2 running");
  for (int i = 0; i < 100; ++i) flood->send_call("ops.ignore", "[0]", 0, ferry::Priority::low);
  const auto urgent = flood->send_call("ops.counts", "[]", 0, ferry::Priority::high);
  REQUIRE(flood->ping("sync").has_value());  // all queued
  REQUIRE(flood->send_cancel(holder2));
  std::optional<ferry::Reply> u;
  while ((u = flood->read_reply()) && u->call_id != urgent) {
  }
  REQUIRE(u.has_value());
  CHECK(json::parse(u->data)["finished"] == 100);  // no low-priority call ran before it
}

TEST_CASE("ctx.cancel_fd wakes a blocked poll() within 10 ms of a CANCEL", "[integration][deadline]") {
  const char* executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  // The sandbox stays on: the worker's control thread and timerfd work under seccomp.
  FerrydProcess d({fixture_path("fixture_ops_v1")},
                  std::string("[plugins.ops]\nexecutor = \"") + executor + "\"\nworkers = 1\n");
  auto c = connect(d);
  std::vector<std::int64_t> latency_us;
  for (int round = 1; round <= 5; ++round) {
    const auto id = c->send_call("ops.poll_cancel", "[30000]");
    status_until(*c, "ops", [](const json& st) { return st["running"] == 1; }, "the call running");
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const std::int64_t sent_us = std::int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
    REQUIRE(c->send_cancel(id));
    CHECK(reply_for(*c, id).code == FERRY_E_CANCELLED);
    status_until(*c, "ops", [](const json& st) { return st["running"] == 0; }, "the call returned");
    const json counts = json::parse(must_call(*c, "ops.counts", "[]").data);
    REQUIRE(counts["noticed"] == round);  // poll() woke: the same worker, never killed
    latency_us.push_back(std::stoll(must_call(*c, "ops.last_wake", "[]").data) - sent_us);
  }
  std::sort(latency_us.begin(), latency_us.end());
  INFO("wake-up after CANCEL, us: " << latency_us[0] << " .. " << latency_us[4]);
  CHECK(latency_us[0] >= 0);
  CHECK(latency_us[4] < 1000000);  // the fd woke poll(), not its 30 s timeout
#ifdef FERRY_TIMING_ASSERTS
  CHECK(latency_us[2] <= 10000);  // the median: a loaded machine may delay one
#endif
  CHECK(plugin_status(*c, "ops")["restarts"] == 0);
}
