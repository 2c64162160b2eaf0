// Metrics against the real ferryd: exact counts after known calls, the
// histograms, the gauges of a process pool, the HTTP endpoint scraped by a
// real HTTP client, and `ferry metrics` / `ferry top --once`.
#include <catch2/catch.hpp>

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include "ferry/errors.h"
#include "ferryd_process.hpp"

using ferry::test::FerrydProcess;
using ferry::test::must_call;
using ferry::test::plugin_path;
using ferry::test::run_command;
using nlohmann::json;

namespace {

json metrics_json(ferry::Client& c) {
  const ferry::Reply r = must_call(c, "ferry.metrics", R"(["json"])");
  REQUIRE(r.kind == ferry::ReplyKind::result);
  return json::parse(r.data);
}

// The value (or, for a histogram, the count) of the sample of `family`
// whose labels include `labels`; 0 when there is none.
double value_of(const json& families, const std::string& family, const json& labels = json::object()) {
  for (const json& f : families) {
    if (f["name"] != family) continue;
    for (const json& m : f["metrics"]) {
      bool match = true;
      for (const auto& [k, v] : labels.items()) match = match && m["labels"].value(k, "") == v;
      if (match) return m.contains("count") ? m["count"].get<double>() : m["value"].get<double>();
    }
  }
  return 0;
}

double calls(const json& m, const char* fn, const char* outcome) {
  return value_of(m, "ferry_calls_total", {{"plugin", "demo"}, {"function", fn}, {"outcome", outcome}});
}

}  // namespace

TEST_CASE("metrics: the counts per outcome and the histograms match the calls made, in both executors",
          "[metrics]") {
  const std::string executor = GENERATE("thread", "process");
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"" + executor + "\"\nworkers = 2\n");
  auto c = ferry::test::connect(d);
  for (int i = 0; i < 5; ++i) CHECK(must_call(*c, "demo.noop", "").kind == ferry::ReplyKind::result);
  for (int i = 0; i < 3; ++i) CHECK(must_call(*c, "demo.fail", R"(["no"])").code == FERRY_E_PLUGIN_ERROR);
  CHECK(must_call(*c, "demo.sleep_ms", "[10000]", 50).code == FERRY_E_TIMEOUT);
  CHECK(must_call(*c, "demo.nosuch", "[]").code == FERRY_E_UNKNOWN_FUNCTION);
  // The timed-out call is answered at its deadline; its executor reports
  // it once cancelled: only then is its run counted.
  json m;
  ferry::test::wait_until([&] {
    m = metrics_json(*c);
    return value_of(m, "ferry_call_run_seconds", {{"plugin", "demo"}, {"function", "sleep_ms"}}) == 1;
  }, "the timed-out call's run counted");
  CHECK(calls(m, "noop", "ok") == 5);
  CHECK(calls(m, "fail", "plugin_error") == 3);
  CHECK(calls(m, "sleep_ms", "timeout") == 1);
  CHECK(calls(m, "sleep_ms", "ok") == 0);
  CHECK(value_of(m, "ferry_calls_total", {{"plugin", ""}, {"outcome", "unknown_function"}}) == 1);
  CHECK(value_of(m, "ferry_call_run_seconds", {{"plugin", "demo"}, {"function", "noop"}}) == 5);
  CHECK(value_of(m, "ferry_call_run_seconds", {{"plugin", "demo"}, {"function", "fail"}}) == 3);
  CHECK(value_of(m, "ferry_call_queue_seconds", {{"plugin", "demo"}}) == 9);  // every call that reached the pool
  CHECK(value_of(m, "ferry_plugin_info", {{"plugin", "demo"}, {"executor", executor}}) == 1);
  CHECK(value_of(m, "ferry_connections") == 1);
  CHECK(value_of(m, "ferry_calls_running", {{"plugin", "demo"}}) == 0);
  if (executor == "process") {
    // The worker killed for the deadline is replaced: both end up idle.
    ferry::test::wait_until([&] {
      return value_of(metrics_json(*c), "ferry_workers", {{"plugin", "demo"}, {"state", "idle"}}) == 2;
    }, "two idle workers");
    CHECK(value_of(metrics_json(*c), "ferry_worker_rss_bytes", {{"plugin", "demo"}}) > 0);
  }
}

