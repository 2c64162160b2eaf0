// [plugins.NAME.settings]: any TOML becomes the text of a JSON object in
// PluginConfig::settings, "{}" without a table; [defaults] cannot hold one;
// values JSON cannot hold are refused with file, line and key.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

using namespace ferry::config;
using nlohmann::json;

namespace {

Config parse_ok(std::string_view text) {
  ferry::Result<Config> r = parse_config_text(text, "test.toml");
  INFO(r.status().message());
  REQUIRE(r.ok());
  return *r;
}

std::string parse_error(std::string_view text) {
  ferry::Result<Config> r = parse_config_text(text, "test.toml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == FERRY_E_BAD_REQUEST);
  return r.status().message();
}

// The settings of plugin x in `text`, parsed back from their JSON text.
json settings_of_x(std::string_view text) {
  const Config cfg = parse_ok(text);
  const std::string& s = cfg.plugin("x").settings;
  const json j = json::parse(s);
  CHECK(j.dump() == s);  // compact, keys sorted: equal settings compare equal as text
  return j;
}

}  // namespace

TEST_CASE("settings: every TOML type becomes its JSON form", "[config][settings]") {
  const json j = settings_of_x(R"([plugins.x.settings]
name = "cache"
size = 1024
negative = -7
ratio = 0.25
big = 9007199254740993
on = true
off = false
list = [1, "two", 3.5, [true]]
empty_list = []
day = 1979-05-27
at = 07:32:00.999
local = 1979-05-27T07:32:00
utc = 1979-05-27T07:32:00Z
zoned = 1979-05-27T00:32:00-07:00
inline = { a = 1, b = { c = "d" } }
[plugins.x.settings.nested]
deeper = { list = [{ k = "v" }] }
[[plugins.x.settings.servers]]
host = "a"
[[plugins.x.settings.servers]]
host = "b"
)");
  CHECK(j["name"] == "cache");
  CHECK(j["size"] == 1024);
  CHECK(j["negative"] == -7);
  CHECK(j["ratio"] == 0.25);
  CHECK(j["big"].get<std::int64_t>() == 9007199254740993);  // 64-bit integers stay exact
  CHECK(j["on"] == true);
  CHECK(j["off"] == false);
  CHECK(j["list"] == json::parse(R"([1, "two", 3.5, [true]])"));
  CHECK(j["empty_list"] == json::array());
  CHECK(j["day"] == "1979-05-27");
  CHECK(j["at"] == "07:32:00.999");
  CHECK(j["local"] == "1979-05-27T07:32:00");
  CHECK(j["utc"] == "1979-05-27T07:32:00Z");
  CHECK(j["zoned"] == "1979-05-27T00:32:00-07:00");
  CHECK(j["inline"] == json::parse(R"({"a": 1, "b": {"c": "d"}})"));
  CHECK(j["nested"]["deeper"]["list"][0]["k"] == "v");
  CHECK(j["servers"] == json::parse(R"([{"host": "a"}, {"host": "b"}])"));
}

TEST_CASE("settings: none is {}; unicode survives; the rest of the section still applies", "[config][settings]") {
  const Config cfg = parse_ok("[plugins.x]\nworkers = 2\n[plugins.y.settings]\n\"ключ\" = \"значение ✓\"\n");
  CHECK(cfg.plugin("x").settings == "{}");
  CHECK(cfg.plugin("x").workers == 2);
  CHECK(cfg.plugin("unlisted").settings == "{}");
  CHECK(json::parse(cfg.plugin("y").settings)["ключ"] == "значение ✓");
  CHECK(cfg.settings() == SettingsMap{{"x", "{}"}, {"y", cfg.plugin("y").settings}});
}

TEST_CASE("settings: a change is a different PluginConfig", "[config][settings]") {
  const Config a = parse_ok("[plugins.x.settings]\nn = 1\n");
  const Config b = parse_ok("[plugins.x.settings]\nn = 2\n");
  const Config a2 = parse_ok("[plugins.x]\nsettings = { n = 1 }\n");  // another spelling, same settings
  CHECK_FALSE(a.plugin("x") == b.plugin("x"));
  CHECK(a.plugin("x") == a2.plugin("x"));
}

TEST_CASE("settings: refused in [defaults], and when not a table", "[config][settings]") {
  CHECK(parse_error("[defaults]\nworkers = 2\n[defaults.settings]\nn = 1\n") ==
        "test.toml:3: defaults.settings: settings are per plugin: put them in [plugins.NAME.settings]");
  CHECK(parse_error("[defaults]\nsettings = {}\n") ==
        "test.toml:2: defaults.settings: settings are per plugin: put them in [plugins.NAME.settings]");
  CHECK(parse_error("[plugins.x]\nsettings = 3\n") == "test.toml:2: plugins.x.settings: must be a table");
}

TEST_CASE("settings: inf and nan have no JSON form and are refused by key", "[config][settings]") {
  CHECK(parse_error("[plugins.x.settings]\nlimits = { high = inf }\n") ==
        "test.toml:2: plugins.x.settings.limits.high: must be a finite number (JSON has no inf or nan)");
  CHECK(parse_error("[plugins.x.settings]\nok = 1\nl = [1.0, -nan]\n") ==
        "test.toml:3: plugins.x.settings.l[1]: must be a finite number (JSON has no inf or nan)");
}

TEST_CASE("settings: all plugins' together are bounded (they travel in worker specs)", "[config][settings]") {
  const std::string big(200 * 1024, 'a');
  std::string toml;
  for (const char* name : {"a", "b"}) toml += std::string("[plugins.") + name + ".settings]\ns = \"" + big + "\"\n";
  parse_ok(toml);
  toml += "[plugins.c.settings]\ns = \"" + big + "\"\n";
  CHECK(parse_error(toml) == "test.toml:5: plugins.c.settings: the settings of all plugins together exceed 512 KiB as JSON");
}

TEST_CASE("settings: the commented example in config/server.toml parses", "[config][settings]") {
  std::ifstream in(std::string(FERRY_SOURCE_DIR) + "/config/server.toml");
  std::string line, example;
  bool in_example = false;
  while (std::getline(in, line)) {
    if (line.find("#   [plugins.") == 0 && line.find(".settings]") != std::string::npos) in_example = true;
    if (in_example && line.rfind("#   ", 0) != 0) break;
    if (in_example) example += line.substr(4) + "\n";
  }
  REQUIRE_FALSE(example.empty());
  const Config cfg = parse_ok(example);
  REQUIRE(cfg.plugins.size() == 1);
  CHECK(json::parse(cfg.plugins.begin()->second.settings).size() >= 2);
}
