// Every failure in ferryd's log, once, with context (issue 11): the real
// ferryd, real workers and sockets. A crashed, a violating and a deadline-
// killed worker, a recycled one, a stuck thread, a refused plugin, reloads
// that succeed and fail, a client's protocol error with its pid and uid, a
// flood of refused connections (each answered ERROR busy; the log bounded,
// with a count), JSON lines, and the log file SIGUSR1 reopens.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/event_limit.hpp"
#include "ferry/client.hpp"
#include "ferryd_process.hpp"
#include "stream_support.hpp"

using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::plugin_path;
using ferry::test::RawConn;
using ferry::test::status_until;
using ferry::test::wait_until;
using json = nlohmann::json;

namespace {

const bool kSandbox = ferry::test::sandbox_available();

std::string hostile_config(const std::string& executor, const std::string& extra = "") {
  return ferry::test::plugin_toml("hostile", executor, 1, extra);
}

std::vector<std::string> lines_with(const std::string& log, const std::string& what) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(what) != std::string::npos) out.push_back(line);
  }
  return out;
}

// Waits (a round trip per step) until ferryd's log has a line with `what`; returns it.
std::string line_with(const FerrydProcess& d, ferry::Client& c, const std::string& what) {
  wait_until([&] { return c.ping().has_value() && !lines_with(d.log(), what).empty(); }, what.c_str());
  return lines_with(d.log(), what).front();
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A frame header that is malformed: type 0.
std::string bad_header() { return ferry::test::header(0, 0, 0); }

}  // namespace

TEST_CASE("a worker that crashes is logged once: plugin, pid, signal, function, call id", "[integration][failure-log]") {
  FerrydProcess d({fixture_path("fixture_hostile")}, hostile_config("process"));
  auto c = connect(d);
  const std::uint64_t id = c->send_call("hostile.abort_now", "[]");
  CHECK(ferry::test::reply_for(*c, id).code == FERRY_E_WORKER_CRASHED);
  const std::string line = line_with(d, *c, "crashed: SIGABRT");
  std::smatch m;
  INFO(line);
  CHECK(std::regex_search(line, m, std::regex(R"( error plugin hostile: worker (\d+) crashed: SIGABRT \(Aborted\) during hostile\.abort_now, call (\d+)$)")));
  CHECK(std::stoull(m[2]) == id);
  CHECK(lines_with(d.log(), "crashed: SIGABRT").size() == 1);  // once
  // A crash loop under load: a few lines, then a count, from the pool's timer.
  for (int i = 0; i < 9; ++i) CHECK(must_call(*c, "hostile.abort_now", "[]").code == FERRY_E_WORKER_CRASHED);
  const std::string summary = line_with(d, *c, "plugin hostile: worker exits (crash): ... and ");
  CHECK_THAT(summary, Catch::Contains(" error plugin hostile: worker exits (crash): ... and 5 more in the last "));
  CHECK(lines_with(d.log(), "crashed: SIGABRT").size() == std::size_t(ferry::EventLimiter::kBurst));
}

TEST_CASE("a sandbox violation is logged with the syscall", "[integration][failure-log]") {
  if (!kSandbox) {
    WARN("no sandbox on this kernel: nothing is a violation");
    return;
  }
  FerrydProcess d({fixture_path("fixture_hostile")}, hostile_config("process"));
  auto c = connect(d);
  const std::uint64_t id = c->send_call("hostile.connect_tcp", "[9]");
  CHECK(ferry::test::reply_for(*c, id).code == FERRY_E_SANDBOX_VIOLATION);
  const std::string line = line_with(d, *c, "sandbox violation");
  CHECK_THAT(line, Catch::Contains(" error plugin hostile: worker ") &&
                       Catch::EndsWith("killed for a sandbox violation: syscall socket is not allowed during "
                                       "hostile.connect_tcp, call " + std::to_string(id)));
}

TEST_CASE("a worker killed at its call's deadline, and one recycled, are logged", "[integration][failure-log]") {
  FerrydProcess d({fixture_path("fixture_hostile")}, hostile_config("process", "max_calls_per_worker = 2\n"));
  auto c = connect(d);
  const std::uint64_t id = c->send_call("hostile.spin", "[]", 200);
  CHECK(ferry::test::reply_for(*c, id).code == FERRY_E_TIMEOUT);
  const std::string line = line_with(d, *c, "deadline");
  CHECK_THAT(line, Catch::Contains(" warning plugin hostile: worker ") &&
                       Catch::EndsWith("killed at its call's deadline (it ignored the cancellation for 100 ms) "
                                       "during hostile.spin, call " + std::to_string(id)));
  status_until(*c, "hostile", [](const json& st) { return st["processes"][0]["state"] == "idle"; }, "a new worker");
  CHECK(must_call(*c, "hostile.ok", "[]").data == "true");
  CHECK(must_call(*c, "hostile.ok", "[]").data == "true");  // its second call: recycled
  CHECK_THAT(line_with(d, *c, "recycling worker"), Catch::EndsWith("served 2 calls (max_calls_per_worker)"));
}

