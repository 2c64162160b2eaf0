// Plugin ABI compatibility, end to end: plugins built against the frozen SDK
// headers of ABI 1.0 and 1.1 (tests/plugins/abi/) and a plain C plugin
// against plugin.h alone load and run in today's ferryd, in both executors.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <string>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"

using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::plugin_status;
using ferry::test::status_until;
using ferry::test::wait_until;
using json = nlohmann::json;

namespace {

std::string config(const std::string& executor) {
  std::string toml;
  for (const char* name : {"legacy10", "legacy11", "cplugin"}) {
    toml += std::string("[plugins.") + name + "]\nexecutor = \"" + executor + "\"\nworkers = 1\n";
  }
  return toml;
}

}  // namespace

TEST_CASE("plugins built against ABI 1.0 and 1.1 headers, and a C plugin, still work", "[integration][abi]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({fixture_path("legacy10"), fixture_path("legacy11"), fixture_path("fixture_c")}, config(executor));
  auto c = connect(d);
  for (const char* name : {"legacy10", "legacy11"}) {
    INFO(name);
    const std::string plugin = name;
    REQUIRE(plugin_status(*c, plugin)["executor"] == executor);
    CHECK(must_call(*c, plugin + ".abi", "[]").data == (plugin == "legacy10" ? "\"1.0\"" : "\"1.1\""));
    CHECK(must_call(*c, plugin + ".add", "[2,40]").data == "42");
    CHECK(must_call(*c, plugin + ".echo", "raw \x01 bytes").data == "raw \x01 bytes");
    // ctx.cancelled() of the old SDK sees the deadline; in thread mode its
    // ctx.info line reaches ferryd's log.
    CHECK(must_call(*c, plugin + ".wait_cancel", "[20000]", 100).code == FERRY_E_TIMEOUT);
    status_until(*c, plugin, [](const json& st) { return st["running"] == 0; }, "the call returned");
    CHECK(plugin_status(*c, plugin)["restarts"] == 0);  // process mode: it returned in time, no kill
  }
  if (executor == "thread") {
    wait_until([&] { return d.log().find("[legacy10] call") != std::string::npos &&
                            d.log().find("[legacy11] call") != std::string::npos; },
               "both legacy plugins' log lines");
  }
  CHECK(must_call(*c, "cplugin.greet", "world").data == "hello, world");
  CHECK(json::parse(must_call(*c, "cplugin.settings", "").data) == json::object());
}
