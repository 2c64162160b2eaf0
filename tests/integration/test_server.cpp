// End-to-end: the real ferryd, real plugins, the real client over a Unix socket.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"
#include "stream_support.hpp"

using ferry::Client;
using ferry::ReplyKind;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::must_call;
using ferry::test::fixture_path;
using ferry::test::plugin_path;
using ferry::test::status_until;
using ferry::test::wait_until;
using ferry::test::header;
using ferry::test::raw_exchange;

namespace {

std::vector<std::string> example_plugins() {
  return {plugin_path("primes"), plugin_path("demo"), fixture_path("fixture_latch")};
}


}  // namespace

TEST_CASE("calls reach plugin functions and return their JSON results", "[integration]") {
  FerrydProcess d(example_plugins());
  auto c = connect(d);
  auto r = must_call(*c, "primes.is_prime", "[112272535095293]");
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == "true");
  CHECK(must_call(*c, "primes.is_prime", "[112272535095291]").data == "false");
  CHECK(must_call(*c, "primes.factorize", "[360]").data == "[2,2,2,3,3,5]");
  auto echo = must_call(*c, "demo.echo", R"([{"a":1}])");
  CHECK(echo.code == FERRY_OK);
  CHECK(nlohmann::json::parse(echo.data) == nlohmann::json::parse(R"({"a":1})"));
}

TEST_CASE("ferry.list names every function with its plugin and executor", "[integration]") {
  FerrydProcess d(example_plugins(), "[plugins.primes]\nworkers = 3\n");
  auto c = connect(d);
  auto r = must_call(*c, "ferry.list", "[]");
  REQUIRE(r.code == FERRY_OK);
  auto j = nlohmann::json::parse(r.data);
  std::map<std::string, nlohmann::json> by_name;
  for (auto& p : j["plugins"]) by_name[p["name"]] = p;
  REQUIRE(by_name.count("primes") == 1);
  CHECK(by_name["primes"]["executor"] == "thread");
  CHECK(by_name["primes"]["workers"] == 3);
  CHECK(by_name["primes"]["functions"] == nlohmann::json({"primes.factorize", "primes.is_prime"}));
  CHECK(by_name["demo"]["functions"].size() >= 5);
}

TEST_CASE("a plugin file whose name is not UTF-8 loads, and ferry.list still answers", "[integration]") {
  // The name travels in the worker spec and in ferry.list (both JSON).
  const std::filesystem::path aside = std::filesystem::temp_directory_path() / "ferry-name-test";
  std::filesystem::create_directories(aside);
  const std::filesystem::path odd = aside / "primes-\xff\xfe.so";
  std::filesystem::remove(odd);
  std::filesystem::create_symlink(plugin_path("primes"), odd);
  FerrydProcess d({odd.string()});
  auto c = connect(d);
  CHECK(must_call(*c, "primes.is_prime", "[7]").data == "true");
  const auto list = must_call(*c, "ferry.list", "[]");
  REQUIRE(list.code == FERRY_OK);
  const auto doc = nlohmann::json::parse(list.data);  // valid JSON (U+FFFD for the bad bytes)
  CHECK(doc["plugins"][0]["name"] == "primes");
  std::filesystem::remove_all(aside);
}

TEST_CASE("calls on one connection are answered out of order", "[integration]") {
  FerrydProcess d(example_plugins(), "[plugins.latch]\nworkers = 4\n");
  auto c = connect(d);
  const auto blocked = c->send_call("latch.wait", R"(["k"])");
  const auto quick = c->send_call("demo.echo", "[5]");
  auto first = c->read_reply();
  REQUIRE(first.has_value());
  CHECK(first->call_id == quick);  // the earlier call is still blocked
  CHECK(first->data == "5");
  // The blocked call is in latch.wait (not merely queued) before it is opened.
  wait_until([&] { return must_call(*c, "latch.waiting", R"(["k"])").data == "1"; }, "the call in latch.wait");
  const auto opener = c->send_call("latch.open", R"(["k"])");
  std::map<std::uint64_t, std::string> rest;
  for (int i = 0; i < 2; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    CHECK(r->code == FERRY_OK);
    rest[r->call_id] = r->data;
  }
  CHECK(rest[blocked] == "true");
  CHECK(rest[opener] == "1");
}