TEST_CASE("a stuck thread is logged with its function and call", "[integration][failure-log]") {
  FerrydProcess d({fixture_path("fixture_hostile")}, hostile_config("thread"));
  auto c = connect(d);
  const std::uint64_t id = c->send_call("hostile.spin", "[]", 100);
  CHECK(ferry::test::reply_for(*c, id).code == FERRY_E_TIMEOUT);
  status_until(*c, "hostile", [](const json& st) { return st["stuck"] == 1; }, "the thread counted stuck");
  const std::string line = line_with(d, *c, "is stuck");
  CHECK_THAT(line, Catch::Contains(" warning plugin hostile: a thread is stuck in hostile.spin, call " +
                                   std::to_string(id) + ": it ignores the call's cancellation") &&
                       Catch::EndsWith("starting a replacement thread"));
  CHECK(lines_with(d.log(), "is stuck").size() == 1);
}

TEST_CASE("reloads are logged once each with their kind and result; a refused plugin once", "[integration][failure-log]") {
  FerrydProcess d({plugin_path("demo")});
  auto c = connect(d);
  REQUIRE(must_call(*c, "ferry.reload", "[]").code == FERRY_OK);
  CHECK_THAT(line_with(d, *c, "reload (call)"),
             Catch::EndsWith("info reload (call): ok: config reloaded from " + (d.dir() / "server.toml").string() +
                             "; no plugin changed"));
  std::filesystem::create_symlink(fixture_path("fixture_not_plugin"), d.dir() / "plugins" / "fixture_not_plugin.so");
  std::ofstream(d.dir() / "server.toml", std::ios::app) << "[server.nonsense]\n";
  REQUIRE(kill(d.pid(), SIGHUP) == 0);
  const std::string failed = line_with(d, *c, "reload (sighup");
  CHECK_THAT(failed, Catch::Contains(" error reload (sighup") &&
                         Catch::Contains("): failed: config not reloaded, nothing changed: ") &&
                         Catch::Contains("server.nonsense"));
  CHECK(must_call(*c, "ferry.reload", "[]").code == FERRY_E_BAD_REQUEST);  // still invalid
  std::ofstream(d.dir() / "server.toml") << "[server]\nsocket_path = \"ferry.sock\"\nplugin_dir = \"plugins\"\n"
                                            "log_level = \"debug\"\n";
  REQUIRE(must_call(*c, "ferry.reload", "[]").code == FERRY_OK);
  const std::string refused = line_with(d, *c, "fixture_not_plugin.so refused");
  CHECK_THAT(refused, Catch::Contains(" error plugin ") && Catch::Contains("not a Ferry plugin"));
  CHECK(lines_with(d.log(), "fixture_not_plugin.so refused").size() == 1);  // once, not per sync
  CHECK(lines_with(d.log(), ": ok: ").size() >= 2);
  CHECK_THAT(lines_with(d.log(), ": ok: ").back(), Catch::EndsWith("; 1 plugin files refused; no plugin changed"));
}

TEST_CASE("a client's protocol error is logged with its kind, pid and uid", "[integration][failure-log]") {
  FerrydProcess d({plugin_path("demo")});
  auto c = connect(d);
  RawConn raw(d);
  raw.send(bad_header());
  const auto f = raw.read();
  CHECK(f.type == 4);  // ERROR bad_request, call_id 0
  CHECK(raw.read().type == -1);
  const std::string line = line_with(d, *c, "protocol error");
  CHECK_THAT(line, Catch::Contains(" warning protocol error (bad_header) from client pid " + std::to_string(getpid()) +
                                   " uid " + std::to_string(getuid()) + " (connection ") &&
                       Catch::EndsWith("; connection closed"));
  RawConn second(d);
  second.send(ferry::test::hello_frame(2) + ferry::test::call_frame(0, "demo.echo", "[1]", 0, 0));
  CHECK(second.read().type == 1);  // HELLO
  CHECK(second.read().type == 4);
  CHECK_THAT(line_with(d, *c, "protocol error (bad_call)"), Catch::Contains("call id 0 is reserved"));
}

