// PartialWindow: a streamed call's partials go to the sink in order, with at
// most a window of them on their way; emit() waits for credit and returns
// as soon as the call is cancelled or passes its deadline.
#include <catch2/catch.hpp>

#include "fake_clock.hpp"

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/call_control.hpp"
#include "exec/partial_window.hpp"

using ferry::Completion;
using ferry::kPartialWindowBytes;
using ferry::kPartialWindowCount;
using ferry::PartialWindow;

namespace {

// Keeps what the window sends (as the loop's queue would). Thread-safe.
class Sink final : public ferry::CompletionSink {
 public:
  void complete(Completion&& c) override {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(c));
  }
  std::vector<Completion> items() {
    std::lock_guard lock(mu_);
    return items_;
  }

 private:
  std::mutex mu_;
  std::vector<Completion> items_;
};

struct Fixture {
  Sink sink;
  ferry::FakeClock clock;
  ferry::CallControl control;
  std::shared_ptr<PartialWindow> window;
  explicit Fixture(std::int64_t deadline_ms = 0)
      : window(std::make_shared<PartialWindow>(ferry::CallRef{1, 2, 3, 4}, deadline_ms, sink, clock)) {
    control.reset(deadline_ms);
  }
  std::future<ferry_code> emit_async(std::string data) {
    return std::async(std::launch::async, [this, data] { return window->emit(data, &control); });
  }
};

// A blocked emit() cannot complete while nothing releases it: a short wait
// that a wrongly unblocked emit() would fail at once.
bool still_blocked(std::future<ferry_code>& f) {
  return f.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout;
}

}  // namespace

TEST_CASE("partial window: partials reach the sink in order, each carrying the window as its credit") {
  Fixture fx;
  for (int i = 0; i < 100; ++i) REQUIRE(fx.window->emit(std::to_string(i), &fx.control) == FERRY_OK);
  const auto items = fx.sink.items();
  REQUIRE(items.size() == 100);
  for (int i = 0; i < 100; ++i) {
    CHECK(items[i].data == std::to_string(i));
    CHECK(items[i].ref == ferry::CallRef{1, 2, 3, 4});
    CHECK(items[i].code == FERRY_OK);
    CHECK(items[i].partial == fx.window);
  }
}

TEST_CASE("partial window: emit() waits once a window's count is out, until credit comes back") {
  Fixture fx;
  for (std::size_t i = 0; i < kPartialWindowCount; ++i) REQUIRE(fx.window->emit("p", &fx.control) == FERRY_OK);
  auto blocked = fx.emit_async("next");
  CHECK(still_blocked(blocked));
  fx.window->give_back(1, 1);
  CHECK(blocked.get() == FERRY_OK);
  CHECK(fx.sink.items().back().data == "next");
}

TEST_CASE("partial window: emit() waits once a window's bytes are out; one larger partial goes alone") {
  Fixture fx;
  const std::string big(kPartialWindowBytes + 1, 'x');
  REQUIRE(fx.window->emit(big, &fx.control) == FERRY_OK);  // an empty window takes any one partial
  auto blocked = fx.emit_async("y");
  CHECK(still_blocked(blocked));
  fx.window->give_back(1, big.size());
  CHECK(blocked.get() == FERRY_OK);
  const std::string half(kPartialWindowBytes / 2, 'h');
  REQUIRE(fx.window->emit(half, &fx.control) == FERRY_OK);
  auto over = fx.emit_async(half);  // y + half + half > the window
  CHECK(still_blocked(over));
  fx.window->give_back(2, 1 + half.size());
  CHECK(over.get() == FERRY_OK);
  CHECK(fx.sink.items().size() == 4);
}

TEST_CASE("partial window: a cancelled call's waiting emit() returns cancelled, sending nothing") {
  Fixture fx;
  for (std::size_t i = 0; i < kPartialWindowCount; ++i) REQUIRE(fx.window->emit("p", &fx.control) == FERRY_OK);
  auto blocked = fx.emit_async("never");
  CHECK(still_blocked(blocked));
  fx.control.cancel();
  fx.window->wake();
  CHECK(blocked.get() == FERRY_E_CANCELLED);
  CHECK(fx.sink.items().size() == kPartialWindowCount);
}

TEST_CASE("partial window: past its deadline a waiting emit() returns timeout") {
  Fixture fx(5000);
  for (std::size_t i = 0; i < kPartialWindowCount; ++i) REQUIRE(fx.window->emit("p", &fx.control) == FERRY_OK);
  auto blocked = fx.emit_async("late");
  CHECK(still_blocked(blocked));
  fx.clock.set(5000);
  fx.window->wake();  // the loop cancels at the deadline; the wait also ends by itself on a real clock
  CHECK(blocked.get() == FERRY_E_TIMEOUT);
}

TEST_CASE("partial window: credit given back after the call ended changes nothing") {
  Fixture fx;
  REQUIRE(fx.window->emit("a", &fx.control) == FERRY_OK);
  fx.window->give_back(5, 500);  // more than was out: clamped, not wrapped
  for (std::size_t i = 0; i < kPartialWindowCount; ++i) REQUIRE(fx.window->emit("p", &fx.control) == FERRY_OK);
  auto blocked = fx.emit_async("b");
  CHECK(still_blocked(blocked));  // the window is still exactly kPartialWindowCount
  fx.window->give_back(1, 1);
  CHECK(blocked.get() == FERRY_OK);
}
