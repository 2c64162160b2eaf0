// The process executor's pipeline: several calls in flight per worker, run
// one after another; each gets exactly one reply, whatever happens to the
// worker (crash, deadline kill) or to the call (cancel) while others wait
// behind it or in front of it.
#include <catch2/catch.hpp>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"

using ferry::Client;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::plugin_path;
using ferry::test::plugin_status;
using ferry::test::status_until;
using nlohmann::json;

namespace {

// One worker, so that every call waits behind the ones sent before it.
std::string one_worker(const std::string& plugin, int depth) {
  return "[plugins." + plugin + "]\nexecutor = \"process\"\nworkers = 1\npipeline_depth = " +
         std::to_string(depth) + "\n[plugins." + plugin + ".sandbox]\nenabled = false\n";
}

// Reads `n` replies; each call id must come once.
std::map<std::uint64_t, ferry::Reply> read_replies(Client& c, std::size_t n) {
  std::map<std::uint64_t, ferry::Reply> got;
  for (std::size_t k = 0; k < n; ++k) {
    auto r = c.read_reply();
    REQUIRE(r.has_value());
    INFO("call " << r->call_id);
    REQUIRE(got.count(r->call_id) == 0);
    got.emplace(r->call_id, *r);
  }
  return got;
}

// Nothing more comes for any call: the next reply is the PONG.
void no_more_replies(Client& c) {
  const auto ping = c.send_ping("end");
  auto r = c.read_reply();
  REQUIRE(r.has_value());
  CHECK(r->call_id == ping);
}

}  // namespace

TEST_CASE("pipelined calls run on the worker, in flight up to pipeline_depth, each with its own result",
          "[process][pipeline]") {
  FerrydProcess d({plugin_path("demo")}, one_worker("demo", 3));
  auto c = connect(d);
  status_until(*c, "demo", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "worker up");
  std::vector<std::uint64_t> slow;
  for (int i = 0; i < 5; ++i) slow.push_back(c->send_call("demo.sleep_ms", "[300]"));
  const json st = status_until(*c, "demo", [](const json& s) { return s["running"] == 3; }, "3 in flight");
  CHECK(st["queued"] == 2);  // the rest wait in ferryd, where priorities still apply
  auto got = read_replies(*c, 5);
  for (auto id : slow) CHECK(got.at(id).code == FERRY_OK);
  std::map<std::uint64_t, std::string> want;
  for (int i = 0; i < 300; ++i) want[c->send_call("demo.echo", "[" + std::to_string(i) + "]")] = std::to_string(i);
  for (auto& [id, r] : read_replies(*c, want.size())) {
    CHECK(r.code == FERRY_OK);
    CHECK(r.data == want.at(id));
  }
  no_more_replies(*c);
  const json after = plugin_status(*c, "demo");
  CHECK(after["restarts"] == 0);
  CHECK(after["completed"] == 305);
  CHECK(after["running"] == 0);
}

TEST_CASE("a worker that crashes with calls in flight answers each exactly once; the calls behind the crash "
          "run on its replacement",
          "[process][pipeline]") {
  FerrydProcess d({plugin_path("demo")}, one_worker("demo", 8));
  auto c = connect(d);
  status_until(*c, "demo", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "worker up");
  const auto first = c->send_call("demo.sleep_ms", "[300]");
  const auto crash = c->send_call("demo.crash", "[]");
  std::map<std::uint64_t, std::string> behind;
  for (int i = 0; i < 5; ++i) behind[c->send_call("demo.echo", "[" + std::to_string(i) + "]")] = std::to_string(i);
  const json st = status_until(*c, "demo", [](const json& s) { return s["running"] == 7; }, "7 in flight");
  const int pid = st["processes"][0]["pid"];
  auto got = read_replies(*c, 7);
  CHECK(got.at(first).code == FERRY_OK);  // finished before the crash
  CHECK(got.at(crash).code == FERRY_E_WORKER_CRASHED);
  CHECK_THAT(got.at(crash).data, Catch::Contains("SIGSEGV"));
  for (auto& [id, data] : behind) {
    CHECK(got.at(id).code == FERRY_OK);  // not started when the worker died: run again
    CHECK(got.at(id).data == data);
  }
  no_more_replies(*c);
  const json after = plugin_status(*c, "demo");
  CHECK(after["restarts"] == 1);
  CHECK(after["processes"][0]["pid"] != pid);
  CHECK(d.log().find("during demo.crash, call " + std::to_string(crash)) != std::string::npos);
}

