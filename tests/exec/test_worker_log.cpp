// The bounds on plugin logs, as plain logic driven by a FakeClock: the token
// bucket and its drop summaries (LogLimiter), the line splitter of worker
// output, and what ferryd writes for one worker (WorkerLog).
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "common/log_limit.hpp"
#include "exec/worker_log.hpp"
#include "fake_clock.hpp"
#include "ferry/plugin.h"
#include "worker/channel.hpp"

using ferry::FakeClock;
using ferry::LineSplitter;
using ferry::LogLimiter;
using ferry::WorkerLog;

namespace {

// Admits `n` lines at the clock's time; how many got through.
int admit_n(LogLimiter& limit, const FakeClock& clock, int n) {
  int admitted = 0;
  for (int i = 0; i < n; ++i) admitted += limit.admit(clock.now_ms());
  return admitted;
}

std::vector<std::string> split(LineSplitter& s, std::string_view bytes) {
  std::vector<std::string> lines;
  s.feed(bytes, [&](std::string_view l) { lines.emplace_back(l); });
  return lines;
}

struct Captured {
  std::vector<std::pair<int, std::string>> lines;
  WorkerLog::Writer writer() {
    return [this](int level, const std::string& line) { lines.emplace_back(level, line); };
  }
};

}  // namespace

TEST_CASE("the bucket lets a burst through, then the rate, never more", "[log]") {
  FakeClock clock;
  LogLimiter limit(100, 200);
  CHECK(admit_n(limit, clock, 1000) == 200);  // the burst, at once
  clock.advance(10);
  CHECK(admit_n(limit, clock, 1000) == 1);    // 100 lines/s: one per 10 ms
  clock.advance(5);
  CHECK(admit_n(limit, clock, 1000) == 0);
  clock.advance(995);                          // 1 s later: 100 more
  CHECK(admit_n(limit, clock, 1000) == 100);
  // Over any stretch: at most the burst plus the rate times its length.
  int total = 0;
  for (int ms = 0; ms < 5000; ms += 7) {
    clock.advance(7);
    total += admit_n(limit, clock, 50);
  }
  CHECK(total <= 200 + 100 * 5 + 1);
  CHECK(total >= 100 * 5 - 1);
  clock.advance(3600 * 1000);  // a long silence refills it to the burst, no more
  CHECK(admit_n(limit, clock, 1000) == 200);
}

TEST_CASE("drops are summed up once the burst is over, at most once per second", "[log]") {
  FakeClock clock;
  LogLimiter limit(100, 200);
  CHECK(limit.summary_due_ms() == 0);
  admit_n(limit, clock, 250);  // 50 dropped at t0
  const std::int64_t t0 = clock.now_ms();
  CHECK(limit.summary_due_ms() == t0 + 1000);
  CHECK(limit.take_summary(t0 + 999) == 0);
  clock.advance(500);
  admit_n(limit, clock, 100);  // 50 admitted (refill), 50 more dropped
  CHECK(limit.take_summary(t0 + 1000) == 100);
  CHECK(limit.summary_due_ms() == 0);
  CHECK(limit.summary_text(100) == "100 log lines dropped (over 100 lines/s)");
  // The next drop: reported a second after it, and not before a second after the last summary.
  clock.set(t0 + 1200);
  admit_n(limit, clock, 1000);
  CHECK(limit.summary_due_ms() == t0 + 2200);
  // A call that ended need not wait for the rest of its burst, only for the once-per-second bound.
  CHECK(limit.take_summary(t0 + 1500, true) == 0);
  CHECK(limit.take_summary(t0 + 2000, true) > 0);
  admit_n(limit, clock, 10);
  CHECK(limit.take_all() == 10);
  CHECK(limit.take_all() == 0);
}

TEST_CASE("output is split into lines; an unfinished one waits, a long one is cut once", "[log]") {
  LineSplitter s(8);
  CHECK(split(s, "one\ntw").size() == 1);
  CHECK(split(s, "o\n\nthree") == std::vector<std::string>{"two", ""});
  std::vector<std::string> rest;
  s.flush([&](std::string_view l) { rest.emplace_back(l); });
  CHECK(rest == std::vector<std::string>{"three"});
  // 8 bytes fit; the ninth cuts the line there, and the rest of it is skipped,
  // however many chunks it comes in.
  CHECK(split(s, "12345678\n") == std::vector<std::string>{"12345678"});
  CHECK(split(s, "123456789") == std::vector<std::string>{"12345678 [cut]"});
  CHECK(split(s, std::string(100000, 'z')).empty());
  CHECK(split(s, "zz\nnext\n") == std::vector<std::string>{"next"});
  // Never half a UTF-8 character: "é" is two bytes, the cut falls between them.
  LineSplitter utf8(4);
  CHECK(split(utf8, "abc\xc3\xa9z\n") == std::vector<std::string>{"abc [cut]"});
}

