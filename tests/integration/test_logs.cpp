// Plugin logs end to end (issue 10, "logs from everywhere"): the real ferryd,
// the "logs" fixture plugin in thread and process mode, real workers. Where
// a call's and a plugin thread's lines land, how a flood is bounded (through
// the SDK, and straight onto a worker's channel), and what a worker prints.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/log_limit.hpp"
#include "ferry/client.hpp"
#include "ferryd_process.hpp"
#include "sandbox/sandbox.hpp"
#include "worker/channel.hpp"

using ferry::LogLimiter;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::ms_since;
using ferry::test::must_call;
using ferry::test::reply_for;
using ferry::test::status_until;
using ferry::test::wait_until;
using json = nlohmann::json;

namespace {

// Workers are sandboxed where the kernel allows it (the seccomp allow-list
// must let a plugin's threads log and print), else not.
const bool kSandbox = ferry::sandbox::probe().missing.empty();

std::string logs_config(const std::string& executor, const std::string& extra = "") {
  std::string toml = "[plugins.logs]\nexecutor = \"" + executor + "\"\nworkers = 2\n" + extra;
  if (executor == "process" && !kSandbox) toml += "[plugins.logs.sandbox]\nenabled = false\n";
  return toml;
}

bool all_up(const json& st) {
  if (st["executor"] == "thread") return st["threads"] == 2;
  int idle = 0;
  for (const auto& w : st["processes"]) idle += w["state"] == "idle";
  return idle == 2;
}

std::set<int> worker_pids(const json& st) {
  std::set<int> pids;
  for (const auto& w : st["processes"]) pids.insert(w["pid"].get<int>());
  return pids;
}

// The lines of ferryd's log that contain `what`.
std::vector<std::string> lines_with(const std::string& log, const std::string& what) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(what) != std::string::npos) out.push_back(line);
  }
  return out;
}

// The sum of N over the "N log lines dropped" lines of `plugin`.
std::uint64_t dropped_total(const std::string& log, const std::string& plugin) {
  static const std::regex kDropped(R"((\d+) log lines dropped)");
  std::uint64_t total = 0;
  for (const auto& line : lines_with(log, "[" + plugin + "]")) {
    std::smatch m;
    if (std::regex_search(line, m, kDropped)) total += std::stoull(m[1]);
  }
  return total;
}

// The most lines a source may log in `ms`: the burst, the rate over that
// time, and a line of rounding.
std::size_t bound_for(std::int64_t ms) {
  return std::size_t(LogLimiter::kBurst + LogLimiter::kLinesPerSecond * ms / 1000 + 1);
}

// A round trip to ferryd, so that each wait_until step waits for something.
void ping(ferry::Client& c) { REQUIRE(c.ping().has_value()); }

}  // namespace

TEST_CASE("a call's log lines and a plugin thread's reach ferryd's log with the plugin, worker and call id",
          "[integration][logs]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config(executor));
  auto c = connect(d);
  const json st = status_until(*c, "logs", all_up, "both workers up");
  const std::uint64_t id = c->send_call("logs.hello", R"(["tag-one"])");
  REQUIRE(reply_for(*c, id).data == R"("tag-one")");
  REQUIRE(must_call(*c, "logs.background", R"(["tag-two"])").data == "true");
  wait_until([&] { return ping(*c), d.log().find("background tag-two") != std::string::npos; }, "both lines logged");
  const std::string log = d.log();
  INFO(log);
  const auto hello = lines_with(log, "hello tag-one");
  const auto background = lines_with(log, "background tag-two");
  REQUIRE(hello.size() == 1);
  REQUIRE(background.size() == 1);
  if (executor == "thread") {
    CHECK(hello[0].find(" info [logs] call " + std::to_string(id) + ": hello tag-one") != std::string::npos);
    CHECK(background[0].find(" info [logs] background tag-two") != std::string::npos);  // no call
  } else {
    std::smatch m;
    REQUIRE(std::regex_search(hello[0], m, std::regex(R"( info \[logs\] worker (\d+) call (\d+): hello tag-one$)")));
    CHECK(worker_pids(st).count(std::stoi(m[1])) == 1);
    CHECK(std::stoull(m[2]) == id);  // the client's id, not the channel's
    REQUIRE(std::regex_search(background[0], m, std::regex(R"( info \[logs\] worker (\d+): background tag-two$)")));
    CHECK(worker_pids(st).count(std::stoi(m[1])) == 1);
  }
}

