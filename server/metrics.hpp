// What ferryd counts for Prometheus, and the families a scrape sees.
// Loop thread only: each count is written where the loop already handles
// the event (a reply, an executor's completion), so recording a call is a
// few plain adds, with no lock and no atomic. A scrape from another thread
// asks the loop for a snapshot (metrics_http.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

#include "exec/worker_exit.hpp"
#include "ferry/errors.h"

namespace ferry {

// Durations in fixed buckets, from 50 µs (an in-process noop) to a minute.
class Histogram {
 public:
  static constexpr std::array<double, 18> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                     0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                     0.5,     1,      2.5,     10,     30,    60};
  void observe_ns(std::int64_t ns) {
    // The first bound at or above ns: a short linear scan of integers, since
    // the short durations that dominate end it in a step or two.
    std::size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
    ++buckets_[i];
    ++count_;
    sum_ns_ += ns > 0 ? ns : 0;
  }
  std::uint64_t count() const { return count_; }
  // Sets m.histogram: cumulative buckets, count and sum (seconds).
  void export_to(prometheus::ClientMetric& m) const;

 private:
  static constexpr std::array<std::int64_t, kBounds.size()> kBoundsNs = [] {
    std::array<std::int64_t, kBounds.size()> ns{};
    for (std::size_t i = 0; i < ns.size(); ++i) ns[i] = std::int64_t(kBounds[i] * 1e9 + 0.5);
    return ns;
  }();
  std::array<std::uint64_t, kBounds.size() + 1> buckets_{};  // the last: over every bound
  std::uint64_t count_ = 0;
  std::int64_t sum_ns_ = 0;
};

// Outcomes by wire code: ok, then every error code's name.
inline constexpr int kOutcomes = FERRY_CODE_COUNT;

struct PluginMetrics {
  std::string plugin;
  Histogram queue;  // admission to start (or to leaving the queue unstarted)
};

struct FunctionMetrics {
  std::string function;  // without the "plugin." prefix
  PluginMetrics* plugin = nullptr;
  std::array<std::uint64_t, kOutcomes> outcomes{};  // by the code the client got
  Histogram run;                                   // start to finish, calls that ran
};

// One plugin's state at a scrape (from its lane's ExecutorStats).
// executor is empty for a plugin that no longer serves (only its exits remain).
struct PluginGauges {
  std::string plugin, version, executor;
  std::array<int, 3> queued{};  // by priority: high, normal, low
  int running = 0;
  int stuck = 0;
  std::uint64_t rss_bytes = 0;
  std::map<std::string, int> workers;  // by state
  // Worker exits since ferryd started, by ExitReason: its lanes' counts and
  // those of lanes already dropped (a counter must never go down).
  std::array<std::uint64_t, kExitReasonCount> exits{};
};

// A count kept elsewhere (the server, the reloader), with its labels.
struct LabeledCount {
  std::vector<prometheus::ClientMetric::Label> labels;
  std::uint64_t value = 0;
};

// What a scrape reads besides the call counters, taken on the loop.
struct Snapshot {
  std::vector<PluginGauges> plugins;
  std::uint64_t connections = 0;
  std::vector<LabeledCount> refused;          // {reason}
  std::vector<LabeledCount> protocol_errors;  // {kind}
  std::vector<LabeledCount> reloads;          // {kind, result}
};

class Router;
class Server;
class Reloader;
// The snapshot of a running ferryd. Loop thread.
Snapshot take_snapshot(const Router& router, const Server& server, const Reloader& reloader);

class Metrics {
 public:
  // The counters of "plugin.function" (or of a built-in, "ferry.status"),
  // made on first use; the pointer stays valid as long as this object.
  FunctionMetrics* function(std::string_view full_name);
  // A call answered without naming a known function (unknown, malformed).
  FunctionMetrics* unknown() { return function(""); }

  // The client got `code` for a call of f.
  static void count(FunctionMetrics* f, ferry_code code) { ++f->outcomes[code < kOutcomes ? code : FERRY_E_INTERNAL]; }
  // An executor finished a call admitted at admitted_ns; started_ns is 0
  // when it never ran (dropped from the queue).
  static void observe(FunctionMetrics* f, std::int64_t admitted_ns, std::int64_t started_ns,
                      std::int64_t finished_ns);

  // Every family: the counters above and `s`.
  std::vector<prometheus::MetricFamily> families(const Snapshot& s) const;

 private:
  std::deque<PluginMetrics> plugins_;      // stable addresses
  std::deque<FunctionMetrics> functions_;  // stable addresses
  std::map<std::string, FunctionMetrics*, std::less<>> by_name_;
  std::map<std::string, PluginMetrics*, std::less<>> plugin_by_name_;
};

// The Prometheus text format of `families` (prometheus-cpp's serializer).
std::string metrics_text(const std::vector<prometheus::MetricFamily>& families);
// The same as JSON: [{"name","help","type","metrics":[{"labels":{},"value"|"count","sum","buckets":[[le,n]...]}]}]
std::string metrics_json(const std::vector<prometheus::MetricFamily>& families);

}  // namespace ferry
