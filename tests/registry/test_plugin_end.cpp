// A plugin version's settings and end, against the real "settings" fixture:
// open_plugin hands init its settings and keeps its refusal reason; the last
// reference runs ferry_plugin_fini once, before the unload, right there or
// on a Finalizer's thread, whose stop is bounded.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "plugins/finalizer.hpp"
#include "plugins/invoke.hpp"
#include "plugins/registry.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kFixture = std::string(FERRY_FIXTURE_DIR) + "/fixture_settings.so";

bool mapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::stringstream ss;
  ss << maps.rdbuf();
  return ss.str().find(fs::canonical(path).string()) != std::string::npos;
}

// hooks.log of the fixture, in a fresh directory.
struct HookLog {
  fs::path dir = fs::temp_directory_path() / ("ferry-test-end-" + std::to_string(::getpid()));
  HookLog() { fs::create_directories(dir); }
  ~HookLog() { fs::remove_all(dir); }
  std::string text() const {
    std::ifstream in(dir / "hooks.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  int count(const std::string& what) const {
    std::istringstream in(text());
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.rfind(what + " ", 0) == 0;
    return n;
  }
};

std::string call(const ferry::Prepared& p, const std::string& fn) {
  static const ferry::SystemClock clock;
  static const ferry::Invoker invoker(clock);
  for (const auto& f : p.functions) {
    if (f.name != "settings." + fn) continue;
    const auto r = invoker.invoke(f, "[]", 0);
    REQUIRE(r.ok());
    return *r;
  }
  FAIL("no function settings." << fn);
  return {};
}

// A task that holds the finalizer's thread until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

}  // namespace

TEST_CASE("init gets its plugin's settings; a plugin not listed gets {}", "[registry][settings]") {
  HookLog log;
  const ferry::SettingsMap settings{{"settings", json{{"tag", "t1"}, {"dir", log.dir}, {"n", 7}}.dump()},
                                    {"other", R"({"tag":"not mine"})"}};
  ferry::OpenOptions options;
  options.settings = &settings;
  ferry::Prepared p;
  REQUIRE(ferry::open_plugin(kFixture, options, &p).ok());
  CHECK(json::parse(call(p, "settings")) == json{{"tag", "t1"}, {"dir", log.dir}, {"n", 7}});
  CHECK(p.plugin->settings == settings.at("settings"));  // what the version keeps for its workers
  CHECK(p.plugin->fini != nullptr);

  ferry::Prepared none;
  REQUIRE(ferry::open_plugin(kFixture, {}, &none).ok());
  CHECK(call(none, "settings") == "{}");
  CHECK(none.plugin->settings == "{}");
}

TEST_CASE("an init that refuses its settings is refused with its own reason, and gets no fini", "[registry][settings]") {
  HookLog log;
  const ferry::SettingsMap settings{{"settings", json{{"dir", log.dir}, {"refuse", "no model at /m.bin"}}.dump()}};
  ferry::OpenOptions options;
  options.settings = &settings;
  ferry::Prepared p;
  const ferry::Status st = ferry::open_plugin(kFixture, options, &p);
  CHECK(st.code() == FERRY_E_BAD_REQUEST);
  CHECK(st.message() == "init refused: no model at /m.bin");
  CHECK(p.plugin == nullptr);
  CHECK(log.text().empty());  // its state never existed: nothing to end
}

TEST_CASE("without a finalizer, the last reference runs fini once, then unloads", "[registry][lifecycle]") {
  HookLog log;
  const ferry::SettingsMap settings{{"settings", json{{"tag", "x"}, {"dir", log.dir}}.dump()}};
  ferry::OpenOptions options;
  options.settings = &settings;
  ferry::Registry reg;
  REQUIRE(reg.load(kFixture, options).ok());
  auto fn = reg.find("settings.tag");
  reg.clear();
  CHECK(log.count("init") == 1);
  CHECK(log.count("fini") == 0);  // a function is still referenced
  CHECK(mapped(kFixture));
  fn.reset();
  CHECK(log.count("fini") == 1);
  CHECK_FALSE(mapped(kFixture));
}

TEST_CASE("with a finalizer, fini and the unload run on its thread, in order, after the last reference",
          "[registry][lifecycle]") {
  HookLog log;
  const ferry::SettingsMap settings{{"settings", json{{"tag", "x"}, {"dir", log.dir}}.dump()}};
  auto finalizer = ferry::Finalizer::create();
  REQUIRE(finalizer.ok());
  ferry::OpenOptions options;
  options.settings = &settings;
  options.finalizer = finalizer->get();
  ferry::Prepared p;
  REQUIRE(ferry::open_plugin(kFixture, options, &p).ok());
  Gate gate;
  (*finalizer)->post("gate", [&] { gate.wait(); });  // its thread is busy
  p = {};  // the last reference goes here, on this thread
  CHECK(log.count("fini") == 0);  // not run here: queued behind the gate
  CHECK(mapped(kFixture));        // nor unloaded before its fini
  gate.release();
  REQUIRE((*finalizer)->drain(std::chrono::seconds(20)));
  CHECK(log.count("fini") == 1);
  CHECK_FALSE(mapped(kFixture));
}

TEST_CASE("a finalizer's drain is bounded, and reports a task that does not return", "[registry][lifecycle]") {
  auto finalizer = ferry::Finalizer::create();
  REQUIRE(finalizer.ok());
  Gate gate;
  (*finalizer)->post("stuck 1.0", [&] { gate.wait(); });
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE((*finalizer)->drain(std::chrono::milliseconds(50)));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));  // bounded, whatever the load
  gate.release();
  CHECK((*finalizer)->drain(std::chrono::seconds(20)));
  int ran = 0;
  for (int i = 0; i < 3; ++i) (*finalizer)->post("n", [&ran, i] { ran = ran * 10 + i + 1; });
  CHECK((*finalizer)->drain(std::chrono::seconds(20)));
  CHECK(ran == 123);  // in the order posted
}

TEST_CASE("a plugin built against ABI 1.0 or 1.1 has no fini: it still ends, and unloads", "[registry][lifecycle]") {
  for (const char* name : {"legacy10", "legacy11"}) {
    INFO(name);
    const std::string file = std::string(FERRY_FIXTURE_DIR) + "/" + name + ".so";
    auto finalizer = ferry::Finalizer::create();
    REQUIRE(finalizer.ok());
    ferry::OpenOptions options;
    options.finalizer = finalizer->get();
    ferry::Prepared p;
    REQUIRE(ferry::open_plugin(file, options, &p).ok());
    CHECK(p.plugin->fini == nullptr);
    p = {};
    REQUIRE((*finalizer)->drain(std::chrono::seconds(20)));
    CHECK_FALSE(mapped(file));
  }
}
