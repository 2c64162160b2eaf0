// Plugin settings and the shutdown hook, end to end, in both executors: the
// real ferryd, the "settings" fixture (tests/plugins/fixture_settings.cpp),
// whose init and shutdown hook append a line per load to hooks.log. Loads
// are told apart by the id each reports (settings.load); a describing
// worker's init may write a line too (init runs before Landlock), never its
// hook, so the checks name the loads they mean.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"

using ferry::Client;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::plugin_status;
using ferry::test::reply_for;
using ferry::test::status_until;
using ferry::test::wait_until;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A directory every worker may write (workers run as another user), for
// hooks.log and the files wait_file() waits for.
struct HookDir {
  fs::path path;
  HookDir() {
    std::string tmpl = (fs::temp_directory_path() / "ferry-hooks-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
    fs::permissions(path, fs::perms::all);
  }
  ~HookDir() { fs::remove_all(path); }
  void touch(const std::string& name) const { std::ofstream(path / name) << "go"; }
};

// One load of the plugin, as hooks.log tells it.
struct Load {
  std::string tag;
  int inits = 0, finis = 0;
};

// hooks.log by load id; a line for a load it never saw start counts too.
std::map<std::string, Load> loads(const HookDir& dir) {
  std::map<std::string, Load> out;
  std::ifstream in(dir.path / "hooks.log");
  for (std::string what, tag, id; in >> what >> tag >> id;) {
    Load& l = out[id];
    l.tag = tag;
    (what == "init" ? l.inits : l.finis) += 1;
  }
  return out;
}

// How often load `id` (as a call returned it: JSON text) ran its hook.
int finis(const HookDir& dir, const std::string& id) {
  const auto ls = loads(dir);
  const auto it = ls.find(json::parse(id).get<std::string>());
  return it == ls.end() ? -1 : it->second.finis;
}

// No load ran its hook twice, or without having started.
bool none_twice(const HookDir& dir) {
  for (const auto& [id, l] : loads(dir)) {
    if (l.finis > 1 || l.inits != 1) return false;
  }
  return true;
}

// The load ids of `n` workers (process) or the one load (thread): n calls
// held at once, then released. Each must report `tag`.
std::vector<std::string> serving_loads(Client& c, const HookDir& dir, int n, const std::string& file,
                                       const std::string& tag = "a") {
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(c.send_call("settings.wait_file", "[\"" + file + "\"]"));
  status_until(c, "settings", [&](const json& st) { return st["running"] == n; }, "calls held");
  dir.touch(file);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    auto r = c.read_reply();
    REQUIRE(r.has_value());
    REQUIRE(r->code == FERRY_OK);
    const json got = json::parse(r->data);
    CHECK(got["tag"] == tag);  // this load's init got the settings
    out.push_back(got["load"].dump());
  }
  return out;
}

// [plugins.settings] with its settings table.
std::string config(const std::string& executor, const HookDir& dir, const std::string& settings,
                   const std::string& extra = "") {
  std::string toml = "[plugins.settings]\nexecutor = \"" + executor + "\"\n" + extra + "\n";
  if (executor == "process") {
    // write_paths for hooks.log; allow_weaker: the test runs on any kernel.
    toml += "[plugins.settings.sandbox]\nallow_weaker = true\nwrite_paths = [\"" + dir.path.string() + "\"]\n";
  }
  return toml + "[plugins.settings.settings]\ndir = \"" + dir.path.string() + "\"\n" + settings + "\n";
}

// Rewrites server.toml as FerrydProcess wrote it, with another plugin section.
void write_config(const FerrydProcess& d, const std::string& plugins_toml) {
  const fs::path tmp = d.dir() / "server.toml.new";
  std::ofstream(tmp) << "[server]\nsocket_path = \"ferry.sock\"\nplugin_dir = \"plugins\"\nlog_level = \"debug\"\n"
                     << plugins_toml << "\n";
  fs::rename(tmp, d.dir() / "server.toml");
}

int occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

json reload(Client& c) {
  auto r = must_call(c, "ferry.reload", "[]");
  INFO(r.data);
  REQUIRE(r.code == FERRY_OK);
  return json::parse(r.data);
}

std::string call_ok(Client& c, const std::string& fn, const std::string& args = "[]") {
  auto r = must_call(c, fn, args);
  INFO(fn << ": " << r.data);
  REQUIRE(r.code == FERRY_OK);
  return r.data;
}

}  // namespace

