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
// same-size PING), and each row also shows MB/s. The last line, `summary
// k=v ...`, is for scripts (scripts/bench.sh).
// With --idle N --server-pid PID it measures what N idle connections cost
// ferryd instead: its RSS with them open, after a PING on each, and after
// they close.
#include <CLI/CLI.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "ferry/client.hpp"
#include "ferry/errors.h"
#include "ferry/wire.hpp"
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
  int idle = 0;             // --idle: connections to hold open (0: not this mode)
  int server_pid = 0;       // whose RSS --idle reads
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
  std::printf("summary echo_calls_s=%.0f ping_calls_s=%.0f call_calls_s=%.0f echo_p50_us=%.1f ping_p50_us=%.1f "
              "call_p50_us=%.1f\n",
              lim, rate(ping), rate(call), pct(limit.latencies_us, 0.5), pct(ping.latencies_us, 0.5),
              pct(call.latencies_us, 0.5));
  return call.errors == 0 && limit.errors == 0 ? 0 : 1;
}

// VmRSS of a process in KB, 0 if it cannot be read.
long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long kb = 0;
  while (in >> key) {
    if (key == "VmRSS:") return in >> kb, kb;
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// One blocking frame exchange on fd: sends `out`, reads one reply of `type`.
bool exchange(int fd, const std::string& out, ferry::proto::Type type) {
  if (send(fd, out.data(), out.size(), MSG_NOSIGNAL) != ssize_t(out.size())) return false;
  std::uint8_t buf[512];
  std::size_t have = 0;
  while (have < sizeof buf) {
    const ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
    if (r <= 0) return false;
    have += std::size_t(r);
    ferry::proto::Frame f;
    std::size_t used = 0;
    const auto p = ferry::proto::parse_frame({buf, have}, sizeof buf, &f, &used, nullptr);
    if (p == ferry::proto::Parse::ok) return f.header.type == type && used == have;
    if (p != ferry::proto::Parse::need_more) return false;
  }
  return false;
}

// o.idle connections to ferryd (o.server_pid), each past its HELLO, then
// idle; then a PING on each; then all closed. Prints ferryd's RSS at each step.
int idle_connections(const Options& o) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < rlim_t(o.idle) + 64) {
    std::fprintf(stderr, "ferry-bench: --idle %d needs %d fds; the hard limit is %lu\n", o.idle, o.idle + 64,
                 static_cast<unsigned long>(lim.rlim_max));
    return 1;
  }
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  const long before = rss_kb(o.server_pid);
  if (before == 0) return std::fprintf(stderr, "ferry-bench: no process %d\n", o.server_pid), 1;
  std::string hello, ping;
  ferry::proto::encode_hello(hello, ferry::proto::Hello{});
  ferry::proto::encode_ping(ping, 1, "idle");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, o.socket.c_str(), sizeof a.sun_path - 1);
  std::vector<int> fds;
  auto close_all = [&] {
    for (int fd : fds) close(fd);
    fds.clear();
  };
  for (int i = 0; i < o.idle; ++i) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        !exchange(fd, hello, ferry::proto::Type::hello)) {
      std::fprintf(stderr, "ferry-bench: connection %d of %d: %s\n", i + 1, o.idle,
                   errno != 0 ? std::strerror(errno) : "no HELLO reply");
      if (fd >= 0) close(fd);
      return close_all(), 1;
    }
    fds.push_back(fd);
  }
  const long open = rss_kb(o.server_pid);
  for (int fd : fds) {
    if (!exchange(fd, ping, ferry::proto::Type::pong)) {
      std::fprintf(stderr, "ferry-bench: a PING on an idle connection got no PONG\n");
      return close_all(), 1;
    }
  }
  const long pinged = rss_kb(o.server_pid);
  close_all();
  // ferryd releases a connection once it sees it closed: wait for the RSS to settle (at most 5 s).
  long closed = rss_kb(o.server_pid);
  for (int i = 0; i < 50 && closed > before + 1024; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    closed = rss_kb(o.server_pid);
  }
  const double n = o.idle;
  std::printf("%d idle connections: ferryd RSS %ld KB before, %ld KB open (%.2f KB each), %ld KB after a PING on "
              "each (%.2f KB each), %ld KB after they closed\n",
              o.idle, before, open, double(open - before) / n, pinged, double(pinged - before) / n, closed);
  std::printf("summary idle_conns=%d rss_before_kb=%ld rss_open_kb=%ld rss_pinged_kb=%ld rss_closed_kb=%ld "
              "kb_per_conn=%.2f\n",
              o.idle, before, open, pinged, closed, double(std::max(open, pinged) - before) / n);
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
  app.add_option("--threads", o.threads, "client threads, each one epoll over its share of the connections")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--echo-socket", o.echo_socket,
                 "ferry-echo's socket: also run the same load against it (the limit) and print ratios to it");
  app.add_option("--size", o.size, "payload of N raw bytes instead of --payload (e.g. demo.echo_raw); adds MB/s")
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 30));
  app.add_option("--idle", o.idle, "hold N idle connections and report ferryd's RSS (needs --server-pid)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--server-pid", o.server_pid, "ferryd's pid, for --idle");
  CLI11_PARSE(app, argc, argv);
  if (o.idle > 0) return o.server_pid > 0 ? idle_connections(o) : (std::fprintf(stderr, "--idle needs --server-pid\n"), 2);
  if (o.size > 0) o.payload.assign(o.size, 'x');
  if (o.stream != 0) return stream_throughput(o);
  if (o.timeout_ms != 0) return deadline_accuracy(o);

  return throughput(o);
}
