// ferry-bench: drives ferryd with C connections x D calls in flight each and
// reports calls/s and latency percentiles, for a function and, in the same
// run, for PING (answered on the event loop, no hand-off), plus their ratio.
// With --timeout MS and a function that runs longer, it measures deadline
// accuracy instead: how late after MS each `timeout` reply arrives. With
// --stream N it measures partial results instead: one call of demo.count
// emitting N partials as fast as it can, partials/s, in --runs runs.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "ferry/client.hpp"
#include "ferry/errors.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string socket = "/tmp/ferry.sock";
  int connections = 4;
  int depth = 16;
  long calls = 100000;
  std::string function = "demo.noop";
  std::string payload = "[]";
  std::uint32_t timeout_ms = 0;
  long stream = 0;  // partials per streamed call (0: not this mode)
  int runs = 3;
};

struct Result {
  double seconds = 0;
  std::vector<double> latencies_us;  // one per call
  long errors = 0;
  long timeouts = 0;
  std::string failure;
};

Result failed(std::string why) {
  Result r;
  r.failure = std::move(why);
  return r;
}

// One connection's share: keeps `depth` requests in flight until `n` are answered.
Result drive(const Options& o, bool ping, long n) {
  Result r;
  std::string err;
  auto c = ferry::Client::connect(o.socket, &err);
  if (!c) return failed(err);
  std::vector<Clock::time_point> sent(std::size_t(n) + 1);
  r.latencies_us.reserve(std::size_t(n));
  long issued = 0;
  auto issue = [&] {
    const std::uint64_t id = ping ? c->send_ping() : c->send_call(o.function, o.payload, o.timeout_ms);
    sent[std::size_t(id - 1) % sent.size()] = Clock::now();
    ++issued;
  };
  for (; issued < std::min<long>(o.depth, n);) issue();
  for (long done = 0; done < n; ++done) {
    auto rep = c->read_reply();
    if (!rep) return failed(c->last_error());
    const auto now = Clock::now();
    r.errors += rep->kind == ferry::ReplyKind::error;
    r.timeouts += rep->kind == ferry::ReplyKind::error && rep->code == FERRY_E_TIMEOUT;
    r.latencies_us.push_back(
        std::chrono::duration<double, std::micro>(now - sent[std::size_t(rep->call_id - 1) % sent.size()]).count());
    if (issued < n) issue();
  }
  return r;
}

Result run_phase(const Options& o, bool ping) {
  std::vector<Result> parts(std::size_t(o.connections));
  std::vector<std::thread> threads;
  const long share = o.calls / o.connections;
  const auto start = Clock::now();
  for (int i = 0; i < o.connections; ++i) {
    threads.emplace_back([&, i] { parts[std::size_t(i)] = drive(o, ping, share); });
  }
  for (auto& t : threads) t.join();
  Result all;
  all.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& p : parts) {
    if (!p.failure.empty()) all.failure = p.failure;
    all.errors += p.errors;
    all.timeouts += p.timeouts;
    all.latencies_us.insert(all.latencies_us.end(), p.latencies_us.begin(), p.latencies_us.end());
  }
  std::sort(all.latencies_us.begin(), all.latencies_us.end());
  return all;
}

double pct(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, std::size_t(p * double(v.size())))];
}

double rate(const Result& r) { return double(r.latencies_us.size()) / r.seconds; }

void print(const char* name, const Result& r) {
  std::printf("%-22s %12.0f %10.1f %10.1f %10.1f %8ld\n", name, rate(r), pct(r.latencies_us, 0.5),
              pct(r.latencies_us, 0.99), r.latencies_us.empty() ? 0 : r.latencies_us.back(), r.errors);
}

