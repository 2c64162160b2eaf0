// Nested calls (ctx.call), end to end: the real ferryd, the "ops" fixture
// plugin in thread and process mode, the real client. Caller-runs: a nested
// call runs on its caller's thread, so it never waits for pool capacity.
#include <catch2/catch.hpp>

#include <cstddef>
#include <nlohmann/json.hpp>

#include "ferry/client.hpp"
#include "ferry/plugin.hpp"
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
using ferry::test::plugin_path;
using json = nlohmann::json;

namespace {

// Thread mode, or process mode under the real sandbox.
std::string ops_config(const std::string& executor, int workers) {
  return "[plugins.ops]\nexecutor = \"" + executor + "\"\nworkers = " + std::to_string(workers) + "\n";
}

std::string recurse(int n) { return "[" + std::to_string(n) + "]"; }

// ops.call(fn, args): a nested call of fn from inside ops.
std::string nested(const std::string& fn, const json& args) { return json::array({fn, args}).dump(); }

}  // namespace

TEST_CASE("thread pool of 2: recursion 50 deep completes, even with the pool full", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2));
  auto c = connect(d);
  auto r = must_call(*c, "ops.recurse", recurse(50));
  REQUIRE(r.code == FERRY_OK);
  CHECK(r.data == "50");  // 50 nested levels, each counted on the way back
  // Two at once: neither waits for a thread the other holds.
  const auto a = c->send_call("ops.recurse", recurse(50));
  const auto b = c->send_call("ops.recurse", recurse(50));
  for (int i = 0; i < 2; ++i) {
    auto x = c->read_reply();
    REQUIRE(x.has_value());
    CHECK((x->call_id == a || x->call_id == b));
    CHECK(x->code == FERRY_OK);
    CHECK(x->data == "50");
  }
  // One thread held by a long call: the other recurses alone, in a full pool.
  const auto blocker = c->send_call("ops.cooperate", "[20000]");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 1; }, "the blocker running");
  r = must_call(*c, "ops.recurse", recurse(50));
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == "50");
  // The recursion never waited for the blocker's thread: that one is still
  // running (had it ended, its reply would be true, not cancelled).
  REQUIRE(c->send_cancel(blocker));
  CHECK(reply_for(*c, blocker).code == FERRY_E_CANCELLED);
}

TEST_CASE("thread mode: a nested call deeper than max_call_depth is refused", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2), "max_call_depth = 10\n");
  auto c = connect(d);
  auto ok = must_call(*c, "ops.recurse", recurse(10));  // the deepest level runs at depth 10
  CHECK(ok.code == FERRY_OK);
  CHECK(ok.data == "10");
  auto r = must_call(*c, "ops.recurse", recurse(11));
  CHECK(r.code == FERRY_E_CALL_DEPTH_EXCEEDED);  // propagated up through all 10 levels
  CHECK_THAT(r.data, Catch::Contains("call depth exceeded") && Catch::Contains("max_call_depth 10") &&
                         Catch::Contains("depth 11"));
  // A cycle (here ops.recurse -> ops.recurse, all but endless) re-enters on
  // the same thread: bounded by the depth (a hang would be answered timeout
  // after 30 s), never a stack overflow (ferryd still serves).
  r = must_call(*c, "ops.call", nested("ops.recurse", json::array({1000000})));
  CHECK(r.code == FERRY_E_CALL_DEPTH_EXCEEDED);
  CHECK(must_call(*c, "ops.recurse", recurse(3)).data == "3");
}

TEST_CASE("process mode: recursion runs inside the worker, bounded by max_call_depth", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("process", 1));
  auto c = connect(d);
  auto r = must_call(*c, "ops.recurse", recurse(50));
  REQUIRE(r.code == FERRY_OK);
  CHECK(r.data == "50");
  // The worker's limit is the spec's max_call_depth: 64 by default.
  CHECK(must_call(*c, "ops.recurse", recurse(64)).data == "64");
  r = must_call(*c, "ops.recurse", recurse(65));
  CHECK(r.code == FERRY_E_CALL_DEPTH_EXCEEDED);
  CHECK_THAT(r.data, Catch::Contains("call depth exceeded") && Catch::Contains("max_call_depth 64"));
  CHECK(plugin_status(*c, "ops")["restarts"] == 0);  // refused, not crashed
}

TEST_CASE("process mode: the workers take server.max_call_depth from the config", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("process", 1), "max_call_depth = 10\n");
  auto c = connect(d);
  CHECK(must_call(*c, "ops.recurse", recurse(10)).data == "10");
  auto r = must_call(*c, "ops.recurse", recurse(11));
  CHECK(r.code == FERRY_E_CALL_DEPTH_EXCEEDED);
  CHECK_THAT(r.data, Catch::Contains("max_call_depth 10"));
}

