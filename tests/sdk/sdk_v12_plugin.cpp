// The plugin test_sdk_v12 drives: the SDK surface of plugin ABI 1.2
// (settings, shutdown hooks, Logger, partial results, cancel_fd, sleep_for).
// Its exported entry points are called directly, through a fake host table.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <ferry/plugin.hpp>

namespace {

// Per-plugin state as the README recommends: made from the settings in the
// block, captured by the functions, released by the shutdown hook.
struct State {
  std::string greeting;
  ferry::Logger log;
};

}  // namespace

FERRY_PLUGIN("v12", "1.2.0") {
  const ferry::Logger early = plugin.logger();
  plugin.on_shutdown([early] { early.info("early hook"); });
  const nlohmann::json& settings = plugin.settings();
  if (settings.value("refuse", false)) throw std::runtime_error("refused: " + settings.value("why", std::string()));
  auto state = std::make_shared<State>(State{settings.value("greeting", std::string("hello")), plugin.logger()});
  plugin.def("greet", [state](const std::string& who) { return state->greeting + ", " + who; });
  plugin.def("settings", [settings] { return settings; });
  plugin.def("count", [](ferry::Context& ctx, int n) {
    for (int i = 1; i <= n; ++i) ctx.emit(i);
    return n;
  });
  plugin.def("nap", [](ferry::Context& ctx, std::int64_t ms) { return ctx.sleep_for(std::chrono::milliseconds(ms)); });
  plugin.def("cancel_fd", [](ferry::Context& ctx) { return ctx.cancel_fd(); });
  plugin.on_shutdown([state] { state->log.info("first hook: " + state->greeting); });
  plugin.on_shutdown([] { throw std::runtime_error("second hook fails"); });
  plugin.on_shutdown([state]() mutable { state->log.info("last registered, first run"); });
}