TEST_CASE("a flood of refused connections: each gets ERROR busy; the log is bounded, with a count",
          "[integration][failure-log]") {
  FerrydProcess d({plugin_path("demo")}, "", "max_connections = 2\n");
  auto first = connect(d);
  auto second = connect(d);
  constexpr int kRefused = 300;
  const auto start = std::chrono::steady_clock::now();
  const std::string busy = ferry::test::header(22, 4, 0) + std::string("\x03\x00", 2) + "too many connections";
  for (int i = 0; i < kRefused; ++i) {
    RawConn raw(d);  // it sends nothing: the frame comes at once
    const auto f = raw.read();
    REQUIRE(f.type == 4);
    REQUIRE(ferry::test::header(std::uint32_t(f.body.size()), 4, f.id) + f.body == busy);
    REQUIRE(raw.read().type == -1);  // then closed
  }
  const std::int64_t flood_ms = ferry::test::ms_since(start);
  CHECK(must_call(*first, "demo.echo", "[1]").data == "1");  // the open ones are unaffected
  const std::string kind = "connection refused (max_connections)";
  static const std::regex kSummary(R"(and ([\d,]+) more in the last (\d+) s)");
  auto summed = [&] {
    std::uint64_t n = 0;
    for (const auto& line : lines_with(d.log(), kind + ": ...")) {
      std::smatch m;
      if (std::regex_search(line, m, kSummary)) n += std::stoull(std::regex_replace(m[1].str(), std::regex(","), ""));
    }
    return n;
  };
  const auto logged = [&] { return lines_with(d.log(), kind + ": client pid " + std::to_string(getpid())).size(); };
  // The summary comes from a timer, after the flood stopped.
  wait_until([&] { return second->ping().has_value() && logged() + summed() == kRefused; }, "every refusal counted");
  const std::size_t windows = std::size_t(flood_ms / ferry::EventLimiter::kWindowMs) + 1;
  CHECK(logged() <= windows * ferry::EventLimiter::kBurst);
  CHECK(logged() >= 1);
  CHECK_THAT(lines_with(d.log(), kind + ": ...").front(), Catch::Contains(" warning " + kind + ": ... and "));
}

TEST_CASE("log_format = \"json\": every line ferryd writes is one JSON object, with fields",
          "[integration][failure-log]") {
  FerrydProcess d({fixture_path("fixture_hostile"), fixture_path("fixture_logs")},
                  hostile_config("process") + ferry::test::plugin_toml("logs", "process", 1),
                  "log_format = \"json\"\n");
  auto c = connect(d);
  CHECK(must_call(*c, "logs.hello", R"(["tag \"q\"\nnext"])").code == FERRY_OK);  // a plugin's line, through its worker
  const std::uint64_t id = c->send_call("hostile.abort_now", "[]");
  CHECK(ferry::test::reply_for(*c, id).code == FERRY_E_WORKER_CRASHED);
  RawConn raw(d);
  raw.send(bad_header() + "\"\n\\");
  CHECK(raw.read().type == 4);
  wait_until([&] { return c->ping().has_value() && d.log().find("protocol error") != std::string::npos; },
             "the protocol error logged");
  REQUIRE(kill(d.pid(), SIGTERM) == 0);
  CHECK(d.wait() == 0);
  std::istringstream in(d.log());
  int lines = 0, crashes = 0, plugin_lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    INFO(line);
    const json j = json::parse(line);  // throws (fails) on anything else
    REQUIRE(j.is_object());
    CHECK(j["time"].is_string());
    CHECK(j["level"].is_string());
    CHECK(j["message"].is_string());
    if (j["message"].get<std::string>().find("hello tag \"q\"") != std::string::npos) {
      ++plugin_lines;
      CHECK(j["plugin"] == "logs");
      CHECK(j["pid"].get<int>() > 0);
    }
    if (j.value("reason", "") != "crash") continue;
    ++crashes;
    CHECK(j["plugin"] == "hostile");
    CHECK(j["function"] == "hostile.abort_now");
    CHECK(j["call_id"] == id);
    CHECK(j["pid"].get<int>() > 0);
    CHECK(j["level"] == "error");
  }
  CHECK(lines > 5);
  CHECK(crashes == 1);
  CHECK(plugin_lines == 1);
}

TEST_CASE("log_file: SIGUSR1 reopens it, for logrotate", "[integration][failure-log]") {
  FerrydProcess d({plugin_path("demo")}, "", "log_file = \"ferryd-file.log\"\n");
  const auto file = d.dir() / "ferryd-file.log";
  auto c = connect(d);
  CHECK_THAT(read_file(file), Catch::Contains("listening on"));
  std::filesystem::rename(file, d.dir() / "ferryd-file.log.1");
  REQUIRE(kill(d.pid(), SIGUSR1) == 0);
  wait_until([&] { return c->ping().has_value() && std::filesystem::exists(file); }, "a new log file");
  RawConn raw(d);
  raw.send(bad_header());
  CHECK(raw.read().type == 4);
  wait_until([&] { return c->ping().has_value() && read_file(file).find("protocol error") != std::string::npos; },
             "the new event in the new file");
  CHECK_THAT(read_file(file), Catch::Contains("SIGUSR1: log file reopened"));
  CHECK(read_file(d.dir() / "ferryd-file.log.1").find("protocol error") == std::string::npos);
  CHECK(d.log().empty());  // nothing on stderr
}
