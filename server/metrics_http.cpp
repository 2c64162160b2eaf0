#include "metrics_http.hpp"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <future>

namespace ferry {

// Answers a scrape with what the loop snapshots for it.
class MetricsEndpoint::Collector final : public prometheus::Collectable {
 public:
  Collector(Snapshot snapshot, Post post) : snapshot_(std::move(snapshot)), post_(std::move(post)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    // Shared: a loop that answers after the wait gave up still has a promise.
    auto done = std::make_shared<std::promise<std::vector<prometheus::MetricFamily>>>();
    auto result = done->get_future();
    post_([done, snapshot = snapshot_] { done->set_value(snapshot()); });
    if (result.wait_for(std::chrono::milliseconds(kWaitMs)) != std::future_status::ready) return {};
    return result.get();
  }

 private:
  Snapshot snapshot_;
  Post post_;
};

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::start(const std::string& listen, Snapshot snapshot,
                                                                 Post post) {
  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint);
  e->collector_ = std::make_shared<Collector>(std::move(snapshot), std::move(post));
  try {
    // One thread: scrapes are rare, and each waits on the one loop anyway.
    e->exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& ex) {
    return Status::Error("metrics_listen " + listen + ": cannot listen: " + ex.what());
  }
  e->exposer_->RegisterCollectable(e->collector_);
  const std::vector<int> ports = e->exposer_->GetListeningPorts();
  e->port_ = ports.empty() ? 0 : ports.front();
  return e;
}

// The exposer first: no scrape may run once the collector is gone.
MetricsEndpoint::~MetricsEndpoint() { exposer_.reset(); }

}  // namespace ferry
