// Router against a fake ExecutorFactory: lookup, deadlines on the injected
// clock, busy, a plugin the factory refuses, and lanes kept or replaced on
// apply(). No sockets, no threads, no plugin code.
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fake_clock.hpp"
#include "router.hpp"

namespace {

using ferry::config::Config;

// Admits up to `room` jobs and remembers them; cancel() records the ref.
class FakeExecutor final : public ferry::Executor {
 public:
  explicit FakeExecutor(int room) : room_(room) {}
  bool submit(ferry::Job&& job) override {
    if (int(jobs.size()) >= room_) return false;
    jobs.push_back(std::move(job));
    return true;
  }
  void cancel(const ferry::CallRef& ref, ferry_code) override { cancelled.push_back(ref); }
  void retire() override { retired = true; }
  void end(std::function<void()> done) override { ending = std::move(done); }
  int stop() override { return ++stopped, ++*stops, 0; }
  ferry::ExecutorStats stats() const override { return {}; }
  const char* kind() const override { return kind_name; }
  std::vector<ferry::Job> jobs;
  std::vector<ferry::CallRef> cancelled;
  bool retired = false;
  std::function<void()> ending;  // end()'s `done`, until the test runs it
  int stopped = 0;
  int* stops = &stopped;  // the factory's count, which outlives this
  const char* kind_name = "fake";

 private:
  int room_;
};

class FakeFactory final : public ferry::ExecutorFactory {
 public:
  ferry::Result<std::unique_ptr<ferry::Executor>> make(const ferry::Plugin& plugin,
                                                       const ferry::config::PluginConfig& pc, int) override {
    if (refuse.count(plugin.name) != 0) return ferry::Status::Error(refuse[plugin.name]);
    auto e = std::make_unique<FakeExecutor>(pc.workers + pc.queue_limit);
    e->kind_name = kind;
    e->stops = &stops;
    made.push_back(e.get());
    return std::unique_ptr<ferry::Executor>(std::move(e));
  }
  void wait_idle() override {}
  std::map<std::string, std::string> refuse;  // plugin -> why
  std::vector<FakeExecutor*> made;
  const char* kind = "fake";
  int stops = 0;  // stop() calls of every executor made
};

std::shared_ptr<const Config> config_with(int workers, int queue_limit, std::uint32_t timeout_ms) {
  auto cfg = std::make_shared<Config>();
  cfg->defaults.workers = workers;
  cfg->defaults.queue_limit = queue_limit;
  cfg->defaults.timeout_ms = timeout_ms;
  return cfg;
}

ferry::proto::Call call_of(std::string_view name, std::uint32_t timeout_ms = 0) {
  return ferry::proto::Call{timeout_ms, ferry::proto::Priority::normal, name, {}, 0};
}

struct Fixture {
  ferry::FakeClock clock{5000};
  ferry::Invoker invoker{clock};
  ferry::Registry registry;
  FakeFactory factory;
  Fixture() {
    for (const char* name : {"a", "b"}) {
      REQUIRE(registry.install(ferry::described_plugin("/p/" + std::string(name) + ".so", name, "1",
                                                       {std::string(name) + ".f"}),
                               false)
                  .ok());
    }
  }
  std::unique_ptr<ferry::Router> router(std::shared_ptr<const Config> cfg) {
    auto now = [](std::function<void()> task) { task(); };
    return std::make_unique<ferry::Router>(cfg, registry, factory, invoker, clock, now, now, metrics);
  }
  ferry::Metrics metrics;
};

}  // namespace

TEST_CASE("router: a call goes to its plugin's lane with its deadline on the injected clock", "[router]") {
  Fixture f;
  auto r = f.router(config_with(1, 1, 1000));
  REQUIRE(f.factory.made.size() == 2);
  ferry::Route route;
  CHECK_FALSE(r->dispatch({1, 1, 7, 70}, call_of("a.f"), &route).has_value());
  CHECK(route.deadline_ms == 6000);  // clock 5000 + the plugin's 1000
  CHECK_FALSE(r->dispatch({1, 1, 8, 80}, call_of("a.f", 200), &route).has_value());
  CHECK(route.deadline_ms == 5200);  // a shorter client timeout wins
  CHECK_FALSE(r->dispatch({1, 1, 9, 90}, call_of("b.f", 5000), &route).has_value());
  CHECK(route.deadline_ms == 6000);  // a longer one is capped by the plugin's
  const auto busy = r->dispatch({1, 1, 10, 100}, call_of("a.f"), &route);  // a: 1 worker + 1 queued
  REQUIRE(busy.has_value());
  CHECK(busy->code == FERRY_E_BUSY);
  const auto unknown = r->dispatch({1, 1, 11, 110}, call_of("c.f"), &route);
  REQUIRE(unknown.has_value());
  CHECK(unknown->code == FERRY_E_UNKNOWN_FUNCTION);
  r->stop();
}