TEST_CASE("many calls multiplexed on one connection each get exactly one reply", "[integration]") {
  FerrydProcess d(example_plugins());
  auto c = connect(d);
  std::map<std::uint64_t, int> expected;
  for (int i = 0; i < 500; ++i) expected[c->send_call("demo.echo", "[" + std::to_string(i) + "]")] = i;
  for (int i = 0; i < 500; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    REQUIRE(expected.count(r->call_id) == 1);
    CHECK(r->data == std::to_string(expected[r->call_id]));
    expected.erase(r->call_id);
  }
  CHECK(expected.empty());
}

TEST_CASE("unknown functions and plugin exceptions are typed errors", "[integration]") {
  FerrydProcess d(example_plugins());
  auto c = connect(d);
  auto r = must_call(*c, "nope.nothing", "[]");
  CHECK(r.kind == ReplyKind::error);
  CHECK(r.code == FERRY_E_UNKNOWN_FUNCTION);
  CHECK_THAT(r.data, Catch::Contains("nope.nothing"));
  auto f = must_call(*c, "demo.fail", R"(["disk on fire"])");
  CHECK(f.code == FERRY_E_PLUGIN_ERROR);
  CHECK(f.data == "disk on fire");
  auto bad = must_call(*c, "primes.is_prime", R"(["seven"])");
  CHECK(bad.code == FERRY_E_BAD_REQUEST);
  CHECK(must_call(*c, "primes.is_prime", "[7]").data == "true");  // connection still serves
}

TEST_CASE("a malformed frame gets an ERROR and a closed connection, others unaffected", "[integration]") {
  FerrydProcess d(example_plugins());
  auto bystander = connect(d);
  auto c = connect(d);
  REQUIRE(c->send_raw(header(0, 99, 7)));
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->kind == ReplyKind::error);
  CHECK(r->code == FERRY_E_BAD_REQUEST);
  CHECK(r->call_id == 0);
  CHECK_FALSE(c->read_reply().has_value());  // closed by the server
  CHECK(must_call(*bystander, "primes.is_prime", "[13]").data == "true");
}

TEST_CASE("a CALL with a truncated body is refused", "[integration]") {
  FerrydProcess d(example_plugins());
  auto c = connect(d);
  std::string frame = header(9, 2, 1) + std::string("\0\0\0\0\0\0\x40\0x", 9);  // name_len 64 > body
  REQUIRE(c->send_raw(frame));
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->code == FERRY_E_BAD_REQUEST);
  CHECK_FALSE(c->read_reply().has_value());
}

TEST_CASE("an oversize frame is refused before its body is read", "[integration]") {
  FerrydProcess d(example_plugins(), "", "max_frame_bytes = 4096\n");
  auto c = connect(d);
  CHECK(c->server_max_frame() == 4096);
  REQUIRE(c->send_raw(header(1u << 30, 2, 1)));
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->code == FERRY_E_BAD_REQUEST);
  CHECK_THAT(r->data, Catch::Contains("too large"));
  CHECK_FALSE(c->read_reply().has_value());
  auto again = connect(d);
  CHECK(must_call(*again, "demo.echo", "[1]").data == "1");
}


TEST_CASE("a frame before HELLO, a foreign protocol version and a second HELLO are refused",
          "[integration]") {
  FerrydProcess d(example_plugins());
  const std::string ping = header(0, 5, 1);
  auto early = raw_exchange(d, ping);
  CHECK(early.type == 4);
  CHECK(early.code == FERRY_E_BAD_REQUEST);
  CHECK(early.closed);
  const std::string hello_v2 = header(8, 1, 0) + std::string("\x02\0\0\0\0\0\0\0", 8);
  auto foreign = raw_exchange(d, hello_v2);
  CHECK(foreign.type == 4);
  CHECK(foreign.code == FERRY_E_UNSUPPORTED_VERSION);
  CHECK(foreign.closed);
  const std::string hello_v1 = header(8, 1, 0) + std::string("\x01\0\0\0\0\0\0\0", 8);
  CHECK(raw_exchange(d, hello_v1, false).type == 1);  // the same exchange with version 1 is answered HELLO

  auto c = connect(d);  // completes HELLO; a second HELLO is a protocol error
  REQUIRE(c->send_raw(hello_v2));
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->code == FERRY_E_BAD_REQUEST);
  CHECK_FALSE(c->read_reply().has_value());
}