TEST_CASE("a call killed at its deadline fails alone; the calls waiting behind it run on the replacement",
          "[process][pipeline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, one_worker("ops", 8));
  auto c = connect(d);
  status_until(*c, "ops", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "worker up");
  const auto stuck = c->send_call("ops.ignore", "[20000]", 1000);  // never looks at its cancellation
  std::vector<std::uint64_t> behind;
  for (int i = 0; i < 4; ++i) behind.push_back(c->send_call("ops.echo", "[" + std::to_string(i) + "]"));
  status_until(*c, "ops", [](const json& s) { return s["running"] == 5; }, "5 in flight");  // all behind the stuck one
  auto got = read_replies(*c, 5);
  CHECK(got.at(stuck).code == FERRY_E_TIMEOUT);
  for (int i = 0; i < 4; ++i) {
    CHECK(got.at(behind[std::size_t(i)]).code == FERRY_OK);
    CHECK(got.at(behind[std::size_t(i)]).data == "[" + std::to_string(i) + "]");  // ops.echo: its arguments
  }
  no_more_replies(*c);
  CHECK(plugin_status(*c, "ops")["restarts"] == 1);
  const json counts = json::parse(must_call(*c, "ops.counts", "[]").data);
  CHECK(counts["started"] == 0);  // the replacement did not run the killed call again
}

TEST_CASE("a call cancelled while it waits in a worker never runs, and its worker is kept", "[process][pipeline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, one_worker("ops", 8));
  auto c = connect(d);
  status_until(*c, "ops", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "worker up");
  const auto running = c->send_call("ops.ignore", "[300]");
  const auto cancelled = c->send_call("ops.ignore", "[300]");
  const auto expired = c->send_call("ops.ignore", "[300]", 100);  // its deadline passes while it waits
  const auto after = c->send_call("ops.echo", "[7]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 4; }, "4 in flight");
  REQUIRE(c->send_cancel(cancelled));
  auto got = read_replies(*c, 4);
  CHECK(got.at(running).code == FERRY_OK);
  CHECK(got.at(cancelled).code == FERRY_E_CANCELLED);
  CHECK(got.at(expired).code == FERRY_E_TIMEOUT);
  CHECK(got.at(after).data == "[7]");
  no_more_replies(*c);
  const json counts = json::parse(must_call(*c, "ops.counts", "[]").data);
  CHECK(counts["started"] == 1);  // only the first ignore ran
  CHECK(plugin_status(*c, "ops")["restarts"] == 0);
}

TEST_CASE("streamed calls in a pipeline: each call's partials, in order, then its result; plain calls between",
          "[process][pipeline][stream]") {
  FerrydProcess d({plugin_path("demo")}, one_worker("demo", 8));
  auto c = connect(d);
  status_until(*c, "demo", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "worker up");
  std::map<std::uint64_t, std::vector<std::string>> partials;
  std::set<std::uint64_t> streamed, plain;
  for (int i = 0; i < 4; ++i) {
    streamed.insert(c->send_stream("demo.count", "[50, 0]"));
    plain.insert(c->send_call("demo.echo", "[" + std::to_string(i) + "]"));
  }
  std::size_t finals = 0;
  while (finals < 8) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    if (r->kind == ferry::ReplyKind::partial) {
      REQUIRE(streamed.count(r->call_id) == 1);
      partials[r->call_id].push_back(r->data);
      continue;
    }
    ++finals;
    CHECK(r->code == FERRY_OK);
    if (streamed.count(r->call_id) == 1) {
      CHECK(r->data == "50");
      REQUIRE(partials[r->call_id].size() == 50);
      for (int k = 0; k < 50; ++k) CHECK(partials[r->call_id][std::size_t(k)] == std::to_string(k + 1));
    } else {
      CHECK(plain.count(r->call_id) == 1);
    }
  }
  no_more_replies(*c);
  CHECK(plugin_status(*c, "demo")["restarts"] == 0);
}