// Every call should be answered `timeout`, o.timeout_ms after it was sent.
int deadline_accuracy(const Options& o) {
  const Result r = run_phase(o, false);
  if (!r.failure.empty() || r.latencies_us.empty()) {
    std::fprintf(stderr, "ferry-bench: %s\n", r.failure.c_str());
    return 1;
  }
  std::vector<double> late;
  for (double us : r.latencies_us) late.push_back(us / 1000.0 - o.timeout_ms);
  std::printf("%d connections x %d in flight, %zu calls of %s with a %u ms deadline\n", o.connections, o.depth,
              late.size(), o.function.c_str(), o.timeout_ms);
  std::printf("timeout replies %ld of %zu; reply after deadline (ms): min %.2f p50 %.2f p99 %.2f max %.2f\n",
              r.timeouts, late.size(), late.front(), pct(late, 0.5), pct(late, 0.99), late.back());
  return r.timeouts == long(late.size()) ? 0 : 1;
}

// One streamed call of demo.count [n, 0] on a fresh connection: partials/s
// from sending the CALL to its result; 0 if it failed.
double stream_rate(const Options& o) {
  std::string err;
  auto c = ferry::Client::connect(o.socket, &err);
  if (!c) return std::fprintf(stderr, "ferry-bench: %s\n", err.c_str()), 0;
  long parts = 0;
  const auto start = Clock::now();
  const auto r = c->stream("demo.count", "[" + std::to_string(o.stream) + ",0]", [&](std::string_view) { ++parts; });
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!r || r->kind != ferry::ReplyKind::result || parts != o.stream) {
    std::fprintf(stderr, "ferry-bench: stream failed: %s\n", r ? r->data.c_str() : c->last_error().c_str());
    return 0;
  }
  return double(parts) / s;
}

// Partial-result throughput of one call, o.runs times: each run, then min/median/max.
int stream_throughput(const Options& o) {
  std::vector<double> rates;
  for (int i = 0; i < o.runs; ++i) {
    const double rate = stream_rate(o);
    if (rate == 0) return 1;
    std::printf("run %d: %ld partials in one call of demo.count: %.0f partials/s\n", i + 1, o.stream, rate);
    rates.push_back(rate);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("partials/s over %d runs: min %.0f median %.0f max %.0f\n", o.runs, rates.front(),
              rates[rates.size() / 2], rates.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-bench: load generator for ferryd (PING vs a function, same run)"};
  Options o;
  app.add_option("--socket", o.socket, "ferryd socket")->envname("FERRY_SOCKET")->capture_default_str();
  app.add_option("-c,--connections", o.connections, "client connections")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("-d,--depth", o.depth, "calls in flight per connection")->capture_default_str()->check(CLI::Range(1, 65536));
  app.add_option("-n,--calls", o.calls, "calls per phase (all connections)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("-f,--function", o.function, "function to call")->capture_default_str();
  app.add_option("-p,--payload", o.payload, "request payload (JSON arguments)")->capture_default_str();
  app.add_option("-t,--timeout", o.timeout_ms, "deadline of each call in ms: measures how late `timeout` replies come");
  app.add_option("--stream", o.stream, "partials per call: measures one streamed call of demo.count [N,0] instead")
      ->check(CLI::PositiveNumber);
  app.add_option("--runs", o.runs, "runs of --stream")->capture_default_str()->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  if (o.stream != 0) return stream_throughput(o);
  if (o.timeout_ms != 0) return deadline_accuracy(o);

  Options warm = o;
  warm.calls = std::max(1000L, o.calls / 10);
  run_phase(warm, false);  // warm-up
  const Result ping = run_phase(o, true);
  const Result call = run_phase(o, false);
  if (!ping.failure.empty() || !call.failure.empty()) {
    std::fprintf(stderr, "ferry-bench: %s\n", (ping.failure + call.failure).c_str());
    return 1;
  }
  std::printf("%d connections x %d in flight, %ld calls per phase\n", o.connections, o.depth, o.calls);
  std::printf("%-22s %12s %10s %10s %10s %8s\n", "phase", "calls/s", "p50 us", "p99 us", "max us", "errors");
  print("PING (loop only)", ping);
  print(o.function.c_str(), call);
  std::printf("ratio %s/PING: throughput %.2f, p50 latency %.2fx\n", o.function.c_str(),
              rate(call) / rate(ping), pct(call.latencies_us, 0.5) / pct(ping.latencies_us, 0.5));
  return call.errors == 0 ? 0 : 1;
}