TEST_CASE("PING is answered with PONG carrying the same body", "[integration]") {
  FerrydProcess d(example_plugins());
  auto c = connect(d);
  auto r = c->ping("abc");
  REQUIRE(r.has_value());
  CHECK(r->kind == ReplyKind::pong);
  CHECK(r->data == "abc");
}

TEST_CASE("a full plugin queue answers busy at once", "[integration]") {
  FerrydProcess d(example_plugins(), "[plugins.latch]\nworkers = 1\nqueue_limit = 1\n");
  auto c = connect(d);
  const auto running = c->send_call("latch.wait", R"(["b"])");
  const auto queued = c->send_call("latch.wait", R"(["b"])");
  const auto refused = c->send_call("latch.waiting", R"(["b"])");
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->call_id == refused);
  CHECK(r->code == FERRY_E_BUSY);
  auto other = connect(d);  // other plugins are not affected
  CHECK(must_call(*other, "latch.waiting", R"(["b"])", 0).code == FERRY_E_BUSY);
  CHECK(must_call(*other, "demo.echo", "[2]").data == "2");
  // The two waits stay blocked; the fixture's teardown kills ferryd.
  CHECK(running != queued);
}

TEST_CASE("SIGTERM drains calls in flight, answers each, and removes the socket", "[integration]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, "[plugins.ops]\nworkers = 4\n");
  auto c = connect(d);
  // Six calls in flight, none able to finish before the drain: `trigger` and
  // three waits hold the four threads, two more waits are queued. The waits
  // end once a cooperate call (here `trigger`) notices a cancellation.
  const auto trigger = c->send_call("ops.cooperate", "[20000]");
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(c->send_call("ops.await_noticed", "[1]"));
  // Threads pick calls up asynchronously: `trigger` must be running, or its
  // CANCEL would only take it off the queue.
  const auto in_flight = [](const nlohmann::json& st) { return st["running"] == 4 && st["queued"] == 2; };
  status_until(*c, "ops", in_flight, "4 running, 2 queued");  // (the first 4 sent run: one connection is FIFO)
  kill(d.pid(), SIGTERM);
  wait_until([&] { return must_call(*c, "ferry.status", "[]").code == FERRY_E_SHUTTING_DOWN; }, "draining");
  REQUIRE(c->send_cancel(trigger));  // its cancellation releases the waits, queued ones included
  std::map<std::uint64_t, ferry::Reply> replies;
  for (std::size_t i = 0; i < ids.size() + 1; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    replies[r->call_id] = *r;
  }
  CHECK(replies[trigger].code == FERRY_E_CANCELLED);
  int results = 0;
  for (const auto id : ids) {
    CHECK(replies[id].code == FERRY_OK);
    CHECK(replies[id].data == "true");
    results += replies[id].code == FERRY_OK;
  }
  CHECK(results == 5);
  CHECK_FALSE(c->read_reply().has_value());
  CHECK(d.wait() == 0);
  CHECK_FALSE(std::filesystem::exists(d.socket()));
  const std::string log = d.log();
  CHECK_THAT(log, Catch::Contains("draining 6 calls"));
  CHECK_THAT(log, Catch::Contains("ferryd stopped"));
}

TEST_CASE("calls arriving while draining are answered shutting_down", "[integration]") {
  FerrydProcess d(example_plugins(), "[plugins.latch]\nworkers = 2\n");
  auto c = connect(d);
  const auto held = c->send_call("latch.wait", R"(["drain"])");
  REQUIRE(c->ping("sync").has_value());
  kill(d.pid(), SIGTERM);
  // The loop is draining (held is in flight); new calls are refused, not lost.
  wait_until([&] { return must_call(*c, "demo.echo", "[1]").code == FERRY_E_SHUTTING_DOWN; }, "demo.echo refused");
  auto opened = c->call("latch.open", R"(["drain"])");
  REQUIRE(opened.has_value());
  CHECK(opened->code == FERRY_E_SHUTTING_DOWN);
  (void)held;
  CHECK(d.stop(SIGTERM) == 1);  // second signal forces exit
}

