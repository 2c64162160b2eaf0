// Fixture "settings": its [plugins.settings.settings] and its life cycle,
// for the settings and shutdown-hook tests. Settings it reads:
//   tag     a string its functions report, to tell versions apart
//   dir     a directory: init appends "init TAG LOAD" to DIR/hooks.log, the
//           shutdown hook "fini TAG LOAD" (LOAD: this load's id)
//   refuse  a string: init throws it, so the plugin is refused with it
// Functions:
//   settings()      -> plugin.settings(), as init got them
//   tag()           -> the tag
//   load()          -> this load's id (a new load: new statics, new id)
//   wait_file(name) -> {"tag", "load"} once DIR/name exists; cancelled
//                      (ctx.sleep_for) when the call is
//   spin(ms)        -> the tag after ms, never looking at cancellation
// It keeps its state the way README's "Writing a plugin" shows: one object
// made from the settings in the block, captured by the functions and the hook.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <ferry/plugin.hpp>

namespace {

struct State {
  explicit State(const nlohmann::json& s)
      : settings(s), tag(s.value("tag", "")), dir(s.value("dir", "")), load(load_id()) {
    if (s.contains("refuse")) throw std::runtime_error(s["refuse"].get<std::string>());
  }

  // One write per line, appended: lines of concurrent processes never mix.
  void note(const std::string& what) const {
    if (dir.empty()) return;
    const std::string line = what + " " + tag + " " + load + "\n";
    const int fd = ::open((dir + "/hooks.log").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return;  // e.g. a describing worker, whose sandbox has no write_paths
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  }

  // Unique per load: the monotonic clock, and the pid (in thread mode).
  static std::string load_id() {
    const auto ns = std::chrono::steady_clock::now().time_since_epoch().count();
    return std::to_string(::getpid()) + "-" + std::to_string(ns);
  }

  const nlohmann::json settings;
  const std::string tag, dir, load;
};

}  // namespace

FERRY_PLUGIN("settings", "1.0.0") {
  auto state = std::make_shared<State>(plugin.settings());  // throws: refused with its reason
  state->note("init");
  plugin.def("settings", [state] { return state->settings; });
  plugin.def("tag", [state] { return state->tag; });
  plugin.def("load", [state] { return state->load; });
  plugin.def("wait_file", [state](ferry::Context& ctx, const std::string& name) {
    while (!std::filesystem::exists(state->dir + "/" + name)) {
      if (!ctx.sleep_for(std::chrono::milliseconds(5))) throw ferry::Error(FERRY_E_CANCELLED, "cancelled");
    }
    return nlohmann::json{{"tag", state->tag}, {"load", state->load}};
  });
  plugin.def("spin", [state](std::int64_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return state->tag;
  });
  plugin.on_shutdown([state] { state->note("fini"); });
}