TEST_CASE("a plugin that floods its log is capped, its drops are counted, and other calls are answered meanwhile",
          "[integration][logs]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config(executor));
  auto flooder = connect(d);
  auto other = connect(d);
  status_until(*other, "logs", all_up, "both workers up");
  const auto start = std::chrono::steady_clock::now();
  constexpr std::uint64_t kLines = 1000000;
  const std::uint64_t id = flooder->send_call("logs.flood", "[1000000]");
  REQUIRE(flooder->flush());
  status_until(*other, "logs", [](const json& st) { return st["running"] == 1; }, "the flood running");
  CHECK(must_call(*other, "logs.hello", R"(["meanwhile"])").data == R"("meanwhile")");
  const auto answered_us = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now().time_since_epoch()).count();
  const auto flood = reply_for(*flooder, id);
  REQUIRE(flood.code == FERRY_OK);
  CHECK(answered_us < std::stoll(flood.data));  // the other call was answered before the flood ended
  // Every line is logged or counted in a summary: at the end of the call, or
  // (at most one summary a second) at the end of a later one: calls that log
  // nothing, here, so that no new line is dropped meanwhile.
  const auto accounted = [&] {
    const std::string log = d.log();
    return lines_with(log, ": flood ").size() + lines_with(log, ": hello meanwhile").size() + dropped_total(log, "logs");
  };
  wait_until([&] { return must_call(*other, "logs.quiet", "[]").code == FERRY_OK && accounted() == kLines + 1; },
             "every line logged or counted");
  const std::int64_t elapsed = ms_since(start);
  const std::string log = d.log();
  const std::size_t logged = lines_with(log, ": flood ").size();
  INFO("flood lines " << logged << " in " << elapsed << " ms; dropped " << dropped_total(log, "logs"));
  CHECK(logged >= std::size_t(LogLimiter::kBurst));  // the burst got through whole
  CHECK(logged <= bound_for(elapsed));
  // In process mode the other worker has a bound of its own.
  if (executor == "process") CHECK(lines_with(log, ": hello meanwhile").size() == 1);
}

TEST_CASE("process mode: a worker that writes LOG messages straight to its channel is bounded by ferryd",
          "[integration][logs]") {
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config("process"));
  auto flooder = connect(d);
  auto other = connect(d);
  status_until(*other, "logs", all_up, "both workers up");
  const auto start = std::chrono::steady_clock::now();
  // It writes as fast as ferryd reads, until cancelled: ferryd's own bucket
  // and its per-wake-up bound are all that stand between it and the log.
  const std::uint64_t id = flooder->send_call("logs.raw_flood", "[]");
  REQUIRE(flooder->flush());
  wait_until([&] { return ping(*other), lines_with(d.log(), ": raw flood ").size() >= 10; }, "the raw flood logged");
  // Meanwhile the loop serves others, and ferryd's timer sums up the drops
  // while the flood goes on.
  for (int i = 0; i < 20; ++i) {
    CHECK(must_call(*other, "logs.hello", "[\"m" + std::to_string(i) + "\"]").code == FERRY_OK);
  }
  wait_until([&] { return ping(*other), dropped_total(d.log(), "logs") > 1000; }, "ferryd's summary of the drops");
  REQUIRE(flooder->send_cancel(id));
  CHECK(reply_for(*flooder, id).code == FERRY_E_CANCELLED);
  const std::int64_t elapsed = ms_since(start);
  const std::string log = d.log();
  const std::size_t flood = lines_with(log, ": raw flood ").size();
  INFO("raw flood lines " << flood << " in " << elapsed << " ms; dropped " << dropped_total(log, "logs"));
  CHECK(flood <= bound_for(elapsed));
  CHECK(lines_with(log, "hello m19").size() == 1);
}