namespace {
// Threads of a process whose name starts with "ferry:" (the pool threads).
std::size_t pool_threads(const std::string& proc) {
  std::size_t n = 0;
  for (const auto& t : std::filesystem::directory_iterator(proc + "/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    std::getline(comm, name);
    n += name.rfind("ferry:", 0) == 0;
  }
  return n;
}

std::size_t count_entries(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}
}  // namespace

TEST_CASE("connections come and go without leaking fds or threads", "[integration]") {
  FerrydProcess d(example_plugins(), "[plugins.primes]\nworkers = 2\n[plugins.demo]\nworkers = 3\n[plugins.latch]\nworkers = 1\n");
  const std::string proc = "/proc/" + std::to_string(d.pid());
  CHECK(pool_threads(proc) == 2 + 3 + 1);
  const std::size_t threads = count_entries(proc + "/task");  // + the loop (+ a sanitizer's)
  auto probe = connect(d);
  REQUIRE(probe->ping().has_value());  // ferryd is past start-up (its ready fd is closed)
  const std::size_t fds = count_entries(proc + "/fd");
  for (int round = 0; round < 5; ++round) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(connect(d));
    for (auto& c : clients) c->send_call("demo.echo", "[1]");
    for (auto& c : clients) REQUIRE(c->read_reply().has_value());
  }
  // Closing is asynchronous on the server: poll with round trips. Back to
  // the baseline: only the probe's connection.
  wait_until(
      [&] {
        REQUIRE(probe->ping().has_value());
        return count_entries(proc + "/fd") == fds;
      },
      "fds back to baseline");
  CHECK(pool_threads(proc) == 2 + 3 + 1);
  CHECK(count_entries(proc + "/task") == threads);
}

TEST_CASE("half-close: a client that shuts down its sending side after its calls gets every reply, then EOF",
          "[integration]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({plugin_path("demo")}, ferry::test::plugin_toml("demo", executor, 2, ""));
  auto probe = connect(d);
  ferry::test::RawConn raw(d);
  std::string calls = ferry::test::hello_frame(2);
  for (std::uint64_t id = 1; id <= 5; ++id) {  // the slowest first: answered after the client stopped sending
    calls += ferry::test::call_frame(id, id <= 2 ? "demo.sleep_ms" : "demo.echo", id <= 2 ? "[1000]" : "[" + std::to_string(id) + "]", 0);
  }
  raw.send(calls);
  raw.shutdown_sending();
  // ferryd saw the half-close while calls were still running (it logs it only then).
  wait_until([&] { return d.log().find("shut down its sending side; answering its") != std::string::npos; },
             "ferryd noticed the half-close with calls in flight");
  REQUIRE(raw.read().type == 1);  // HELLO
  std::map<std::uint64_t, std::string> results;
  for (int i = 0; i < 5; ++i) {
    const auto f = raw.read();
    REQUIRE(f.type == 3);  // RESULT
    CHECK(results.emplace(f.id, f.body).second);
  }
  REQUIRE(results.size() == 5);
  for (std::uint64_t id : {1, 2}) CHECK(std::stoll(results[id]) >= 1000);  // slept in full: not cancelled
  for (std::uint64_t id : {3, 4, 5}) CHECK(results[id] == std::to_string(id));
  CHECK(raw.read().type == -1);  // then ferryd closes the connection
  wait_until([&] { return ferry::test::connections(*probe) == 1; }, "the half-closed connection released");
}

