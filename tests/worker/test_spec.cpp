// The worker spec: one field table (sandbox::kSpecFields) drives its JSON
// both ways and the config's [plugins.NAME.sandbox] keys.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "config/config.hpp"
#include "sandbox/fields.hpp"
#include "worker/spec.hpp"

namespace {

using ferry::WorkerSpec;

// Every field away from its default, so a field the codec drops shows.
WorkerSpec unusual_spec() {
  WorkerSpec w;
  w.plugin_path = "/srv/ferry/plugins/p.so";
  w.max_call_depth = 7;
  w.settings = {{"p", R"({"model":{"path":"/m.bin"},"n":[1,2.5,"x"]})"}, {"q", "{}"}, {"\u00fcml", R"({"k":"\u2713"})"}};
  ferry::sandbox::Spec& s = w.sandbox;
  s.enabled = false;
  s.network = true;
  s.read_paths = {"/data", "/srv/in"};
  s.write_paths = {"/tmp/out"};
  s.memory_mb = 333;
  s.cpu_seconds = 44;
  s.max_files = 55;
  s.max_procs = 66;
  s.seccomp = false;
  s.allow_weaker = true;
  return w;
}

}  // namespace

TEST_CASE("a worker spec survives encode and decode, every field", "[spec]") {
  const WorkerSpec w = unusual_spec();
  REQUIRE_FALSE(w.sandbox == ferry::sandbox::Spec{});
  const ferry::Result<WorkerSpec> back = ferry::decode_worker_spec(ferry::encode_worker_spec(w));
  REQUIRE(back.ok());
  CHECK(*back == w);
}

TEST_CASE("the spec's JSON has exactly the table's keys, plus plugin, max_call_depth and settings", "[spec]") {
  const auto j = nlohmann::json::parse(ferry::encode_worker_spec(unusual_spec()));
  std::set<std::string> keys;
  for (const auto& [k, _] : j.items()) keys.insert(k);
  std::set<std::string> expected = {"plugin", "max_call_depth", "settings"};
  for (const auto& f : ferry::sandbox::kSpecFields) expected.insert(std::string(f.key));
  CHECK(keys == expected);
  CHECK(expected.size() == 3 + std::size(ferry::sandbox::kSpecFields));  // no key twice
  // Settings travel as the exact text the plugin's init gets.
  CHECK(j["settings"]["p"] == R"({"model":{"path":"/m.bin"},"n":[1,2.5,"x"]})");
}

TEST_CASE("every field of the table is a key of [plugins.NAME.sandbox]", "[spec]") {
  for (const auto& f : ferry::sandbox::kSpecFields) {
    INFO(f.key);
    const std::string value = f.flag ? "true" : f.number ? std::to_string(f.min) : "[\"/srv\"]";
    const std::string text = "[plugins.p.sandbox]\n" + std::string(f.key) + " = " + value + "\n";
    const auto parsed = ferry::config::parse_config_text(text, "/etc/ferry/server.toml");
    CHECK(parsed.ok());
  }
  const auto unknown = ferry::config::parse_config_text("[plugins.p.sandbox]\nnope = 1\n", "/x/server.toml");
  CHECK_FALSE(unknown.ok());
}

TEST_CASE("a broken spec is bad_request, and a missing max_call_depth means 64", "[spec]") {
  CHECK(ferry::decode_worker_spec("[]").status().code() == FERRY_E_BAD_REQUEST);
  CHECK(ferry::decode_worker_spec("{\"plugin\":\"p.so\"}").status().code() == FERRY_E_BAD_REQUEST);
  auto j = nlohmann::json::parse(ferry::encode_worker_spec(unusual_spec()));
  j.erase("max_call_depth");
  const auto back = ferry::decode_worker_spec(j.dump());
  REQUIRE(back.ok());
  CHECK(back->max_call_depth == 64);
  j["memory_mb"] = "lots";
  CHECK(ferry::decode_worker_spec(j.dump()).status().code() == FERRY_E_BAD_REQUEST);
}

TEST_CASE("a spec from an older ferryd (no settings) decodes with none; bad settings are bad_request", "[spec]") {
  auto j = nlohmann::json::parse(ferry::encode_worker_spec(unusual_spec()));
  j.erase("settings");
  const auto old = ferry::decode_worker_spec(j.dump());
  REQUIRE(old.ok());
  CHECK(old->settings.empty());
  CHECK(old->plugin_path == unusual_spec().plugin_path);
  j["settings"] = {{"p", 3}};
  CHECK(ferry::decode_worker_spec(j.dump()).status().code() == FERRY_E_BAD_REQUEST);
  j["settings"] = "{}";
  CHECK(ferry::decode_worker_spec(j.dump()).status().code() == FERRY_E_BAD_REQUEST);
}

TEST_CASE("a plugin path that is not UTF-8 still encodes", "[spec]") {
  WorkerSpec w = unusual_spec();
  w.plugin_path = "/srv/g\xff.so";
  const std::string text = ferry::encode_worker_spec(w);  // no exception
  CHECK(ferry::decode_worker_spec(text).ok());
}