TEST_CASE("metrics: a running call and queued ones show in the gauges, by priority", "[metrics]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"thread\"\nworkers = 1\n");
  auto c = ferry::test::connect(d);
  const std::uint64_t slow = c->send_call("demo.sleep_ms", "[10000]");
  const std::uint64_t low = c->send_call("demo.noop", "", 0, ferry::Priority::low);
  c->send_call("demo.noop", "", 0, ferry::Priority::low);
  REQUIRE(c->flush());
  auto probe = ferry::test::connect(d);
  ferry::test::wait_until([&] {
    const json m = metrics_json(*probe);
    return value_of(m, "ferry_calls_running", {{"plugin", "demo"}}) == 1 &&
           value_of(m, "ferry_queue_depth", {{"plugin", "demo"}, {"priority", "low"}}) == 2;
  }, "one call running and two queued at low priority");
  const json m = metrics_json(*probe);
  CHECK(value_of(m, "ferry_queue_depth", {{"plugin", "demo"}, {"priority", "normal"}}) == 0);
  CHECK(value_of(m, "ferry_workers", {{"plugin", "demo"}, {"state", "busy"}}) == 1);
  CHECK(value_of(m, "ferry_connections") == 2);
  c->send_cancel(slow);
  REQUIRE(c->flush());
  CHECK(ferry::test::reply_for(*c, slow).code == FERRY_E_CANCELLED);
  CHECK(ferry::test::reply_for(*c, low).kind == ferry::ReplyKind::result);
}

TEST_CASE("metrics: metrics_listen serves /metrics over HTTP, scraped by a real HTTP client", "[metrics][http]") {
  FerrydProcess d({plugin_path("demo")}, "", "metrics_listen = \"127.0.0.1:0\"\n");
  std::smatch port;
  const std::string log = d.log();
  REQUIRE(std::regex_search(log, port, std::regex(R"(metrics on http://127\.0\.0\.1:(\d+)/metrics)")));
  auto c = ferry::test::connect(d);
  for (int i = 0; i < 4; ++i) must_call(*c, "demo.noop", "");
  const std::string url = "http://127.0.0.1:" + port[1].str() + "/metrics";
  const auto got = run_command({"/usr/bin/python3", "-c",
                                "import sys, urllib.request\n"
                                "r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
                                "print(r.status, r.headers['Content-Type'])\n"
                                "sys.stdout.write(r.read().decode())\n",
                                url});
  REQUIRE(got.status == 0);
  CHECK_THAT(got.out, Catch::StartsWith("200 text/plain"));
  CHECK_THAT(got.out, Catch::Contains("\nferry_calls_total{plugin=\"demo\",function=\"noop\",outcome=\"ok\"} 4\n"));
  CHECK_THAT(got.out, Catch::Contains("# TYPE ferry_call_run_seconds histogram"));
  CHECK_THAT(got.out, Catch::Contains("ferry_build_info{version="));
}

TEST_CASE("metrics: an address ferryd cannot listen on stops its start, with the reason", "[metrics][http]") {
  // Port 1 needs privileges we drop nowhere; an address not on this host fails for anyone.
  REQUIRE_THROWS_WITH(FerrydProcess({plugin_path("demo")}, "", "metrics_listen = \"192.0.2.1:9464\"\n"),
                      Catch::Contains("metrics_listen 192.0.2.1:9464: cannot listen"));
}