TEST_CASE("a client that leaves altogether after its calls has them cancelled, half-closed or not",
          "[integration]") {
  FerrydProcess d({plugin_path("demo")}, ferry::test::plugin_toml("demo", "thread", 2, ""));
  auto probe = connect(d);
  for (const bool half_first : {false, true}) {
    INFO("shut down its sending side first: " << half_first);
    ferry::test::RawConn raw(d);
    raw.send(ferry::test::hello_frame(2) + ferry::test::call_frame(1, "demo.sleep_ms", "[30000]", 0));
    REQUIRE(raw.read().type == 1);
    status_until(*probe, "demo", [](const nlohmann::json& s) { return s["running"] == 1; }, "the sleeper running");
    if (half_first) {  // ferryd sees the half-close first; the sweep finds the client gone
      raw.shutdown_sending();
      wait_until([&] { return d.log().find("shut down its sending side; answering its") != std::string::npos; },
                 "ferryd noticed the half-close");
    }
    raw.close();
    status_until(*probe, "demo", [](const nlohmann::json& s) { return s["running"] == 0; },
                 "ferryd cancelled the call of the client that left");
  }
}

TEST_CASE("an unfinished HELLO loses its connection at handshake_timeout_ms, with an ERROR; others are served",
          "[integration]") {
  FerrydProcess d({plugin_path("demo")}, "", "handshake_timeout_ms = 300\n");
  auto probe = connect(d);  // past its HELLO: not timed out
  ferry::test::RawConn slow(d);
  const auto start = std::chrono::steady_clock::now();
  slow.send(ferry::test::hello_frame(2).substr(0, 1));  // and never the rest
  const auto error = slow.read();  // (a read that waits 20 s fails the test)
  CHECK(error.type == 4);  // ERROR, call id 0
  CHECK(error.id == 0);
  CHECK(error.body.find("handshake_timeout_ms") != std::string::npos);
  CHECK(ferry::test::ms_since(start) >= 300);
  CHECK(slow.read().type == -1);  // then closed
  wait_until([&] { return d.log().find("protocol error (handshake_timeout)") != std::string::npos; },
             "the handshake timeout logged");
  CHECK(must_call(*probe, "demo.echo", "[1]").data == "1");
  CHECK(ferry::test::connections(*probe) == 1);
}

TEST_CASE("idle_timeout_ms closes a connection with nothing in flight, never one waiting for a reply",
          "[integration]") {
  FerrydProcess d({plugin_path("demo")}, ferry::test::plugin_toml("demo", "thread", 2, ""), "idle_timeout_ms = 500\n");
  ferry::test::RawConn idle(d), waiting(d);
  idle.send(ferry::test::hello_frame(2));
  waiting.send(ferry::test::hello_frame(2) + ferry::test::call_frame(1, "demo.sleep_ms", "[2000]", 0));
  REQUIRE(idle.read().type == 1);
  REQUIRE(waiting.read().type == 1);
  const auto start = std::chrono::steady_clock::now();
  CHECK(idle.read().type == -1);  // closed: idle for 500 ms
  CHECK(ferry::test::ms_since(start) >= 400);  // not at once (its HELLO reply went out just before start)
  const auto reply = waiting.read();  // a call of 2 s in flight kept it open
  CHECK(reply.type == 3);
  CHECK(reply.id == 1);
  CHECK(waiting.read().type == -1);  // then idle, and closed
}

TEST_CASE("demo.is_prime_slow: trial division, the benchmark's CPU-bound work, in both executors",
          "[integration][demo]") {
  const std::string executor = GENERATE("thread", "process");
  FerrydProcess d({plugin_path("demo")}, ferry::test::plugin_toml("demo", executor, 1));
  auto c = connect(d);
  const std::pair<const char*, const char*> cases[] = {
      {"[0]", "false"}, {"[1]", "false"}, {"[2]", "true"}, {"[91]", "false"},  // 7 * 13
      {"[1000000007]", "true"}, {"[1000000011]", "false"}, {"[4294967311]", "true"}};  // past 32 bits
  for (const auto& [arg, want] : cases) {
    INFO(arg);
    const ferry::Reply r = must_call(*c, "demo.is_prime_slow", arg);
    REQUIRE(r.kind == ReplyKind::result);
    CHECK(r.data == want);
  }
  CHECK(must_call(*c, "demo.is_prime_slow", R"(["x"])").code == FERRY_E_BAD_REQUEST);
}