TEST_CASE("router: a plugin the factory refuses answers unknown_function with the reason", "[router]") {
  Fixture f;
  f.factory.refuse["b"] = "its sandbox needs landlock";
  auto r = f.router(config_with(1, 0, 1000));
  ferry::Route route;
  const auto reply = r->dispatch({1, 1, 1, 10}, call_of("b.f"), &route);
  REQUIRE(reply.has_value());
  CHECK(reply->code == FERRY_E_UNKNOWN_FUNCTION);
  CHECK_THAT(reply->data, Catch::Contains("its sandbox needs landlock"));
  CHECK_THAT(r->dispatch({1, 1, 2, 20}, call_of("ferry.status"), &route)->data,
             Catch::Contains("its sandbox needs landlock"));
  r->stop();
}

TEST_CASE("router: apply keeps unchanged lanes and retires changed ones after their calls", "[router]") {
  Fixture f;
  auto r = f.router(config_with(2, 0, 1000));
  REQUIRE(f.factory.made.size() == 2);
  ferry::Route route;
  REQUIRE_FALSE(r->dispatch({1, 1, 1, 10}, call_of("a.f"), &route).has_value());
  void* old_lane = route.lane;
  r->apply(config_with(2, 0, 1000));  // same settings: same lanes
  CHECK(f.factory.made.size() == 2);
  r->apply(config_with(3, 0, 1000));  // changed: new lanes, the old ones retire
  REQUIRE(f.factory.made.size() == 4);
  CHECK(f.factory.made[0]->retired);
  REQUIRE_FALSE(r->dispatch({1, 1, 2, 20}, call_of("a.f"), &route).has_value());
  CHECK(route.lane != old_lane);
  r->cancel(old_lane, {1, 1, 1, 10}, FERRY_E_CANCELLED);  // the old lane still owns its call
  CHECK(f.factory.made[0]->cancelled.size() == 1);
  r->finished(old_lane);  // its last call: the old lane is disposed of
  r->stop();
}

TEST_CASE("router: settings belong to the version: a settings change alone keeps the lane", "[router][settings]") {
  Fixture f;
  auto cfg = config_with(2, 0, 1000);
  auto r = f.router(cfg);
  REQUIRE(f.factory.made.size() == 2);
  // The loader refused the new settings (no new Plugin): the serving lane stays.
  auto changed = std::make_shared<Config>(*cfg);
  changed->plugins["a"] = changed->defaults;
  changed->plugins["a"].settings = R"({"n":2})";
  r->apply(changed);
  CHECK(f.factory.made.size() == 2);
  CHECK_FALSE(f.factory.made[0]->retired);
  // Accepted, they come as a new version of the plugin: a new lane (the old
  // one keeps its call in flight).
  ferry::Route route;
  REQUIRE_FALSE(r->dispatch({1, 1, 1, 10}, call_of("a.f"), &route).has_value());
  REQUIRE(f.registry.install(ferry::described_plugin("/p/a.so", "a", "1", {"a.f"}, R"({"n":2})"), true).ok());
  r->apply(changed);
  REQUIRE(f.factory.made.size() == 3);
  CHECK(f.factory.made[0]->retired);
  r->finished(route.lane);
  r->stop();
}