TEST_CASE("thread mode: what a nested call can reach", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1"), plugin_path("demo")},
                  ops_config("thread", 2) + "[plugins.demo]\nexecutor = \"process\"\nworkers = 1\n");
  auto c = connect(d);
  // Its own plugin, raw and typed.
  auto r = must_call(*c, "ops.call", nested("ops.echo", json::array({1, "x"})));
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == R"([1,"x"])");
  r = must_call(*c, "ops.call", nested("nope.nothing", json::array()));
  CHECK(r.code == FERRY_E_UNKNOWN_FUNCTION);
  CHECK_THAT(r.data, Catch::Contains("nope.nothing"));
  // A process-executor plugin: its code never runs in ferryd.
  REQUIRE(must_call(*c, "demo.echo", "[1]").code == FERRY_OK);
  r = must_call(*c, "ops.call", nested("demo.echo", json::array({1})));
  CHECK(r.code == FERRY_E_PERMISSION_DENIED);
  CHECK_THAT(r.data, Catch::Contains("'demo.echo' runs in worker processes"));
  // The callee's error reaches the caller with its code, through two levels.
  r = must_call(*c, "ops.call", nested("ops.call", json::array({"nope.nothing", json::array()})));
  CHECK(r.code == FERRY_E_UNKNOWN_FUNCTION);
  r = must_call(*c, "ops.call", nested("ops.recurse", json::array({"not a number"})));
  CHECK(r.code == FERRY_E_BAD_REQUEST);
}

TEST_CASE("thread mode: a nested call reaches another thread-executor plugin", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1"), plugin_path("demo")}, ops_config("thread", 1));
  auto c = connect(d);
  auto r = must_call(*c, "ops.call", nested("demo.echo", json::array({{{"k", 1}}})));
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == R"({"k":1})");
  r = must_call(*c, "ops.call", nested("demo.fail", json::array({"broken"})));
  CHECK(r.code == FERRY_E_PLUGIN_ERROR);
  CHECK(r.data == "broken");
}

TEST_CASE("process mode: a nested call reaches only the worker's own plugin", "[integration][nested]") {
  FerrydProcess d({fixture_path("fixture_ops_v1"), plugin_path("demo")},
                  ops_config("process", 1) + "[plugins.demo]\nexecutor = \"thread\"\nworkers = 1\n");
  auto c = connect(d);
  auto r = must_call(*c, "ops.call", nested("ops.echo", json::array({2})));
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == "[2]");
  REQUIRE(must_call(*c, "demo.echo", "[1]").code == FERRY_OK);
  r = must_call(*c, "ops.call", nested("demo.echo", json::array({1})));
  CHECK(r.code == FERRY_E_PERMISSION_DENIED);
  CHECK_THAT(r.data, Catch::Contains("'demo.echo' is out of reach") && Catch::Contains("ops.*"));
  r = must_call(*c, "ops.call", nested("nope.nothing", json::array()));
  CHECK(r.code == FERRY_E_PERMISSION_DENIED);  // the worker cannot know what exists elsewhere
}

TEST_CASE("a nested call runs under its caller's deadline", "[integration][nested][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2));
  auto c = connect(d);
  // The nested cooperate would run 20 s: a timeout comes from the caller's 100 ms.
  auto r = must_call(*c, "ops.call", nested("ops.cooperate", json::array({20000})), 100);
  CHECK(r.code == FERRY_E_TIMEOUT);
  // The nested cooperate itself saw the deadline and stopped.
  CHECK(must_call(*c, "ops.await_noticed", "[1]").data == "true");
  auto counts = json::parse(must_call(*c, "ops.counts", "[]").data);
  CHECK(counts["finished"] == 0);
}

TEST_CASE("cancelling a call cancels its nested calls", "[integration][nested][deadline]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2));
  auto c = connect(d);
  // Two levels down: ops.call -> ops.call -> ops.cooperate.
  const json inner = json::array({"ops.cooperate", json::array({20000})});
  const auto id = c->send_call("ops.call", nested("ops.call", inner));
  // Wait until the nested cooperate runs (ops.counts runs on the other thread).
  wait_until([&] { return json::parse(must_call(*c, "ops.counts", "[]").data)["started"] == 1; },
             "the nested cooperate running");
  REQUIRE(c->send_cancel(id));
  CHECK(reply_for(*c, id).code == FERRY_E_CANCELLED);
  CHECK(must_call(*c, "ops.await_noticed", "[1]").data == "true");
  status_until(*c, "ops", [](const json& st) { return st["running"] == 0; }, "nothing running");
}

// The SDK side, without a server: a plugin built for ABI 1.1 still initialises
// on a 1.0 host (its table ends before ctx_call); ctx.call then says why not.
TEST_CASE("on a host without ctx_call, ctx.call throws unsupported_version", "[nested][sdk]") {
  ferry_host_api old_host{};
  old_host.abi_major = FERRY_ABI_MAJOR;
  old_host.abi_minor = 0;
  old_host.struct_size = offsetof(ferry_host_api, ctx_call);
  CHECK(ferry::detail::run_init(&old_host, nullptr, [](ferry::Plugin&) {}) == 0);
  const ferry::Context ctx(&old_host, nullptr);
  try {
    ctx.call("ops.echo", json::array());
    FAIL("ctx.call returned");
  } catch (const ferry::Error& e) {
    CHECK(e.code() == FERRY_E_UNSUPPORTED_VERSION);
    CHECK_THAT(e.what(), Catch::Contains("1.1"));
  }
}