TEST_CASE("process mode: a LOG message straight from a plugin is made printable, cut, and at most an error",
          "[integration][logs]") {
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config("process"));
  auto c = connect(d);
  status_until(*c, "logs", all_up, "both workers up");
  REQUIRE(must_call(*c, "logs.raw_line", "[77, 10000]").data == "true");
  wait_until([&] { return ping(*c), d.log().find("raw ?[31mred?forged") != std::string::npos; }, "the raw line");
  const std::string log = d.log();
  const auto raw = lines_with(log, "raw ?[31mred?forged");
  REQUIRE(raw.size() == 1);
  CHECK(raw[0].find(" error [logs] worker ") != std::string::npos);  // level 77 is no critical
  const std::string text = "raw ?[31mred?forged" + std::string(ferry::channel::kMaxLogLine - 19, 'y') + " [cut]";
  CHECK(raw[0].size() >= text.size());
  CHECK(raw[0].compare(raw[0].size() - text.size(), text.size(), text) == 0);
  CHECK(lines_with(log, "\x1b").empty());  // no escape reached the log
  CHECK(must_call(*c, "logs.raw_line", "[2, 0]").code == FERRY_OK);  // the worker lives on
}

TEST_CASE("process mode: a worker's stdout and stderr are captured line by line, cut, and flushed at its end",
          "[integration][logs]") {
  // One call per worker: the printing worker is recycled after its call,
  // which ends its unfinished last line.
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config("process", "max_calls_per_worker = 1\n"));
  auto c = connect(d);
  const json st = status_until(*c, "logs", all_up, "both workers up");
  REQUIRE(must_call(*c, "logs.print", "[10000]").data == "true");
  wait_until([&] { return ping(*c), d.log().find("stderr: unfinished line") != std::string::npos; },
             "the unfinished line, once its worker ended");
  const std::string log = d.log();
  INFO(log);
  std::smatch m;
  const auto printf_line = lines_with(log, "stdout: printf line");
  REQUIRE(printf_line.size() == 1);
  REQUIRE(std::regex_search(printf_line[0], m, std::regex(R"( info \[logs\] worker (\d+) stdout: printf line$)")));
  CHECK(worker_pids(st).count(std::stoi(m[1])) == 1);
  const std::string worker = "[logs] worker " + std::string(m[1]);
  CHECK(lines_with(log, worker + " stdout: cout line").size() == 1);
  const auto cerr_line = lines_with(log, worker + " stderr: cerr line");
  REQUIRE(cerr_line.size() == 1);
  CHECK(cerr_line[0].find(" warning [logs]") != std::string::npos);
  const auto long_line = lines_with(log, worker + " stdout: xxxx");
  REQUIRE(long_line.size() == 1);
  const std::string cut = std::string(ferry::channel::kMaxLogLine, 'x') + " [cut]";
  CHECK(long_line[0].compare(long_line[0].size() - cut.size(), cut.size(), cut) == 0);
  CHECK(lines_with(log, worker + " stderr: unfinished line").size() == 1);
}

TEST_CASE("process mode: a worker that prints 64 MiB is never blocked, and ferryd does not hold it",
          "[integration][logs]") {
  FerrydProcess d({fixture_path("fixture_logs")}, logs_config("process"));
  auto c = connect(d);
  status_until(*c, "logs", all_up, "both workers up");
  const auto hwm_kb = [&] {
    std::ifstream f("/proc/" + std::to_string(d.pid()) + "/status");
    for (std::string line; std::getline(f, line);) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
    }
    return -1LL;
  };
  const long long before = hwm_kb();
  const auto start = std::chrono::steady_clock::now();
  const auto r = must_call(*c, "logs.print_flood", "[64]");
  REQUIRE(r.code == FERRY_OK);
  CHECK(std::stoll(r.data) >= 64LL << 20);  // all written: ferryd kept reading
  wait_until([&] { return ping(*c), dropped_total(d.log(), "logs") > 0; }, "ferryd's summary of the drops");
  const std::int64_t elapsed = ms_since(start);
  const std::string log = d.log();
  const std::size_t spam = lines_with(log, "stdout: spam ").size();
  const long long grown_kb = hwm_kb() - before;
  INFO("spam lines " << spam << " in " << elapsed << " ms; dropped " << dropped_total(log, "logs")
                     << "; ferryd's peak RSS grew " << grown_kb << " KiB");
  CHECK(spam >= std::size_t(LogLimiter::kBurst));
  CHECK(spam <= bound_for(elapsed));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr long long kBoundKb = 48 * 1024;  // their allocators keep freed memory a while
#else
  constexpr long long kBoundKb = 16 * 1024;
#endif
  CHECK(grown_kb < kBoundKb);  // a fraction of the 64 MiB that went through
}