TEST_CASE("settings reach init, in ferryd and in every worker", "[integration][settings]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  HookDir dir;
  FerrydProcess d({fixture_path("fixture_settings")},
                  config(executor, dir,
                         "tag = \"a\"\nsize = 3\nratio = 0.5\nlist = [1, \"two\"]\nday = 1979-05-27\n"
                         "[plugins.settings.settings.db]\nurl = \"postgres://x\"\npool = { max = 8 }\n",
                         "workers = 2"));
  auto c = connect(d);
  const json expected{{"dir", dir.path.string()}, {"tag", "a"}, {"size", 3}, {"ratio", 0.5}, {"list", {1, "two"}},
                      {"day", "1979-05-27"}, {"db", {{"url", "postgres://x"}, {"pool", {{"max", 8}}}}}};
  // Two calls held at once run on both workers (process) or in one load
  // (thread); each load got the settings.
  const auto loads_now = serving_loads(*c, dir, 2, "go");
  CHECK((loads_now[0] != loads_now[1]) == (executor == "process"));
  for (int i = 0; i < 2; ++i) CHECK(json::parse(call_ok(*c, "settings.settings")) == expected);
  for (const auto& id : loads_now) CHECK(finis(dir, id) == 0);  // serving: no hook
}

TEST_CASE("a settings reload is a new version; calls in flight finish on the old one, whose hook then runs once",
          "[integration][settings][lifecycle]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  HookDir dir;
  FerrydProcess d({fixture_path("fixture_settings")}, config(executor, dir, "tag = \"a\"", "workers = 1"));
  auto c = connect(d);
  const std::string first = call_ok(*c, "settings.load");
  const auto held = c->send_call("settings.wait_file", R"(["go"])");
  status_until(*c, "settings", [](const json& st) { return st["running"] == 1; }, "a call in flight");

  // (The watcher may apply the saved file a moment before ferry.reload does:
  // the reply's state, not its list of changes, is what to check.)
  write_config(d, config(executor, dir, "tag = \"b\"", "workers = 1"));
  CHECK(reload(*c)["plugins"]["settings"] == "1.0.0");
  CHECK(call_ok(*c, "settings.tag") == "\"b\"");
  const std::string second = call_ok(*c, "settings.load");
  CHECK(second != first);  // a new load: fresh statics
  CHECK(plugin_status(*c, "settings")["draining_versions"] == 1);
  CHECK(finis(dir, first) == 0);  // the old version still runs its call: no hook yet

  dir.touch("go");
  const json r = json::parse(reply_for(*c, held).data);
  CHECK(r["tag"] == "a");
  CHECK(r["load"] == json::parse(first));
  status_until(*c, "settings", [](const json& st) { return st["draining_versions"] == 0; }, "old version gone");
  wait_until([&] { return finis(dir, first) == 1; }, "the old version's hook");  // thread: on the finalizer's thread
  CHECK(finis(dir, second) == 0);
  CHECK(none_twice(dir));
  CHECK_THAT(d.log(), Catch::Contains("plugin settings: new settings, lane replaced"));
}

TEST_CASE("settings an init refuses keep the old version serving; the plugin's reason is logged and reported",
          "[integration][settings]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  HookDir dir;
  FerrydProcess d({fixture_path("fixture_settings")}, config(executor, dir, "tag = \"a\"", "workers = 1"));
  auto c = connect(d);
  const std::string first = call_ok(*c, "settings.load");
  const std::string reason = "cannot reach db.example:5432 (connection refused)";
  write_config(d, config(executor, dir, "tag = \"b\"\nrefuse = \"" + reason + "\"", "workers = 1"));
  const auto cli = ferry::test::run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "reload"});
  INFO(cli.out << cli.err);
  CHECK(cli.status == 0);
  CHECK_THAT(cli.out, Catch::Contains("refused") && Catch::Contains(reason));
  CHECK_THAT(d.log(), Catch::Contains(reason) && Catch::Contains("the loaded version keeps serving"));
  // The same load serves on: not restarted with the refused settings.
  CHECK(call_ok(*c, "settings.tag") == "\"a\"");
  CHECK(call_ok(*c, "settings.load") == first);
  CHECK(plugin_status(*c, "settings")["draining_versions"] == 0);
  // Fixed settings are tried again at once.
  CHECK(finis(dir, first) == 0);
  write_config(d, config(executor, dir, "tag = \"c\"", "workers = 1"));
  CHECK(reload(*c)["refused"].empty());
  CHECK(call_ok(*c, "settings.tag") == "\"c\"");
  wait_until([&] { return finis(dir, first) == 1; }, "the replaced version's hook");
}