TEST_CASE("metrics: ferry metrics prints the text format, ferry top --once one snapshot", "[metrics][cli]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"thread\"\nworkers = 2\n");
  auto c = ferry::test::connect(d);
  must_call(*c, "demo.fail", R"(["x"])");
  const auto text = run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "metrics"});
  REQUIRE(text.status == 0);
  CHECK_THAT(text.out, Catch::Contains("ferry_calls_total{plugin=\"demo\",function=\"fail\",outcome=\"plugin_error\"} 1"));
  // Load while top samples: its one snapshot shows calls/s and errors/s.
  std::atomic<bool> stop{false};
  std::thread load([&] {
    auto l = ferry::test::connect(d);
    while (!stop) {
      must_call(*l, "demo.noop", "");
      must_call(*l, "demo.fail", R"(["x"])");
    }
  });
  const auto top = run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "top", "--once",
                                "--interval", "300"});
  stop = true;
  load.join();
  INFO(top.out);
  REQUIRE(top.status == 0);
  CHECK_THAT(top.out, Catch::Contains("PLUGIN"));
  CHECK_THAT(top.out, Catch::Contains("CALLS/S"));
  std::smatch row;
  REQUIRE(std::regex_search(top.out, row, std::regex(R"(\ndemo +thread +([0-9.]+) +(\S+) +(\S+) +\d+ +\d+ +\d/2 +plugin_error ([0-9.]+))")));
  CHECK(std::stod(row[1]) > 0);   // calls/s
  CHECK(row[2] != "-");           // a p50 over the interval
  CHECK(std::stod(row[4]) > 0);   // errors/s
  CHECK(top.out.find("\x1b[") == std::string::npos);  // not a terminal: plain text
}

namespace {

// Reads what the terminal shows until `done` holds, for at most 20 s.
bool read_until(int fd, std::string& seen, const std::function<bool(const std::string&)>& done) {
  const auto start = std::chrono::steady_clock::now();
  while (!done(seen)) {
    if (ferry::test::ms_since(start) > 20000) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return done(seen);
    seen.append(buf, std::size_t(n));
  }
  return true;
}

std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("metrics: ferry top on a terminal redraws in place and quits on q", "[metrics][cli]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"thread\"\n");
  const std::string cli = ferry::test::ferry_cli_path(), socket = d.socket();
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl(cli.c_str(), cli.c_str(), "--socket", socket.c_str(), "top", "--interval", "100", nullptr);
    _exit(127);
  }
  std::string seen;
  const std::string redraw = "\x1b[H\x1b[2J";
  const bool drew = read_until(master, seen, [&](const std::string& s) { return count_of(s, redraw) >= 3; });
  CHECK(write(master, "q", 1) == 1);
  const bool restored = read_until(master, seen, [](const std::string& s) { return s.find("\x1b[?1049l") != std::string::npos; });
  // Its exit, polled for at most 20 s (the bound only matters on failure).
  int status = -1;
  for (int i = 0; i < 2000 && waitpid(pid, &status, WNOHANG) != pid; ++i) poll(nullptr, 0, 10);
  if (!WIFEXITED(status)) kill(pid, SIGKILL), waitpid(pid, &status, 0);
  close(master);
  CHECK(drew);  // three screens, each drawn over the last
  CHECK(count_of(seen, "PLUGIN") >= 3);
  CHECK(seen.find("demo") != std::string::npos);
  CHECK(restored);  // the alternate screen left on q
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("metrics: worker exits are counted by reason: a crash, a violation, a deadline", "[metrics][process]") {
  const bool sandbox = ferry::test::sandbox_available();
  FerrydProcess d({ferry::test::fixture_path("fixture_hostile")}, ferry::test::plugin_toml("hostile", "process", 1));
  auto c = ferry::test::connect(d);
  CHECK(must_call(*c, "hostile.abort_now", "[]").code == FERRY_E_WORKER_CRASHED);
  if (sandbox) CHECK(must_call(*c, "hostile.connect_tcp", "[9]").code == FERRY_E_SANDBOX_VIOLATION);
  CHECK(must_call(*c, "hostile.spin", "[]", 200).code == FERRY_E_TIMEOUT);
  const auto exits = [&](const char* reason) {
    return value_of(metrics_json(*c), "ferry_worker_exits_total", {{"plugin", "hostile"}, {"reason", reason}});
  };
  ferry::test::wait_until([&] { return exits("deadline") == 1; }, "the deadline kill counted");
  CHECK(exits("crash") == 1);
  CHECK(exits("violation") == (sandbox ? 1 : 0));
  CHECK(exits("oom") == 0);
  CHECK(exits("cancelled") == 0);
  CHECK(exits("recycled") == 0);
  const json m = metrics_json(*c);
  CHECK(value_of(m, "ferry_calls_total", {{"plugin", "hostile"}, {"outcome", "worker_crashed"}}) == 1);
  CHECK(value_of(m, "ferry_calls_total", {{"plugin", "hostile"}, {"outcome", "timeout"}}) == 1);
}

