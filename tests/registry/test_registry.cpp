// The plugin registry against real fixture libraries.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <tuple>
#include <vector>

#include "fake_clock.hpp"

#include "plugins/invoke.hpp"
#include "plugins/registry.hpp"

namespace fs = std::filesystem;
using ferry::Registry;

namespace {

std::string fixture(const std::string& name) {
  return std::string(FERRY_FIXTURE_DIR) + "/" + name + ".so";
}

bool mapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::stringstream ss;
  ss << maps.rdbuf();
  return ss.str().find(fs::canonical(path).string()) != std::string::npos;
}

struct Outcome {
  ferry_code code;
  std::string data;  // the result, or the error message
};

Outcome call(const ferry::Function& fn, const std::string& payload) {
  static const ferry::SystemClock clock;
  static const ferry::Invoker invoker(clock);
  const ferry::Result<std::string> r = invoker.invoke(fn, payload, /*deadline_ms=*/0);
  return r.ok() ? Outcome{FERRY_OK, *r} : Outcome{r.status().code(), r.status().message()};
}

}  // namespace

TEST_CASE("a good plugin loads and its functions are callable", "[registry]") {
  Registry reg;
  REQUIRE(reg.load(fixture("fixture_good")).ok());
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0]->name == "good");
  CHECK(reg.plugins()[0]->version == "1.0.0");
  auto fn = reg.find("good.add");
  REQUIRE(fn != nullptr);
  auto out = call(*fn, "[2,3]");
  CHECK(out.code == FERRY_OK);
  CHECK(out.data == "5");
  CHECK(reg.find("good.nothing") == nullptr);
  CHECK(reg.find("good") == nullptr);
}

TEST_CASE("a library built for another ABI major is refused with both versions", "[registry]") {
  Registry reg;
  const ferry::Status st = reg.load(fixture("fixture_wrong_abi"));
  CHECK(st.code() == FERRY_E_UNSUPPORTED_VERSION);
  CHECK_THAT(st.message(), Catch::Contains("ABI 2.") && Catch::Contains("supports ABI 1."));
  CHECK(reg.plugins().empty());
}

TEST_CASE("a library that is not a plugin is refused", "[registry]") {
  Registry reg;
  CHECK_THAT(reg.load(fixture("fixture_not_plugin")).message(), Catch::Contains("not a Ferry plugin"));
  const fs::path junk = fs::temp_directory_path() / "ferry-junk.so";
  std::ofstream(junk) << "this is not an ELF file";
  CHECK_THAT(reg.load(junk).message(), Catch::Contains("cannot load"));
  fs::remove(junk);
  CHECK(reg.plugins().empty());
}

TEST_CASE("duplicate names are refused and the first plugin keeps serving", "[registry]") {
  Registry reg;
  CHECK_THAT(reg.load(fixture("fixture_dup_fn")).message(), Catch::Contains("registered twice"));
  REQUIRE(reg.load(fixture("fixture_good")).ok());
  CHECK_THAT(reg.load(fixture("fixture_dup_plugin")).message(), Catch::Contains("duplicate plugin name 'good'"));
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0]->path == fs::absolute(fixture("fixture_good")));
  CHECK(call(*reg.find("good.hello"), "[]").data == "\"world\"");
}

TEST_CASE("each plugin file of a directory loads on its own; refused ones leave the rest", "[registry]") {
  Registry reg;
  // What ferryd does with plugin_dir: plugin_files in name order, one load each.
  std::set<std::string> loaded, refused;
  for (const fs::path& file : ferry::plugin_files(FERRY_FIXTURE_DIR)) {
    (reg.load(file).ok() ? loaded : refused).insert(file.stem().string());
  }
  // A name goes to the first file in name order: fixture_dup_plugin ("good")
  // before fixture_good, ops v1 before ops v2.
  CHECK(loaded ==
        std::set<std::string>{"fixture_c", "fixture_dup_plugin", "fixture_hostile", "fixture_latch", "fixture_logs",
                              "fixture_ops_v1", "legacy10", "legacy11"});
  CHECK(refused ==
        std::set<std::string>{"fixture_dup_fn", "fixture_good", "fixture_not_plugin", "fixture_ops_v2", "fixture_wrong_abi"});
  CHECK(reg.plugins().size() == 8);
  REQUIRE(reg.find("good.hello") != nullptr);
  CHECK(call(*reg.find("good.hello"), "[]").data == "\"duplicate\"");
  CHECK(reg.find("latch.wait") != nullptr);
  CHECK(call(*reg.find("ops.version"), "[]").data == "\"1\"");
}

TEST_CASE("a library stays mapped while a function of it is referenced", "[registry]") {
  Registry reg;
  REQUIRE(reg.load(fixture("fixture_good")).ok());
  auto fn = reg.find("good.hello");
  reg.clear();
  CHECK(mapped(fixture("fixture_good")));
  CHECK(call(*fn, "[]").data == "\"world\"");
  fn.reset();
  CHECK_FALSE(mapped(fixture("fixture_good")));
}

