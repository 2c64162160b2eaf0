// ferry-bench: drives ferryd with C connections x D calls in flight each and
// reports calls/s and latency percentiles, for a function and, in the same
// run, for PING (answered on the event loop, no hand-off), plus their ratio.
// With --echo-socket it runs the same load against ferry-echo (the limit: an
// inline echo server) too, and prints every figure as a ratio to it. The
// load runs on --threads epoll threads (load_engine.hpp), so that the client
// is not the bottleneck.
// With --timeout MS and a function that runs longer, it measures deadline
// accuracy instead: how late after MS each `timeout` reply arrives. With
// --stream N it measures partial results instead: one call of demo.count
// emitting N partials as fast as it can, partials/s, in --runs runs.
// With --size N every request carries N raw bytes (for demo.echo_raw, and the
// same-size PING), and each row also shows MB/s.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "ferry/client.hpp"
#include "ferry/errors.h"
#include "load_engine.hpp"

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
  int threads = 1;          // client threads, each one epoll over its share of the connections
  std::string echo_socket;  // ferry-echo's socket: "" = no ratios to the limit
  std::size_t size = 0;     // --size: payload bytes (replaces --payload); 0 = not set
};

using ferry::bench::PhaseResult;

// One phase against `socket`: PING, or o.function, at o's load.
PhaseResult run_phase(const Options& o, bool ping, const std::string& socket) {
  ferry::bench::LoadSpec spec;
  spec.socket = socket;
  spec.connections = o.connections;
  spec.depth = o.depth;
  spec.calls = o.calls;
  spec.threads = o.threads;
  spec.ping = ping;
  spec.request = ping ? ferry::bench::ping_request(o.payload)
                      : ferry::bench::call_request(o.function, o.payload, o.timeout_ms);
  spec.idle_limit_ms = 10000 + 2 * int(std::min<std::uint32_t>(o.timeout_ms, 3600000));
  return ferry::bench::run_load(spec);
}

PhaseResult run_phase(const Options& o, bool ping) { return run_phase(o, ping, o.socket); }

double pct(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, std::size_t(p * double(v.size())))];
}

double rate(const PhaseResult& r) { return double(r.latencies_us.size()) / r.seconds; }

// One table row; `limit` (ferry-echo's calls/s, 0 = not measured) adds its
// ratio, `size` (payload bytes, 0 = not set) the payload MB/s.
void print(const char* name, const PhaseResult& r, double limit, std::size_t size) {
  std::printf("%-22s %12.0f %10.1f %10.1f %10.1f %8ld", name, rate(r), pct(r.latencies_us, 0.5),
              pct(r.latencies_us, 0.99), r.latencies_us.empty() ? 0 : r.latencies_us.back(), r.errors);
  if (size > 0) std::printf(" %10.1f", rate(r) * double(size) / 1e6);
  if (limit > 0) std::printf(" %8.2f", rate(r) / limit);
  std::printf("\n");
}

// Every call should be answered `timeout`, o.timeout_ms after it was sent.
int deadline_accuracy(const Options& o) {
  const PhaseResult r = run_phase(o, false);
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

// PING and o.function against ferryd in the same run, and with --echo-socket
// the same load of o.function against ferry-echo: the limit, every figure
// also as a ratio to it.
int throughput(const Options& o) {
  const bool echo = !o.echo_socket.empty();
  Options warm = o;
  warm.calls = std::max(1000L, o.calls / 10);
  run_phase(warm, false);  // warm-up
  if (echo) run_phase(warm, false, o.echo_socket);
  const PhaseResult ping = run_phase(o, true);
  const PhaseResult call = run_phase(o, false);
  const PhaseResult limit = echo ? run_phase(o, false, o.echo_socket) : PhaseResult{};
  for (const PhaseResult* r : {&ping, &call, &limit}) {
    if (!r->failure.empty()) return std::fprintf(stderr, "ferry-bench: %s\n", r->failure.c_str()), 1;
  }
  const double lim = echo ? rate(limit) : 0;
  std::printf("%d connections x %d in flight, %ld calls per phase, %d client thread(s)\n", o.connections, o.depth,
              o.calls, std::clamp(o.threads, 1, o.connections));
  std::printf("%-22s %12s %10s %10s %10s %8s%s%s\n", "phase", "calls/s", "p50 us", "p99 us", "max us", "errors",
              o.size > 0 ? "       MB/s" : "", echo ? "   x echo" : "");
  if (echo) print("ferry-echo (limit)", limit, lim, o.size);
  print("PING (loop only)", ping, lim, o.size);
  print(o.function.c_str(), call, lim, o.size);
  std::printf("ratio %s/PING: throughput %.2f, p50 latency %.2fx\n", o.function.c_str(),
              rate(call) / rate(ping), pct(call.latencies_us, 0.5) / pct(ping.latencies_us, 0.5));
  if (echo)
    std::printf("ratio to ferry-echo: PING throughput %.2f, %s throughput %.2f, p50 latency %.2fx and %.2fx\n",
                rate(ping) / lim, o.function.c_str(), rate(call) / lim,
                pct(ping.latencies_us, 0.5) / pct(limit.latencies_us, 0.5),
                pct(call.latencies_us, 0.5) / pct(limit.latencies_us, 0.5));
  return call.errors == 0 && limit.errors == 0 ? 0 : 1;
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
  app.add_option("--threads", o.threads, "client threads, each one epoll over its share of the connections")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--echo-socket", o.echo_socket,
                 "ferry-echo's socket: also run the same load against it (the limit) and print ratios to it");
  app.add_option("--size", o.size, "payload of N raw bytes instead of --payload (e.g. demo.echo_raw); adds MB/s")
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 30));
  CLI11_PARSE(app, argc, argv);
  if (o.size > 0) o.payload.assign(o.size, 'x');
  if (o.stream != 0) return stream_throughput(o);
  if (o.timeout_ms != 0) return deadline_accuracy(o);

  return throughput(o);
}