TEST_CASE("metrics: protocol errors, refused connections and reloads are counted", "[metrics]") {
  FerrydProcess d({plugin_path("demo")}, "", "max_connections = 2\n");
  auto c = ferry::test::connect(d);
  const auto bad = ferry::test::raw_exchange(d, std::string(16, '\xff'));
  CHECK(bad.code == FERRY_E_BAD_REQUEST);
  ferry::test::wait_until([&] { return value_of(metrics_json(*c), "ferry_connections") == 1; },
                          "the failed connection closed");
  {
    auto second = ferry::test::connect(d);  // the two allowed
    const auto refused = ferry::test::raw_exchange(d, "");
    CHECK(refused.code == FERRY_E_BUSY);
  }
  CHECK(must_call(*c, "ferry.reload", "[]").kind == ferry::ReplyKind::result);
  const json m = metrics_json(*c);
  CHECK(value_of(m, "ferry_protocol_errors_total", {{"kind", "bad_header"}}) == 1);
  CHECK(value_of(m, "ferry_protocol_errors_total", {{"kind", "bad_call"}}) == 0);
  CHECK(value_of(m, "ferry_connections_refused_total", {{"reason", "max_connections"}}) == 1);
  CHECK(value_of(m, "ferry_reloads_total", {{"kind", "call"}, {"result", "ok"}}) == 1);
  CHECK(value_of(m, "ferry_reloads_total", {{"kind", "call"}, {"result", "failed"}}) == 0);
}

TEST_CASE("metrics: worker exits stay counted when their pool is replaced by a reload", "[metrics][process]") {
  FerrydProcess d({ferry::test::fixture_path("fixture_hostile")}, ferry::test::plugin_toml("hostile", "process", 1));
  auto c = ferry::test::connect(d);
  const auto crashes = [&] {
    return value_of(metrics_json(*c), "ferry_worker_exits_total", {{"plugin", "hostile"}, {"reason", "crash"}});
  };
  CHECK(must_call(*c, "hostile.abort_now", "[]").code == FERRY_E_WORKER_CRASHED);
  ferry::test::wait_until([&] { return crashes() == 1; }, "the crash counted");
  // A changed pool size is a new lane; the old one ends its workers and is dropped.
  std::string text;
  {
    std::ifstream in(d.dir() / "server.toml");
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("workers = 1"), 11, "workers = 2");
  std::ofstream(d.dir() / "server.toml") << text;
  CHECK(must_call(*c, "ferry.reload", "[]").kind == ferry::ReplyKind::result);
  ferry::test::status_until(*c, "hostile", [](const json& p) {
    return p["workers"] == 2 && p["draining_versions"] == 0;
  }, "the old pool gone");
  CHECK(crashes() == 1);
  CHECK(must_call(*c, "hostile.abort_now", "[]").code == FERRY_E_WORKER_CRASHED);
  ferry::test::wait_until([&] { return crashes() == 2; }, "both crashes counted");
}

TEST_CASE("metrics: a thread that ignores its call's cancellation shows as stuck", "[metrics]") {
  FerrydProcess d({ferry::test::fixture_path("fixture_ops_v1")}, ferry::test::plugin_toml("ops", "thread", 1));
  auto c = ferry::test::connect(d);
  CHECK(value_of(metrics_json(*c), "ferry_stuck_threads", {{"plugin", "ops"}}) == 0);
  // It runs 1.5 s whatever it is told; its deadline passes after 50 ms.
  CHECK(must_call(*c, "ops.ignore", "[1500]", 50).code == FERRY_E_TIMEOUT);
  json m;
  ferry::test::wait_until([&] {
    m = metrics_json(*c);
    return value_of(m, "ferry_stuck_threads", {{"plugin", "ops"}}) == 1;
  }, "one stuck thread");
  CHECK(value_of(m, "ferry_workers", {{"plugin", "ops"}, {"state", "stuck"}}) == 1);
  ferry::test::wait_until([&] {
    return value_of(metrics_json(*c), "ferry_stuck_threads", {{"plugin", "ops"}}) == 0;
  }, "the stuck call ended");
}
