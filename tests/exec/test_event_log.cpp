// The parts of "every failure in the log, once": the per-kind bound of
// repeated events (EventLimiter, on fixed times), the classification of a
// worker's exit (ExitReason), the JSON form of a line and the log file that
// SIGUSR1 reopens.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/event_limit.hpp"
#include "common/log_output.hpp"
#include "exec/worker_exit.hpp"

using ferry::EventLimiter;
using ferry::ExitFacts;
using ferry::ExitReason;
using json = nlohmann::json;

namespace {

int admitted(EventLimiter& limit, std::string_view kind, std::int64_t now_ms, int n) {
  int in = 0;
  for (int i = 0; i < n; ++i) in += limit.admit(kind, now_ms);
  return in;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("EventLimiter: a burst per kind, then a count summed up once the window is over", "[log]") {
  EventLimiter limit(5, 10000);
  CHECK(admitted(limit, "refused", 1000, 3000) == 5);
  CHECK(admitted(limit, "crash", 1500, 2) == 2);  // another kind has its own bound
  CHECK(limit.next_due_ms() == 11000);
  CHECK(limit.take_due(10999).empty());
  const auto due = limit.take_due(11000);  // no further event needed: a timer calls this
  REQUIRE(due.size() == 1);
  CHECK(due[0].kind == "refused");
  CHECK(due[0].count == 2995);
  CHECK(EventLimiter::summary_text(due[0].count, due[0].span_ms) == "and 2,995 more in the last 10 s");
  CHECK(limit.next_due_ms() == 0);  // "crash" has nothing to sum up
  CHECK(admitted(limit, "refused", 11001, 10) == 5);  // a new window
  CHECK(limit.next_due_ms() == 21001);
}

TEST_CASE("EventLimiter: a quiet kind starts a new window; take_all sums up what is pending", "[log]") {
  EventLimiter limit(2, 1000);
  CHECK(admitted(limit, "a", 0, 2) == 2);
  CHECK(limit.next_due_ms() == 0);  // nothing suppressed: no summary due
  CHECK(admitted(limit, "a", 1000, 3) == 2);  // the window of 0 is over
  const auto all = limit.take_all(1200);
  REQUIRE(all.size() == 1);
  CHECK(all[0].count == 1);
  CHECK(all[0].span_ms == 200);
  CHECK(EventLimiter::summary_text(1, 200) == "and 1 more in the last 1 s");
  CHECK(EventLimiter::summary_text(1234567, 10000) == "and 1,234,567 more in the last 10 s");
}

TEST_CASE("worker exits are classified into one fixed set of names", "[log]") {
  auto reason = [](ExitFacts f) { return std::string(ferry::name(ferry::classify_exit(f))); };
  CHECK(reason({CLD_KILLED, SIGABRT, -1, 0, FERRY_OK, false, false}) == "crash");
  CHECK(reason({CLD_EXITED, 3, -1, 0, FERRY_OK, false, false}) == "crash");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, SIGSEGV, FERRY_OK, true, false}) == "crash");  // it reported SIGSEGV
  CHECK(reason({CLD_KILLED, SIGKILL, 101, 0, FERRY_OK, true, false}) == "violation");
  CHECK(reason({CLD_KILLED, SIGSYS, -1, 0, FERRY_OK, false, false}) == "violation");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, 0, FERRY_E_TIMEOUT, true, false}) == "deadline");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, 0, FERRY_E_CANCELLED, true, false}) == "cancelled");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, 0, FERRY_OK, false, false}) == "oom");  // not ferryd's SIGKILL
  CHECK(reason({CLD_KILLED, SIGKILL, -1, 0, FERRY_OK, true, false}) == "crash");  // ferryd's, for misbehaving
  CHECK(reason({CLD_EXITED, 0, -1, 0, FERRY_OK, false, true}) == "recycled");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, 0, FERRY_OK, true, true}) == "recycled");  // past its end grace
  CHECK(reason({CLD_KILLED, SIGSEGV, -1, 0, FERRY_OK, false, true}) == "crash");    // its shutdown hook crashed
  // In its call's cancel grace, what the worker did itself wins over the kill that was coming.
  CHECK(reason({CLD_KILLED, SIGSEGV, -1, 0, FERRY_E_TIMEOUT, false, false}) == "crash");
  CHECK(reason({CLD_KILLED, SIGKILL, -1, SIGABRT, FERRY_E_CANCELLED, false, false}) == "crash");
  CHECK(reason({CLD_KILLED, SIGSYS, 41, 0, FERRY_E_TIMEOUT, false, false}) == "violation");
  CHECK(reason({CLD_EXITED, 1, -1, 0, FERRY_E_TIMEOUT, false, false}) == "crash");  // exited, not killed
  for (int r = 0; r < ferry::kExitReasonCount; ++r) CHECK(ferry::name(ExitReason(r)) != nullptr);
}

TEST_CASE("JSON lines: one object per line, quotes and newlines escaped, fields added", "[log]") {
  const auto dir = std::filesystem::temp_directory_path() / ("ferry_event_log_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "ferryd.log";
  auto sink = ferry::set_up_log(true, file);
  REQUIRE(sink.ok());
  {
    const ferry::LogFields outer({{"plugin", "p"}, {"pid", 42}});
    const ferry::LogFields inner({{"call_id", 7}, {"pid", 43}});
    spdlog::warn("a \"quoted\"\nmessage\\ with \x01 and \xff");
  }
  spdlog::info("no fields");
  std::filesystem::rename(file, dir / "ferryd.log.1");  // logrotate moves it ...
  REQUIRE((*sink)->reopen().ok());                     // ... and SIGUSR1 reopens
  spdlog::error("after the rotation");
  std::istringstream old(slurp(dir / "ferryd.log.1"));
  std::string line;
  REQUIRE(std::getline(old, line));
  const json first = json::parse(line);
  CHECK(first["level"] == "warning");
  CHECK(first["message"] == "a \"quoted\"\nmessage\\ with \x01 and \xEF\xBF\xBD");
  CHECK(first["plugin"] == "p");
  CHECK(first["pid"] == 43);  // the inner field wins
  CHECK(first["call_id"] == 7);
  CHECK(first["time"].get<std::string>().size() == 24);  // 2026-01-02T03:04:05.678Z
  REQUIRE(std::getline(old, line));
  CHECK(json::parse(line)["message"] == "no fields");
  CHECK_FALSE(json::parse(line).contains("plugin"));
  CHECK_FALSE(std::getline(old, line));
  const std::string now = slurp(file);
  CHECK(json::parse(now)["message"] == "after the rotation");
  spdlog::set_default_logger(spdlog::stderr_color_mt("test"));  // let go of the file
  std::filesystem::remove_all(dir);
}
