#include "metrics.hpp"

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "common/json_text.hpp"

#ifndef FERRY_VERSION
#define FERRY_VERSION "unknown"
#endif

namespace ferry {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

ClientMetric& add(MetricFamily& f, std::vector<ClientMetric::Label> labels) {
  f.metric.emplace_back();
  f.metric.back().label = std::move(labels);
  return f.metric.back();
}

void add_value(MetricFamily& f, std::vector<ClientMetric::Label> labels, double v) {
  ClientMetric& m = add(f, std::move(labels));
  if (f.type == MetricType::Counter) m.counter.value = v;
  else m.gauge.value = v;
}

const char* outcome_name(int code) { return code == FERRY_OK ? "ok" : ferry_code_name(code); }

// "plugin.function" -> {"plugin", "function"}; a built-in "ferry.status" alike.
std::pair<std::string_view, std::string_view> split_name(std::string_view full) {
  const auto dot = full.find('.');
  if (dot == std::string_view::npos) return {full, {}};
  return {full.substr(0, dot), full.substr(dot + 1)};
}

const char* kPriorities[] = {"high", "normal", "low"};

}  // namespace

void Histogram::export_to(ClientMetric& m) const {
  m.histogram.sample_count = count_;
  m.histogram.sample_sum = double(sum_ns_) * 1e-9;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i];
    m.histogram.bucket.push_back({cumulative, kBounds[i]});
  }
  m.histogram.bucket.push_back({count_, std::numeric_limits<double>::infinity()});
}

FunctionMetrics* Metrics::function(std::string_view full_name) {
  if (auto it = by_name_.find(full_name); it != by_name_.end()) return it->second;
  const auto [plugin, fn] = split_name(full_name);
  auto p = plugin_by_name_.find(plugin);
  if (p == plugin_by_name_.end()) {
    plugins_.push_back(PluginMetrics{std::string(plugin), {}});
    p = plugin_by_name_.emplace(std::string(plugin), &plugins_.back()).first;
  }
  functions_.push_back(FunctionMetrics{std::string(fn), p->second, {}, {}});
  return by_name_.emplace(std::string(full_name), &functions_.back()).first->second;
}

void Metrics::observe(FunctionMetrics* f, std::int64_t admitted_ns, std::int64_t started_ns,
                      std::int64_t finished_ns) {
  if (started_ns == 0) {  // left the queue unstarted
    if (finished_ns != 0) f->plugin->queue.observe_ns(finished_ns - admitted_ns);
    return;
  }
  f->plugin->queue.observe_ns(started_ns - admitted_ns);
  f->run.observe_ns(finished_ns - started_ns);
}

