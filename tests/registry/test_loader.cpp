// describe_plugin through a scripted Launcher: what a describing worker says
// decides whether a refusal blames the file or may pass (is_passing), which
// decides when the file is tried again.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "plugins/loader.hpp"
#include "worker/channel.hpp"
#include "worker/spec.hpp"

namespace {

namespace ch = ferry::channel;

// Hands out a "worker" that is one end of a socketpair, on whose other end
// the scripted first message is already waiting (or nothing, then EOF). With
// `fail`, it cannot start anything.
class ScriptedLauncher final : public ferry::Launcher {
 public:
  bool fail = false;
  std::optional<std::pair<ch::Type, std::string>> says;  // the worker's first message
  int log_lines = 0;  // LOG messages (its plugin's init logging) before it
  std::string prints;  // written to its stdout before it
  int reaped = 0;
  int ended = 0;         // asked to end normally (end())
  std::string spec;      // the first message it was given

  ferry::Result<ferry::SpawnedWorker> spawn(const ferry::sandbox::Spec&, std::string_view first) override {
    spec = first;
    if (fail) return ferry::Status::Errno("clone3", EAGAIN);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    for (int i = 0; i < log_lines; ++i) REQUIRE(ch::send(sv[1], ch::Header{ch::Type::log}, "init says hi").ok());
    if (says) REQUIRE(ch::send(sv[1], ch::Header{says->first}, says->second).ok());
    ::close(sv[1]);  // the worker is gone after its message
    int out[2] = {-1, -1};
    if (!prints.empty()) {
      REQUIRE(::pipe2(out, O_CLOEXEC | O_NONBLOCK) == 0);
      REQUIRE(::write(out[1], prints.data(), prints.size()) == ssize_t(prints.size()));
      ::close(out[1]);
    }
    return ferry::SpawnedWorker{12345, -1, sv[0], out[0]};
  }
  void spawn_async(ferry::sandbox::Spec, std::string,
                   std::function<void(ferry::Result<ferry::SpawnedWorker>)>) override {}
  void wait_idle() override {}
  void kill(const ferry::SpawnedWorker&) override {}
  std::optional<ferry::WorkerExit> try_reap(const ferry::SpawnedWorker&) override { return std::nullopt; }
  void end(const ferry::SpawnedWorker&) override { ++ended; }
  void kill_and_reap(ferry::SpawnedWorker* w) override {
    ++reaped;
    if (w->channel >= 0) ::close(w->channel);
    if (w->out >= 0) ::close(w->out);
    *w = {};
  }
};

ferry::Result<ferry::PluginDescription> describe(ScriptedLauncher& launcher) {
  return ferry::describe_plugin(launcher, "/p/x.so", ferry::sandbox::Spec{});
}

}  // namespace

TEST_CASE("a worker's description of the file is returned, and the worker reaped", "[loader]") {
  ScriptedLauncher l;
  l.says = {{ch::Type::ready, R"({"name":"x","version":"2","functions":["x.a","x.b"]})"}};
  const auto d = describe(l);
  REQUIRE(d.ok());
  CHECK(d->name == "x");
  CHECK(d->version == "2");
  CHECK(d->functions == std::vector<std::string>{"x.a", "x.b"});
  CHECK(l.ended == 1);  // described: asked to end normally (its init gets its fini) ...
  CHECK(l.reaped == 1);  // ... and reaped
}

TEST_CASE("the describing worker's spec carries every plugin's settings: it learns its name by loading",
          "[loader][settings]") {
  ScriptedLauncher l;
  l.says = {{ch::Type::ready, R"({"name":"x","version":"2","functions":["x.a"]})"}};
  const ferry::config::SettingsMap settings{{"x", R"({"model":"/m.bin"})"}, {"y", "{}"}};
  REQUIRE(ferry::describe_plugin(l, "/p/x.so", ferry::sandbox::Spec{}, settings).ok());
  const auto spec = ferry::decode_worker_spec(l.spec);
  REQUIRE(spec.ok());
  CHECK(spec->plugin_path == "/p/x.so");
  CHECK(spec->settings == settings);
}

TEST_CASE("settings_key: a known plugin's own settings, an unknown file's every plugin's", "[loader][settings]") {
  auto cfg = ferry::config::parse_config_text("[plugins.x.settings]\nn = 1\n[plugins.y.settings]\nn = 2\n",
                                              "/etc/ferry/server.toml");
  REQUIRE(cfg.ok());
  CHECK(ferry::settings_key(*cfg, "x") == R"({"n":1})");
  CHECK(ferry::settings_key(*cfg, "unlisted") == "{}");
  const std::string all = ferry::settings_key(*cfg, "");
  CHECK_THAT(all, Catch::Contains(R"("x")") && Catch::Contains(R"("y")"));
  auto changed = ferry::config::parse_config_text("[plugins.x.settings]\nn = 1\n[plugins.y.settings]\nn = 3\n",
                                                  "/etc/ferry/server.toml");
  REQUIRE(changed.ok());
  CHECK(ferry::settings_key(*changed, "x") == ferry::settings_key(*cfg, "x"));  // y's change: not x's business
  CHECK(ferry::settings_key(*changed, "") != all);  // but an unknown file may be y: tried again
}

TEST_CASE("a file the worker refuses blames the file; a worker that cannot start may pass", "[loader]") {
  ScriptedLauncher refused;
  refused.says = {{ch::Type::failed, "plugin /p/x.so refused: not a Ferry plugin"}};
  const auto r = describe(refused);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("not a Ferry plugin"));
  CHECK_FALSE(ferry::is_passing(r.status()));  // tried again once the file changes
  CHECK(refused.reaped == 1);
  CHECK(refused.ended == 0);  // its init failed: nothing to end normally

  ScriptedLauncher garbled;
  garbled.says = {{ch::Type::ready, "not json"}};
  CHECK_FALSE(ferry::is_passing(describe(garbled).status()));

  ScriptedLauncher died;  // exits without a word while loading the file
  const auto d = describe(died);
  REQUIRE_FALSE(d.ok());
  CHECK_THAT(d.status().message(), Catch::Contains("exited while loading"));
  CHECK_FALSE(ferry::is_passing(d.status()));

  ScriptedLauncher no_process;
  no_process.fail = true;
  const auto n = describe(no_process);
  REQUIRE_FALSE(n.ok());
  CHECK(ferry::is_passing(n.status()));  // tried again at every sync
  CHECK(no_process.reaped == 0);
}

TEST_CASE("what the describing worker logs and prints is passed over", "[loader]") {
  ScriptedLauncher l;
  l.log_lines = 100;  // its plugin's init logging: read and dropped
  l.prints = std::string(50000, 'p') + "\n";
  l.says = {{ch::Type::ready, R"({"name":"x","version":"2","functions":["x.a"]})"}};
  const auto d = describe(l);
  REQUIRE(d.ok());
  CHECK(d->name == "x");
  CHECK(l.reaped == 1);
}