TEST_CASE("a new version replaces a plugin; the old one unloads after its last call", "[registry]") {
  Registry reg;
  REQUIRE(reg.load(fixture("fixture_ops_v1")).ok());
  auto old_fn = reg.find("ops.version");
  CHECK_FALSE(reg.load(fixture("fixture_ops_v2")).ok());  // without replace: a duplicate
  ferry::Prepared v2;
  REQUIRE(ferry::open_plugin(fixture("fixture_ops_v2"), {}, &v2).ok());
  v2.plugin->source = "/plugins/ops.so";
  REQUIRE(reg.install(std::move(v2), /*replace=*/true).ok());
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0]->version == "2");
  CHECK(reg.plugins()[0]->source == "/plugins/ops.so");
  CHECK_FALSE(reg.plugins()[0]->loaded_at.empty());
  CHECK(call(*reg.find("ops.version"), "[]").data == "\"2\"");
  // A call still holding the old version runs the old code, then lets it go.
  CHECK(mapped(fixture("fixture_ops_v1")));
  CHECK(call(*old_fn, "[]").data == "\"1\"");
  old_fn.reset();
  CHECK_FALSE(mapped(fixture("fixture_ops_v1")));
  reg.remove("ops");
  CHECK(reg.find("ops.version") == nullptr);
  CHECK(reg.plugins().empty());
  CHECK_FALSE(mapped(fixture("fixture_ops_v2")));
}

TEST_CASE("two invokers in one process keep their own directory and depth limit", "[registry][invoke]") {
  Registry reg;
  REQUIRE(reg.load(fixture("fixture_ops_v1")).ok());
  const auto fn = reg.find("ops.recurse");
  REQUIRE(fn != nullptr);
  const ferry::SystemClock clock;
  ferry::Invoker deep(clock, 10), shallow(clock, 3), blind(clock, 64);
  deep.publish(ferry::directory_of(reg));
  shallow.publish(ferry::directory_of(reg));  // `blind` publishes nothing: nested calls find no function
  const auto r_deep = deep.invoke(*fn, "[5]", 0);
  REQUIRE(r_deep.ok());
  CHECK(*r_deep == "5");
  const auto r_shallow = shallow.invoke(*fn, "[5]", 0);
  REQUIRE_FALSE(r_shallow.ok());
  CHECK_THAT(r_shallow.status().message(), Catch::Contains("max_call_depth 3"));
  const auto r_blind = blind.invoke(*fn, "[1]", 0);
  REQUIRE_FALSE(r_blind.ok());
  CHECK_THAT(r_blind.status().message(), Catch::Contains("unknown function 'ops.recurse'"));
}

namespace {

// What a plugin's lines came to: (level, call id, text), and drop counts.
struct CaptureSink final : ferry::LogSink {
  std::mutex mu;
  std::vector<std::tuple<int, std::uint64_t, std::string>> lines;
  std::uint64_t dropped_total = 0;
  int summaries = 0;
  void write(int level, std::string_view, std::uint64_t call_id, std::string_view text) override {
    std::lock_guard lock(mu);
    lines.emplace_back(level, call_id, std::string(text));
  }
  void dropped(std::string_view, std::uint64_t n) override {
    std::lock_guard lock(mu);
    dropped_total += n;
    ++summaries;
  }
};

}  // namespace

TEST_CASE("a plugin's log lines, from calls and its own threads, pass one bound per load", "[registry][log]") {
  ferry::FakeClock clock;
  CaptureSink sink;
  ferry::Invoker invoker(clock, 64, &sink);
  Registry reg;
  REQUIRE(reg.load(fixture("fixture_logs"), ferry::OpenOptions{.log = &sink, .clock = &clock}).ok());
  const ferry::CallEnv env{41};
  REQUIRE(invoker.invoke(*reg.find("logs.hello"), R"(["a"])", 0, env).ok());
  REQUIRE(invoker.invoke(*reg.find("logs.background"), R"(["b"])", 0, env).ok());
  REQUIRE(sink.lines.size() == 2);
  CHECK(sink.lines[0] == std::make_tuple(int(FERRY_LOG_INFO), std::uint64_t(41), std::string("hello a")));
  CHECK(sink.lines[1] == std::make_tuple(int(FERRY_LOG_INFO), std::uint64_t(0), std::string("background b")));
  // A flood: the rest of the burst gets through; the drops are told once the call ends.
  REQUIRE(invoker.invoke(*reg.find("logs.flood"), "[1000]", 0, env).ok());
  CHECK(sink.lines.size() == std::size_t(ferry::LogLimiter::kBurst));
  CHECK(sink.dropped_total == 1000 - (ferry::LogLimiter::kBurst - 2));
  CHECK(sink.summaries == 1);
  // Within the same second, the next call's drops wait: at most one summary a second.
  REQUIRE(invoker.invoke(*reg.find("logs.flood"), "[10]", 0, env).ok());
  CHECK(sink.summaries == 1);
  clock.advance(100);  // 10 lines' worth of tokens
  REQUIRE(invoker.invoke(*reg.find("logs.flood"), "[15]", 0, env).ok());
  CHECK(sink.lines.size() == std::size_t(ferry::LogLimiter::kBurst) + 10);
  clock.advance(1000);
  REQUIRE(invoker.invoke(*reg.find("logs.quiet"), "[]", 0, env).ok());
  CHECK(sink.summaries == 2);
  CHECK(sink.dropped_total == 1000 - (ferry::LogLimiter::kBurst - 2) + 10 + 5);
}
