#include "metrics_http.hpp"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace ferry {

// Answers a scrape with what the loop snapshots for it. close() makes
// scrapes still waiting give up at once, so ferryd's stop never waits on one.
class MetricsEndpoint::Collector final : public prometheus::Collectable,
                                         public std::enable_shared_from_this<MetricsEndpoint::Collector> {
 public:
  Collector(Snapshot snapshot, Post post) : snapshot_(std::move(snapshot)), post_(std::move(post)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    // Shared: a loop that answers after the wait gave up still has somewhere to write.
    auto slot = std::make_shared<std::optional<std::vector<prometheus::MetricFamily>>>();
    post_([self = shared_from_this(), slot] {
      auto families = self->snapshot_();
      std::lock_guard lock(self->mu_);
      *slot = std::move(families);
      self->cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(kWaitMs), [&] { return slot->has_value() || closed_; });
    return slot->has_value() ? std::move(**slot) : std::vector<prometheus::MetricFamily>{};
  }

  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  Snapshot snapshot_;
  Post post_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool closed_ = false;
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

// Waiting scrapes give up, then the exposer goes (joining its thread)
// before the collector: no scrape may run once the collector is gone.
MetricsEndpoint::~MetricsEndpoint() {
  collector_->close();
  exposer_.reset();
}

}  // namespace ferry
