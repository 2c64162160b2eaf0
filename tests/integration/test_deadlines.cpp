// Deadlines, cancellation and the drain timeout, end to end: the real ferryd,
// the "ops" fixture plugin in thread and process mode, the real client.
#include <catch2/catch.hpp>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>

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
using ferry::test::ms_since;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;


std::string ops_config(const char* executor, int workers, const std::string& extra = "") {
  return std::string("[plugins.ops]\nexecutor = \"") + executor + "\"\nworkers = " + std::to_string(workers) +
         "\n" + extra + "\n[plugins.ops.sandbox]\nenabled = false\n";
}


// Reads status until pred holds (each read is a full round trip to ferryd).


}  // namespace

TEST_CASE("a running call past its deadline is answered timeout on time", "[integration][deadline]") {
  const char* executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config(executor, 2));
  auto c = connect(d);
  REQUIRE(must_call(*c, "ops.echo", "1").code == FERRY_OK);  // workers are up
  // Thread mode: a function that polls ctx.cancelled(). Process mode: one
  // that never does, so only killing its worker ends it.
  const std::string fn = std::string(executor) == "thread" ? "ops.cooperate" : "ops.ignore";
  for (std::uint32_t timeout : {50u, 150u, 300u}) {
    const auto start = Clock::now();
    auto r = must_call(*c, fn, "[20000]", timeout);
    const auto elapsed = ms_since(start);
    CHECK(r.code == FERRY_E_TIMEOUT);
    CHECK(elapsed >= timeout - 1);
    CHECK(elapsed <= timeout + 50);
  }
  if (std::string(executor) == "thread") {
    // The function saw ctx.cancelled() and gave up: three times.
    CHECK(must_call(*c, "ops.await_noticed", "[3]").data == "true");
  } else {
    // Each timed-out call's worker was killed and replaced.
    status_until(*c, "ops", [](const json& st) { return st["restarts"] == 3; }, "3 restarts");
  }
  CHECK(must_call(*c, "ops.echo", "2").data == "2");
}

TEST_CASE("the plugin's timeout_ms caps the client's deadline", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 1, "timeout_ms = 100"));
  auto c = connect(d);
  const auto start = Clock::now();
  CHECK(must_call(*c, "ops.cooperate", "[20000]", 60000).code == FERRY_E_TIMEOUT);
  CHECK(ms_since(start) <= 150);
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
  if (std::string(executor) == "thread") {
    CHECK(must_call(*c, "ops.await_noticed", "[1]").data == "true");  // the running one saw it
    auto counts = json::parse(must_call(*c, "ops.counts", "[]").data);
    CHECK(counts["started"] == 1);  // the queued call never ran
  } else {
    // Only the running call's worker was killed: the queued call never reached one.
    auto st = status_until(*c, "ops", [](const json& s) { return s["processes"][0]["state"] == "idle"; }, "idle");
    CHECK(st["restarts"] == 1);
    CHECK(must_call(*c, "ops.counts", "[]").data == R"({"finished":0,"noticed":0,"started":0})");
  }
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
  } else {
    status_until(*observer, "ops", [](const json& st) { return st["restarts"] == 1; }, "the worker killed");
  }
  status_until(*observer, "ops", [](const json& st) { return st["running"] == 0; }, "nothing running");
}

TEST_CASE("a thread that ignores its cancellation is counted stuck and replaced", "[integration][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 1, "max_stuck_threads = 1"));
  auto c = connect(d);
  const auto start = Clock::now();
  CHECK(must_call(*c, "ops.ignore", "[1500]", 100).code == FERRY_E_TIMEOUT);
  CHECK(ms_since(start) <= 150);
  // Still running 100 ms after its cancellation: stuck.
  auto st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 1; }, "stuck");
  CHECK(st["threads"] == 2);  // a replacement keeps the live capacity at 1
  // Served by the replacement while the stuck call still runs.
  CHECK(must_call(*c, "ops.echo", "3").data == "3");
  CHECK(plugin_status(*c, "ops")["stuck"] == 1);
  // The cap: a second stuck call gets no further replacement.
  CHECK(must_call(*c, "ops.ignore", "[1500]", 50).code == FERRY_E_TIMEOUT);
  st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 2; }, "two stuck");
  CHECK(st["threads"] == 2);
  // When the stuck calls end, the pool shrinks back to its size.
  st = status_until(*c, "ops", [](const json& s) { return s["stuck"] == 0 && s["threads"] == 1; }, "unstuck");
  CHECK(must_call(*c, "ops.echo", "4").data == "4");
}

TEST_CASE("drain: running calls finish within drain_timeout_ms, the rest are answered shutting_down",
          "[integration][drain]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2), "drain_timeout_ms = 400\n");
  auto c = connect(d);
  const auto quick = c->send_call("ops.cooperate", "[100]");
  const auto slow = c->send_call("ops.ignore", "[30000]");
  auto silent = connect(d);  // sends calls, never reads its replies
  for (int i = 0; i < 4; ++i) silent->send_call("ops.echo", std::string(1 << 20, '7'));
  REQUIRE(silent->flush());
  REQUIRE(c->ping("sync").has_value());
  const auto start = Clock::now();
  kill(d.pid(), SIGTERM);
  std::map<std::uint64_t, int> codes;
  for (int i = 0; i < 2; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    codes[r->call_id] = r->code;
  }
  CHECK(codes[quick] == FERRY_OK);
  CHECK(codes[slow] == FERRY_E_SHUTTING_DOWN);
  CHECK(d.wait() == 0);
  CHECK(ms_since(start) < 3000);
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