namespace {

void call_families(const std::deque<FunctionMetrics>& functions, const std::deque<PluginMetrics>& plugins,
                   std::vector<MetricFamily>& out) {
  auto calls = family("ferry_calls_total", "Calls answered, by the outcome the client got (ok or the error code)",
                      MetricType::Counter);
  auto run = family("ferry_call_run_seconds", "How long calls ran, from start to finish", MetricType::Histogram);
  auto queue = family("ferry_call_queue_seconds", "How long calls waited in their plugin's queue",
                      MetricType::Histogram);
  for (const FunctionMetrics& f : functions) {
    for (int code = 0; code < kOutcomes; ++code) {
      if (f.outcomes[code] == 0) continue;
      add_value(calls, {{"plugin", f.plugin->plugin}, {"function", f.function}, {"outcome", outcome_name(code)}},
                double(f.outcomes[code]));
    }
    if (f.run.count() != 0) f.run.export_to(add(run, {{"plugin", f.plugin->plugin}, {"function", f.function}}));
  }
  for (const PluginMetrics& p : plugins) {
    if (p.queue.count() != 0) p.queue.export_to(add(queue, {{"plugin", p.plugin}}));
  }
  out.push_back(std::move(calls));
  out.push_back(std::move(queue));
  out.push_back(std::move(run));
}

void gauge_families(const Snapshot& g, std::vector<MetricFamily>& out) {
  auto depth = family("ferry_queue_depth", "Calls admitted and waiting for a worker", MetricType::Gauge);
  auto running = family("ferry_calls_running", "Calls running now", MetricType::Gauge);
  auto workers = family("ferry_workers", "Worker processes (process) or threads (thread), by state",
                        MetricType::Gauge);
  auto rss = family("ferry_worker_rss_bytes", "Resident memory of a plugin's worker processes, summed",
                    MetricType::Gauge);
  auto stuck = family("ferry_stuck_threads", "Threads still running a cancelled call past its grace",
                      MetricType::Gauge);
  auto info = family("ferry_plugin_info", "The plugin version serving, and its executor", MetricType::Gauge);
  for (const PluginGauges& p : g.plugins) {
    if (p.executor.empty()) continue;  // not serving: only its counters remain
    for (int i = 0; i < 3; ++i) add_value(depth, {{"plugin", p.plugin}, {"priority", kPriorities[i]}}, p.queued[i]);
    add_value(running, {{"plugin", p.plugin}}, p.running);
    for (const auto& [state, n] : p.workers) add_value(workers, {{"plugin", p.plugin}, {"state", state}}, n);
    if (p.executor == "process") add_value(rss, {{"plugin", p.plugin}}, double(p.rss_bytes));
    if (p.executor == "thread") add_value(stuck, {{"plugin", p.plugin}}, p.stuck);
    add_value(info, {{"plugin", p.plugin}, {"version", p.version}, {"executor", p.executor}}, 1);
  }
  auto conns = family("ferry_connections", "Client connections open now", MetricType::Gauge);
  add_value(conns, {}, double(g.connections));
  auto build = family("ferry_build_info", "The ferryd build", MetricType::Gauge);
  add_value(build, {{"version", FERRY_VERSION}}, 1);
  for (auto* f : {&depth, &running, &workers, &rss, &stuck, &info, &conns, &build}) out.push_back(std::move(*f));
}

void exit_families(const Snapshot& s, std::vector<MetricFamily>& out) {
  auto exits = family("ferry_worker_exits_total", "Worker processes that ended, by reason", MetricType::Counter);
  for (const PluginGauges& p : s.plugins) {
    const bool any = std::any_of(p.exits.begin(), p.exits.end(), [](std::uint64_t n) { return n != 0; });
    if (p.executor != "process" && !any) continue;
    for (int r = 0; r < kExitReasonCount; ++r) {
      add_value(exits, {{"plugin", p.plugin}, {"reason", name(ExitReason(r))}}, double(p.exits[r]));
    }
  }
  out.push_back(std::move(exits));
}

void counted_family(std::string name, std::string help, const std::vector<LabeledCount>& counts,
                    std::vector<MetricFamily>& out) {
  auto f = family(std::move(name), std::move(help), MetricType::Counter);
  for (const LabeledCount& c : counts) add_value(f, c.labels, double(c.value));
  out.push_back(std::move(f));
}

}  // namespace

std::vector<MetricFamily> Metrics::families(const Snapshot& s) const {
  std::vector<MetricFamily> out;
  call_families(functions_, plugins_, out);
  gauge_families(s, out);
  exit_families(s, out);
  counted_family("ferry_connections_refused_total", "Connections closed at once, by reason", s.refused, out);
  counted_family("ferry_protocol_errors_total", "Connections failed for a protocol error, by kind",
                 s.protocol_errors, out);
  counted_family("ferry_reloads_total", "Config reloads, by what asked (kind) and result", s.reloads, out);
  return out;
}

std::string metrics_text(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return std::move(out).str();
}

namespace {

nlohmann::json metric_json(const MetricFamily& f, const ClientMetric& m) {
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& l : m.label) labels[l.name] = l.value;
  nlohmann::json j{{"labels", std::move(labels)}};
  if (f.type == MetricType::Histogram) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const auto& b : m.histogram.bucket) {
      if (std::isfinite(b.upper_bound)) buckets.push_back({b.upper_bound, b.cumulative_count});
    }
    j["count"] = m.histogram.sample_count;
    j["sum"] = m.histogram.sample_sum;
    j["buckets"] = std::move(buckets);
  } else {
    j["value"] = f.type == MetricType::Counter ? m.counter.value : m.gauge.value;
  }
  return j;
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Histogram: return "histogram";
    default: return "untyped";
  }
}

}  // namespace

std::string metrics_json(const std::vector<MetricFamily>& families) {
  nlohmann::json out = nlohmann::json::array();
  for (const MetricFamily& f : families) {
    nlohmann::json metrics = nlohmann::json::array();
    for (const ClientMetric& m : f.metric) metrics.push_back(metric_json(f, m));
    out.push_back({{"name", f.name}, {"help", f.help}, {"type", type_name(f.type)}, {"metrics", std::move(metrics)}});
  }
  return json_text(out);
}

}  // namespace ferry
