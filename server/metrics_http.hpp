// Serves /metrics over HTTP ([server] metrics_listen) with prometheus-cpp's
// Exposer, on its own threads: a scrape never runs on the loop. The loop
// owns every count (metrics.hpp), so a scrape posts a snapshot request to
// the loop and waits for it, at most kWaitMs. Thread-safe; destroy it while
// the loop still runs its posted tasks, or after it stopped for good.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace prometheus {
class Exposer;
struct MetricFamily;
}  // namespace prometheus

namespace ferry {

class MetricsEndpoint {
 public:
  // A scrape that the loop does not answer this fast (it is stopping) gets
  // an empty page rather than hanging the scraper.
  static constexpr int kWaitMs = 2000;
  using Snapshot = std::function<std::vector<prometheus::MetricFamily>()>;
  // Runs a task on the loop thread (thread-safe).
  using Post = std::function<void(std::function<void()>)>;

  // Listens on `listen` ("ADDRESS:PORT"); `snapshot` runs on the loop.
  static Result<std::unique_ptr<MetricsEndpoint>> start(const std::string& listen, Snapshot snapshot, Post post);
  ~MetricsEndpoint();
  // The port it listens on (the one picked, for port 0).
  int port() const { return port_; }

 private:
  class Collector;
  MetricsEndpoint() = default;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace ferry
