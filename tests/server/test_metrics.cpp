// Metrics without a server: histogram buckets, outcome counts, and the
// families prometheus-cpp serializes (text and JSON).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>

#include <string>

#include "metrics.hpp"

namespace {

// The value of the one text-format sample line that starts with `series`, or -1.
double sample(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series, at)) != std::string::npos) {
    const bool whole = (at == 0 || text[at - 1] == '\n') && text.compare(at + series.size(), 1, " ") == 0;
    if (whole) return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return -1;
}

}  // namespace

TEST_CASE("metrics: a histogram puts each duration in the first bucket at or above it", "[metrics]") {
  ferry::Metrics m;
  ferry::FunctionMetrics* f = m.function("demo.noop");
  ferry::Metrics::observe(f, 0, 1'000, 1'000 + 50'000);        // ran 50 µs: the first bucket exactly
  ferry::Metrics::observe(f, 0, 2'000, 2'000 + 3'000'000);     // 3 ms: le=0.005
  ferry::Metrics::observe(f, 0, 3'000, 3'000 + 120'000'000'000);  // 2 minutes: only +Inf
  ferry::Metrics::observe(f, 5'000, 0, 9'000);                 // dropped from the queue: no run
  const std::string text = ferry::metrics_text(m.families({}));
  const std::string run = "ferry_call_run_seconds_bucket{plugin=\"demo\",function=\"noop\",le=";
  CHECK(sample(text, run + "\"5e-05\"}") == 1);
  CHECK(sample(text, run + "\"0.0025\"}") == 1);
  CHECK(sample(text, run + "\"0.005\"}") == 2);
  CHECK(sample(text, run + "\"60\"}") == 2);
  CHECK(sample(text, run + "\"+Inf\"}") == 3);
  CHECK(sample(text, "ferry_call_run_seconds_count{plugin=\"demo\",function=\"noop\"}") == 3);
  CHECK(sample(text, "ferry_call_queue_seconds_count{plugin=\"demo\"}") == 4);
  CHECK(sample(text, "ferry_call_run_seconds_sum{plugin=\"demo\",function=\"noop\"}") ==
        Approx(0.00005 + 0.003 + 120));
}

TEST_CASE("metrics: outcomes are counted by the code's name, per function", "[metrics]") {
  ferry::Metrics m;
  for (int i = 0; i < 3; ++i) ferry::Metrics::count(m.function("demo.noop"), FERRY_OK);
  ferry::Metrics::count(m.function("demo.noop"), FERRY_E_TIMEOUT);
  ferry::Metrics::count(m.function("other.f"), FERRY_E_BUSY);
  ferry::Metrics::count(m.unknown(), FERRY_E_UNKNOWN_FUNCTION);
  CHECK(m.function("demo.noop") == m.function("demo.noop"));  // one slot per name
  const std::string text = ferry::metrics_text(m.families({}));
  CHECK(sample(text, R"(ferry_calls_total{plugin="demo",function="noop",outcome="ok"})") == 3);
  CHECK(sample(text, R"(ferry_calls_total{plugin="demo",function="noop",outcome="timeout"})") == 1);
  CHECK(sample(text, R"(ferry_calls_total{plugin="other",function="f",outcome="busy"})") == 1);
  CHECK(sample(text, R"(ferry_calls_total{plugin="",function="",outcome="unknown_function"})") == 1);
  CHECK(text.find("# TYPE ferry_calls_total counter") != std::string::npos);
}

TEST_CASE("metrics: gauges come from the snapshot given, and JSON carries the same families", "[metrics]") {
  ferry::Metrics m;
  ferry::PluginGauges p;
  p.plugin = "demo";
  p.version = "1.2.3";
  p.executor = "process";
  p.queued = {1, 2, 3};
  p.running = 2;
  p.rss_bytes = 4096;
  p.workers = {{"idle", 1}, {"busy", 2}};
  const auto families = m.families(ferry::Snapshot{{p}, 7, {}, {}, {}});
  const std::string text = ferry::metrics_text(families);
  CHECK(sample(text, R"(ferry_queue_depth{plugin="demo",priority="low"})") == 3);
  CHECK(sample(text, R"(ferry_calls_running{plugin="demo"})") == 2);
  CHECK(sample(text, R"(ferry_workers{plugin="demo",state="busy"})") == 2);
  CHECK(sample(text, R"(ferry_worker_rss_bytes{plugin="demo"})") == 4096);
  CHECK(sample(text, R"(ferry_plugin_info{plugin="demo",version="1.2.3",executor="process"})") == 1);
  CHECK(sample(text, "ferry_connections") == 7);
  CHECK(text.find("ferry_build_info{version=") != std::string::npos);
  const auto json = nlohmann::json::parse(ferry::metrics_json(families));
  REQUIRE(json.is_array());
  REQUIRE(json.size() == families.size());
  bool found = false;
  for (const auto& fam : json) {
    if (fam["name"] != "ferry_connections") continue;
    found = true;
    CHECK(fam["type"] == "gauge");
    CHECK(fam["metrics"][0]["value"] == 7);
  }
  CHECK(found);
}