TEST_CASE("router: a retired process lane is stopped and dropped only once its workers ended", "[router][lifecycle]") {
  Fixture f;
  f.factory.kind = "process";
  auto r = f.router(config_with(1, 0, 1000));
  ferry::Route route;
  REQUIRE_FALSE(r->dispatch({1, 1, 1, 10}, call_of("a.f"), &route).has_value());
  r->apply(config_with(2, 0, 1000));  // a's lane retires with a call left
  FakeExecutor* old = f.factory.made[0];
  CHECK(old->retired);
  CHECK_FALSE(old->ending);
  r->finished(route.lane);  // its last call: its workers are asked to end
  REQUIRE(old->ending);
  CHECK(old->stopped == 0);
  CHECK(r->dispatch({1, 1, 2, 20}, call_of("ferry.status"), &route)->data.find("\"draining_versions\":1") !=
        std::string::npos);
  auto done = std::move(old->ending);
  const int stops = f.factory.stops;
  done();  // they all ended: stopped, and (with the inline runners) dropped
  CHECK(f.factory.stops == stops + 1);
  CHECK(r->dispatch({1, 1, 3, 30}, call_of("ferry.status"), &route)->data.find("\"draining_versions\":0") !=
        std::string::npos);
  r->stop();
}

TEST_CASE("router: ferryd's stop also stops lanes whose workers are still ending", "[router][lifecycle]") {
  Fixture f;
  f.factory.kind = "process";
  auto r = f.router(config_with(1, 0, 1000));
  r->apply(config_with(2, 0, 1000));  // both lanes retire with no call: ending at once
  REQUIRE(f.factory.made[0]->ending);
  REQUIRE(f.factory.made[1]->ending);
  CHECK(f.factory.stops == 0);
  r->stop();
  CHECK(f.factory.stops == 4);  // the two ending lanes too (bounded, in the real pool), not only the live ones
}

TEST_CASE("router: a call names its function's counters; unknown names share one", "[router][metrics]") {
  Fixture f;
  auto r = f.router(config_with(1, 0, 1000));
  ferry::Route route;
  CHECK_FALSE(r->dispatch({1, 1, 1, 10}, call_of("a.f"), &route).has_value());
  REQUIRE(route.metrics == f.metrics.function("a.f"));
  CHECK(route.metrics->plugin->plugin == "a");
  CHECK(route.admitted_ns == 5000 * 1'000'000LL);
  ferry::Route busy;
  REQUIRE(r->dispatch({1, 1, 2, 20}, call_of("a.f"), &busy).has_value());  // busy: counted as a.f too
  CHECK(busy.metrics == route.metrics);
  ferry::Route unknown, bogus;
  REQUIRE(r->dispatch({1, 1, 3, 30}, call_of("zz.top"), &unknown).has_value());
  REQUIRE(r->dispatch({1, 1, 4, 40}, call_of("ferry.bogus"), &bogus).has_value());
  CHECK(unknown.metrics == f.metrics.unknown());
  CHECK(bogus.metrics == f.metrics.unknown());
  // A client's made-up names never become labels.
  const std::string text = ferry::metrics_text(f.metrics.families({}));
  CHECK(text.find("zz") == std::string::npos);
  CHECK(text.find("bogus") == std::string::npos);
  r->stop();
}

TEST_CASE("router: ferry.metrics answers text or json through its handler, and refuses other formats",
          "[router][metrics]") {
  Fixture f;
  auto r = f.router(config_with(1, 0, 1000));
  ferry::Route route;
  CHECK(r->dispatch({1, 1, 1, 10}, call_of("ferry.metrics"), &route)->code == FERRY_E_INTERNAL);  // no handler yet
  r->set_metrics_handler([](std::string_view format) { return "format=" + std::string(format); });
  CHECK(r->dispatch({1, 1, 2, 20}, call_of("ferry.metrics"), &route)->data == "format=text");
  const std::string json_arg = R"(["json"])";
  auto call = call_of("ferry.metrics");
  call.payload = ferry::proto::as_bytes(json_arg);
  CHECK(r->dispatch({1, 1, 3, 30}, call, &route)->data == "format=json");
  const std::string bad_arg = R"(["yaml"])";
  call.payload = ferry::proto::as_bytes(bad_arg);
  CHECK(r->dispatch({1, 1, 4, 40}, call, &route)->code == FERRY_E_BAD_REQUEST);
  CHECK(r->gauges().size() == 2);  // a and b, each with its version and kind
  CHECK(r->gauges()[0].plugin == "a");
  CHECK(r->gauges()[0].executor == "fake");
  r->stop();
}