TEST_CASE("a plugin refused at start for its settings joins once they are fixed", "[integration][settings]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  HookDir dir;
  FerrydProcess d({fixture_path("fixture_settings")}, config(executor, dir, "refuse = \"no model at /m.bin\""));
  auto c = connect(d);
  CHECK(must_call(*c, "settings.tag", "[]").code == FERRY_E_UNKNOWN_FUNCTION);
  CHECK_THAT(d.log(), Catch::Contains("no model at /m.bin"));
  CHECK(reload(*c)["loaded"].empty());
  CHECK(occurrences(d.log(), "no model at /m.bin") == 1);  // nothing changed: not tried again
  write_config(d, config(executor, dir, "tag = \"ok\""));
  CHECK(reload(*c)["plugins"]["settings"] == "1.0.0");
  CHECK(reload(*c)["refused"].empty());
  CHECK(call_ok(*c, "settings.tag") == "\"ok\"");
}

TEST_CASE("the shutdown hook runs once per load: on a swap and when ferryd stops", "[integration][lifecycle]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  HookDir dir;
  FerrydProcess d({}, config(executor, dir, "tag = \"a\"", "workers = 2"));
  auto install = [&] {  // a deployment: write aside, then rename over
    fs::copy_file(fixture_path("fixture_settings"), d.dir() / "s.tmp", fs::copy_options::overwrite_existing);
    fs::rename(d.dir() / "s.tmp", d.dir() / "plugins" / "settings.so");
  };
  install();
  auto c = connect(d);
  reload(*c);
  const auto old = serving_loads(*c, dir, 2, "old");
  install();  // the same bytes, a new file: a new version
  reload(*c);  // (or the watcher, a moment earlier)
  const auto now = serving_loads(*c, dir, 2, "new");
  for (const auto& id : now) CHECK(std::find(old.begin(), old.end(), id) == old.end());
  wait_until([&] { return finis(dir, old[0]) == 1 && finis(dir, old[1]) == 1; }, "the old version's hooks");
  for (const auto& id : now) CHECK(finis(dir, id) == 0);  // the new version serves
  c.reset();
  const int status = d.stop(SIGTERM);
  INFO(d.log());  // on failure: what ferryd said (a sanitizer's report, a hook that hung)
  CHECK(status == 0);
  for (const auto& id : now) CHECK(finis(dir, id) == 1);
  for (const auto& id : old) CHECK(finis(dir, id) == 1);
  CHECK(none_twice(dir));
  CHECK_THAT(d.log(), !Catch::Contains("killed"));
}

TEST_CASE("process mode: a recycled worker runs its hook; one killed at a deadline never does",
          "[integration][lifecycle]") {
  HookDir dir;
  FerrydProcess d({fixture_path("fixture_settings")},
                  config("process", dir, "tag = \"a\"", "workers = 1\nmax_calls_per_worker = 2"));
  auto c = connect(d);
  const std::string first = call_ok(*c, "settings.load");
  call_ok(*c, "settings.tag");  // its second call: the worker is recycled
  wait_until([&] { return finis(dir, first) == 1; }, "the recycled worker's hook");
  const std::string second = call_ok(*c, "settings.load");
  CHECK(second != first);
  // spin ignores its cancellation: killed 100 ms past its deadline.
  CHECK(must_call(*c, "settings.spin", "[10000]", 300).code == FERRY_E_TIMEOUT);
  const std::string third = call_ok(*c, "settings.load");
  CHECK(third != second);
  c.reset();
  const int status = d.stop(SIGTERM);
  INFO(d.log());  // on failure: what ferryd said (a sanitizer's report, a hook that hung)
  CHECK(status == 0);
  CHECK(finis(dir, second) == 0);  // killed: no hook, not even at the stop
  CHECK(finis(dir, third) == 1);
  CHECK(finis(dir, first) == 1);
  CHECK(none_twice(dir));
  CHECK_THAT(d.log(), Catch::Contains("recycling worker"));
}