TEST_CASE("a worker's lines name the plugin, the worker and the call; its text is made printable", "[log]") {
  FakeClock clock;
  Captured out;
  WorkerLog log("p", 42, out.writer());
  log.message(FERRY_LOG_INFO, 7, 0, "hello", clock.now_ms());
  log.message(FERRY_LOG_DEBUG, 0, 0, "from a thread", clock.now_ms());
  log.message(99, 0, 0, "evil\x1b[2J\nforged", clock.now_ms());  // no level above error
  log.message(FERRY_LOG_WARN, 0, 0, std::string(ferry::channel::kMaxLogLine + 100, 'y'), clock.now_ms());
  log.output(WorkerLog::Stream::out, "printed\r\nhalf", clock.now_ms());
  log.output(WorkerLog::Stream::err, "oops\n\n", clock.now_ms());
  REQUIRE(out.lines.size() == 6);
  CHECK(out.lines[0] == std::pair<int, std::string>{FERRY_LOG_INFO, "[p] worker 42 call 7: hello"});
  CHECK(out.lines[1] == std::pair<int, std::string>{FERRY_LOG_DEBUG, "[p] worker 42: from a thread"});
  CHECK(out.lines[2] == std::pair<int, std::string>{FERRY_LOG_ERROR, "[p] worker 42: evil?[2J?forged"});
  CHECK(out.lines[3].second == "[p] worker 42: " + std::string(ferry::channel::kMaxLogLine, 'y') + " [cut]");
  CHECK(out.lines[4] == std::pair<int, std::string>{FERRY_LOG_INFO, "[p] worker 42 stdout: printed"});
  CHECK(out.lines[5] == std::pair<int, std::string>{FERRY_LOG_WARN, "[p] worker 42 stderr: oops"});
  log.finish(clock.now_ms());  // the unfinished line, at the end
  REQUIRE(out.lines.size() == 7);
  CHECK(out.lines[6].second == "[p] worker 42 stdout: half");
}

TEST_CASE("a worker's messages and output share one bound; drops are summed up once per second", "[log]") {
  FakeClock clock;
  Captured out;
  WorkerLog log("p", 42, out.writer());
  for (int i = 0; i < 150; ++i) log.message(FERRY_LOG_INFO, 0, 0, "m", clock.now_ms());
  std::string printed;
  for (int i = 0; i < 150; ++i) printed += "o\n";
  log.output(WorkerLog::Stream::out, printed, clock.now_ms());
  CHECK(out.lines.size() == std::size_t(LogLimiter::kBurst));
  CHECK(log.summary_due_ms() == clock.now_ms() + 1000);
  clock.advance(999);
  log.summarize(clock.now_ms());
  CHECK(out.lines.size() == std::size_t(LogLimiter::kBurst));  // not yet
  clock.advance(1);
  log.summarize(clock.now_ms());  // what the pool's timer does
  REQUIRE(out.lines.size() == std::size_t(LogLimiter::kBurst) + 1);
  CHECK(out.lines.back() == std::pair<int, std::string>{FERRY_LOG_WARN,
                                                        "[p] worker 42: 100 log lines dropped (over 100 lines/s)"});
  CHECK(log.summary_due_ms() == 0);
  // A drop the worker never follows up: told when it is gone.
  for (int i = 0; i < 500; ++i) log.message(FERRY_LOG_INFO, 0, 0, "m", clock.now_ms());
  const std::size_t before = out.lines.size();
  log.finish(clock.now_ms());
  REQUIRE(out.lines.size() == before + 1);
  CHECK(out.lines.back().second.find("log lines dropped") != std::string::npos);
}

TEST_CASE("lines a worker dropped itself are told in ferryd's summary, with ferryd's own", "[log]") {
  FakeClock clock;
  Captured out;
  WorkerLog log("p", 42, out.writer());
  log.message(FERRY_LOG_INFO, 3, 5000, "after 5000 lost", clock.now_ms());
  log.message(FERRY_LOG_WARN, 0, 70, "", clock.now_ms());  // a count alone: no line of its own
  REQUIRE(out.lines.size() == 1);
  CHECK(out.lines[0].second == "[p] worker 42 call 3: after 5000 lost");
  CHECK(log.summary_due_ms() == clock.now_ms() + 1000);
  for (int i = 0; i < 300; ++i) log.message(FERRY_LOG_INFO, 0, 0, "m", clock.now_ms());  // 101 over the burst
  clock.advance(1000);
  log.summarize(clock.now_ms());
  REQUIRE(out.lines.size() == 1 + 199 + 1);
  CHECK(out.lines.back().second == "[p] worker 42: 5171 log lines dropped (over 100 lines/s)");
  // A hostile count cannot wrap the total around.
  log.message(FERRY_LOG_INFO, 0, UINT64_MAX, "", clock.now_ms());
  log.message(FERRY_LOG_INFO, 0, UINT64_MAX, "", clock.now_ms());
  log.finish(clock.now_ms());
  CHECK(out.lines.back().second == "[p] worker 42: " + std::to_string(UINT64_MAX) + " log lines dropped (over 100 lines/s)");
}
