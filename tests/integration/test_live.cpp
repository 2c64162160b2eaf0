// Live operations, end to end: plugin files dropped in, replaced and removed
// while ferryd runs; config reloads (ferry.reload, SIGHUP, a changed file);
// and a soak of swaps and reloads under load that must lose nothing.
#include <catch2/catch.hpp>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"

using ferry::Client;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::must_call;
using ferry::test::reply_for;
using ferry::test::plugin_status;
using ferry::test::status_until;
using ferry::test::ms_since;
using ferry::test::wait_until;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

std::string ops_config(const std::string& executor, int workers, const std::string& extra = "") {
  return "[plugins.ops]\nexecutor = \"" + executor + "\"\nworkers = " + std::to_string(workers) + "\n" + extra +
         "\n";
}

// Rewrites server.toml as FerrydProcess wrote it, with other plugin sections.
void write_config(const FerrydProcess& d, const std::string& plugins_toml) {
  const fs::path tmp = d.dir() / "server.toml.new";
  std::ofstream(tmp) << "[server]\nsocket_path = \"ferry.sock\"\nplugin_dir = \"plugins\"\nlog_level = \"debug\"\n"
                     << plugins_toml << "\n";
  fs::rename(tmp, d.dir() / "server.toml");
}

// Installs a plugin file the way a deployment does: write aside, then rename.
void install(const FerrydProcess& d, const std::string& from, const std::string& name = "ops.so") {
  const fs::path tmp = d.dir() / ("." + name + ".tmp");
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, d.dir() / "plugins" / name);
}

// Overwrites a plugin file in place (same inode), as `cp` does.
void overwrite(const FerrydProcess& d, const std::string& bytes, const std::string& name = "ops.so") {
  std::ofstream out(d.dir() / "plugins" / name, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json reload(Client& c) {
  auto r = must_call(c, "ferry.reload", "[]");
  INFO(r.data);
  REQUIRE(r.code == FERRY_OK);
  return json::parse(r.data);
}

std::string proc(const FerrydProcess& d) { return "/proc/" + std::to_string(d.pid()); }

std::size_t count_dir(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

// Distinct private copies of the ops plugin mapped into ferryd.
std::size_t mapped_ops_copies(const FerrydProcess& d) {
  std::ifstream maps(proc(d) + "/maps");
  std::set<std::string> files;
  for (std::string line; std::getline(maps, line);) {
    const auto at = line.find("/ferryd-plugins-");
    if (at != std::string::npos && line.find("/ops.", at) != std::string::npos) files.insert(line.substr(at));
  }
  return files.size();
}

// Child processes of every ferryd thread (workers are spawned by a thread of their own).
std::size_t children(const FerrydProcess& d) {
  std::size_t n = 0;
  for (const auto& task : fs::directory_iterator(proc(d) + "/task")) {
    std::ifstream in(task.path() / "children");
    for (std::string pid; in >> pid;) ++n;
  }
  return n;
}

struct Resources {
  std::size_t threads, fds, maps, kids;
  bool operator==(const Resources&) const = default;
};

Resources resources(const FerrydProcess& d) {
  return Resources{count_dir(proc(d) + "/task"), count_dir(proc(d) + "/fd"), mapped_ops_copies(d), children(d)};
}

std::ostream& operator<<(std::ostream& os, const Resources& r) {
  return os << "{threads " << r.threads << ", fds " << r.fds << ", ops copies mapped " << r.maps << ", children "
            << r.kids << "}";
}

}  // namespace

// The one wall-clock bound of the integration tests. README promises "within
// a second"; the check allows a few, and only where it cannot flake: a
// Release build without sanitizers (FERRY_TIMING_ASSERTS, see CMakeLists.txt).
TEST_CASE("a .so dropped into plugin_dir is callable without a reload, within seconds", "[integration][live]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({}, ops_config(executor, 1));
  auto c = connect(d);
  CHECK(must_call(*c, "ops.version", "[]").code == FERRY_E_UNKNOWN_FUNCTION);
  [[maybe_unused]] const auto start = Clock::now();
  install(d, fixture_path("fixture_ops_v1"));  // no ferry.reload: the watcher finds it
  ferry::Reply r;
  wait_until([&] { return (r = must_call(*c, "ops.version", "[]")).code != FERRY_E_UNKNOWN_FUNCTION; },
             "the new .so callable");
#ifdef FERRY_TIMING_ASSERTS
  CHECK(ms_since(start) < 3000);
#endif
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == "\"1\"");
  auto st = plugin_status(*c, "ops");
  CHECK(st["version"] == "1");
  CHECK(st["executor"] == executor);
  CHECK(st["path"] == (d.dir() / "plugins" / "ops.so").string());
  CHECK(st["loaded_at"].get<std::string>().size() == 20);  // 2026-11-25T09:00:00Z
}

TEST_CASE("a replaced .so serves new calls; running calls finish on the old version", "[integration][live]") {
  FerrydProcess d({}, ops_config("thread", 2));
  install(d, fixture_path("fixture_ops_v1"));
  auto c = connect(d);
  auto report = reload(*c);
  CHECK(report["plugins"]["ops"] == "1");
  // Two calls on v1: `held` waits until v1 saw a cancellation; `worker` runs.
  const auto worker = c->send_call("ops.cooperate", "[20000]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 1; }, "v1 running");
  const auto held = c->send_call("ops.await_noticed", "[1]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 2; }, "v1 busy");
  install(d, fixture_path("fixture_ops_v2"));  // atomic rename over the old file
  report = reload(*c);
  CHECK(report["plugins"]["ops"] == "2");
  CHECK(must_call(*c, "ops.version", "[]").data == "\"2\"");
  auto st = plugin_status(*c, "ops");
  CHECK(st["version"] == "2");
  CHECK(st["draining_versions"] == 1);
  CHECK(mapped_ops_copies(d) == 2);
  // Cancelling v1's call releases `held` only if it runs on v1 too.
  REQUIRE(c->send_cancel(worker));
  CHECK(reply_for(*c, worker).code == FERRY_E_CANCELLED);
  auto h = reply_for(*c, held);
  CHECK(h.code == FERRY_OK);
  CHECK(h.data == "true");
  // v1's last call ended: its lane stops, then the finalizer thread unmaps v1.
  st = status_until(*c, "ops", [](const json& s) { return s["draining_versions"] == 0; }, "old lane gone");
  wait_until([&] { return mapped_ops_copies(d) == 1 && plugin_status(*c, "ops")["version"] == "2"; },
             "v1 unmapped");
  CHECK(must_call(*c, "ops.version", "[]").data == "\"2\"");
}

TEST_CASE("process mode: a .so overwritten in place gets new workers; old ones finish, then go",
          "[integration][live]") {
  FerrydProcess d({}, ops_config("process", 2));
  install(d, fixture_path("fixture_ops_v1"));
  auto c = connect(d);
  REQUIRE(reload(*c)["plugins"]["ops"] == "1");
  status_until(*c, "ops", [](const json& s) { return s["processes"].size() == 2 && s["processes"][0]["state"] == "idle" &&
                                              s["processes"][1]["state"] == "idle"; }, "workers idle");
  const auto before = children(d);
  CHECK(before == 2);
  const auto running = c->send_call("ops.cooperate", "[400]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 1; }, "v1 running");
  overwrite(d, read_file(fixture_path("fixture_ops_v2")));
  REQUIRE(reload(*c)["plugins"]["ops"] == "2");
  CHECK(must_call(*c, "ops.version", "[]").data == "\"2\"");
  auto r = reply_for(*c, running);
  CHECK(r.code == FERRY_OK);  // finished on its v1 worker
  CHECK(r.data == "true");
  status_until(*c, "ops", [](const json& s) { return s["draining_versions"] == 0; }, "old workers gone");
  CHECK(children(d) == 2);
  CHECK(mapped_ops_copies(d) == 0);  // process plugins never map into ferryd
}

TEST_CASE("a broken or half-written file never replaces a working version", "[integration][live]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({}, ops_config(executor, 1));
  install(d, fixture_path("fixture_ops_v1"));
  auto c = connect(d);
  REQUIRE(reload(*c)["plugins"]["ops"] == "1");
  const std::string v2 = read_file(fixture_path("fixture_ops_v2"));
  for (const std::string& bad : {std::string("not an ELF file"), v2.substr(0, v2.size() / 2)}) {
    overwrite(d, bad);
    auto report = reload(*c);
    CHECK(report["plugins"]["ops"] == "1");
    REQUIRE(report["refused"].size() == 1);
    CHECK(report["refused"][0]["file"] == (d.dir() / "plugins" / "ops.so").string());
    CHECK(must_call(*c, "ops.version", "[]").data == "\"1\"");
  }
  CHECK_THAT(d.log(), Catch::Contains("the loaded version keeps serving"));
  overwrite(d, v2);
  auto fixed = reload(*c);
  CHECK(fixed["plugins"]["ops"] == "2");
  CHECK(fixed["refused"].empty());
  CHECK(must_call(*c, "ops.version", "[]").data == "\"2\"");
}

TEST_CASE("a removed .so is unregistered once its calls finish", "[integration][live]") {
  FerrydProcess d({}, ops_config("thread", 1));
  install(d, fixture_path("fixture_ops_v1"));
  auto c = connect(d);
  REQUIRE(reload(*c)["plugins"]["ops"] == "1");
  const auto running = c->send_call("ops.cooperate", "[300]");
  status_until(*c, "ops", [](const json& s) { return s["running"] == 1; }, "running");
  fs::remove(d.dir() / "plugins" / "ops.so");
  auto report = reload(*c);
  CHECK_FALSE(report["plugins"].contains("ops"));
  CHECK(must_call(*c, "ops.version", "[]").code == FERRY_E_UNKNOWN_FUNCTION);
  auto r = reply_for(*c, running);
  CHECK(r.code == FERRY_OK);
  CHECK(r.data == "true");
  // Nothing of it is left: no lane, no mapping (the finalizer thread unmaps it).
  const json all = json::parse(must_call(*c, "ferry.status", "[]").data);
  CHECK(all["plugins"].empty());
  wait_until([&] { return mapped_ops_copies(d) == 0 && must_call(*c, "ferry.status", "[]").code == FERRY_OK; },
             "the removed version unmapped");
}

TEST_CASE("config reload: an invalid file changes nothing; a valid one applies live", "[integration][live]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2));
  auto c = connect(d);
  write_config(d, ops_config("thread", 0));
  auto bad = must_call(*c, "ferry.reload", "[]");
  CHECK(bad.code == FERRY_E_BAD_REQUEST);
  CHECK_THAT(bad.data, Catch::Contains("server.toml:7: plugins.ops.workers: must be 1..1024"));
  CHECK(plugin_status(*c, "ops")["workers"] == 2);
  // Grow, shorten the timeout, and move to the process executor.
  write_config(d, ops_config("process", 4, "timeout_ms = 200\n[plugins.ops.sandbox]\nenabled = false"));
  CHECK(reload(*c)["config"] == "reloaded");
  auto st = plugin_status(*c, "ops");
  CHECK(st["workers"] == 4);
  CHECK(st["executor"] == "process");
  CHECK(st["timeout_ms"] == 200);
  CHECK(st["processes"].size() == 4);
  // Under the old 30 s default this call would return true after 20 s: a
  // timeout can only come from the new timeout_ms.
  CHECK(must_call(*c, "ops.ignore", "[20000]").code == FERRY_E_TIMEOUT);
  // Shrink, back to threads.
  write_config(d, ops_config("thread", 1));
  CHECK(reload(*c)["config"] == "reloaded");
  st = status_until(*c, "ops", [](const json& s) { return s["draining_versions"] == 0; }, "old lane gone");
  CHECK(st["executor"] == "thread");
  CHECK(st["threads"] == 1);
  CHECK(children(d) == 0);
  CHECK(must_call(*c, "ops.version", "[]").data == "\"1\"");
}

TEST_CASE("config reload by SIGHUP and by a change to server.toml", "[integration][live]") {
  FerrydProcess d({fixture_path("fixture_ops_v1")}, ops_config("thread", 2));
  auto c = connect(d);
  write_config(d, ops_config("thread", 3));  // the watcher picks this up
  status_until(*c, "ops", [](const json& s) { return s["workers"] == 3; }, "workers 3 after the file changed");
  // SIGHUP re-reads it even without a change event (e.g. on a network file system).
  const fs::path cfg = d.dir() / "server.toml";
  std::string text = read_file(cfg.string());
  text.replace(text.find("workers = 3"), 11, "workers = 5");
  {
    // Written through a hard link in another directory: the watched directory sees no event.
    fs::create_directory(d.dir() / "elsewhere");
    fs::create_hard_link(cfg, d.dir() / "elsewhere" / "server.toml");
    std::fstream(d.dir() / "elsewhere" / "server.toml", std::ios::in | std::ios::out) << text;
  }
  kill(d.pid(), SIGHUP);
  status_until(*c, "ops", [](const json& s) { return s["workers"] == 5; }, "workers 5 after SIGHUP");
  CHECK_THAT(d.log(), Catch::Contains("SIGHUP: reloading"));
}

// Zero failed calls: a load generator keeps >= 1,000 calls in flight while
// plugin versions are swapped and the config reloaded. CI runs a short form;
// scripts/soak.sh runs the full one (FERRY_SOAK_SWAPS=100, FERRY_SOAK_RELOADS=20).
TEST_CASE("soak: hot swaps and config reloads under load lose nothing and leak nothing", "[integration][soak]") {
  const int swaps = std::getenv("FERRY_SOAK_SWAPS") ? std::atoi(std::getenv("FERRY_SOAK_SWAPS")) : 10;
  const int reloads = std::getenv("FERRY_SOAK_RELOADS") ? std::atoi(std::getenv("FERRY_SOAK_RELOADS")) : 5;
  const std::string executor = std::getenv("FERRY_SOAK_EXECUTOR") ? std::getenv("FERRY_SOAK_EXECUTOR") : "thread";
  auto section = [&](int workers) {
    return ops_config(executor, workers, "queue_limit = 8192") +
           (executor == "process" ? "[plugins.ops.sandbox]\nenabled = false\n" : "");
  };
  FerrydProcess d({}, section(4));
  install(d, fixture_path("fixture_ops_v1"));
  auto control = connect(d);
  REQUIRE(reload(*control)["plugins"]["ops"] == "1");
  REQUIRE(must_call(*control, "ops.echo", "0").code == FERRY_OK);
  status_until(*control, "ops", [](const json& s) { return s["running"] == 0; }, "idle");
  const Resources before = resources(d);

  constexpr int kConns = 4, kDepth = 256;  // 1,024 calls in flight
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ok{0}, errors{0}, lost{0};
  std::atomic<int> versions_seen{0};
  std::vector<std::thread> load;
  for (int i = 0; i < kConns; ++i) {
    load.emplace_back([&] {
      std::string err;
      auto c = Client::connect(d.socket(), &err);
      if (!c) return lost.fetch_add(kDepth), void();
      std::set<std::uint64_t> pending;
      for (int k = 0; k < kDepth; ++k) pending.insert(c->send_call("ops.echo", "7"));
      while (!pending.empty()) {
        auto r = c->read_reply();
        if (!r) return lost.fetch_add(pending.size()), void();
        if (pending.erase(r->call_id) != 1) errors.fetch_add(1);  // a reply nobody waits for
        if (r->code == FERRY_OK && r->data == "7") ok.fetch_add(1);
        else errors.fetch_add(1);
        if (!stop.load()) pending.insert(c->send_call("ops.echo", "7"));
      }
    });
  }
  int reloads_done = 0;
  auto reload_config = [&] {  // the pool size alternates between 3 and 4
    write_config(d, section(reloads_done % 2 == 0 ? 3 : 4));
    CHECK(reload(*control)["config"] == "reloaded");
    ++reloads_done;
  };
  for (int s = 0; s < swaps; ++s) {
    const std::string v = s % 2 == 0 ? "2" : "1";
    install(d, fixture_path("fixture_ops_v" + v));
    auto report = reload(*control);
    CHECK(report["plugins"]["ops"] == v);
    versions_seen += must_call(*control, "ops.version", "[]").data == "\"" + v + "\"";
    if (reloads_done < reloads && (s + 1) * reloads >= (reloads_done + 1) * swaps) reload_config();
  }
  while (reloads_done < reloads) reload_config();
  stop = true;
  for (auto& t : load) t.join();
  // Back to the starting point: version 1 (an even number of swaps) or 2, 4 workers.
  write_config(d, section(4));
  reload(*control);
  status_until(*control, "ops", [](const json& s) { return s["draining_versions"] == 0 && s["running"] == 0; }, "settled");
  Resources after = resources(d);  // old versions are unmapped by the finalizer thread, once let go
  auto back = [&] { return must_call(*control, "ferry.status", "[]").code == FERRY_OK && (after = resources(d)) == before; };
  wait_until(back, "resources back to where they started");
  WARN("soak: " << ok.load() << " calls, " << swaps << " swaps, " << reloads << " reloads, " << errors.load()
                << " errors, " << lost.load() << " lost; before " << before << ", after " << after);
  CHECK(errors == 0);
  CHECK(lost == 0);
  CHECK(ok > std::uint64_t(kConns * kDepth));
  CHECK(versions_seen == swaps);
  CHECK(after == before);
}

TEST_CASE("a plugin file renamed, or replaced by a file of another name, keeps serving", "[integration][live]") {
  FerrydProcess d({}, ops_config("thread", 1));
  install(d, fixture_path("fixture_ops_v1"), "ops-1.so");
  auto c = connect(d);
  REQUIRE(reload(*c)["plugins"]["ops"] == "1");
  // Renamed: the same plugin, now from the new file name.
  fs::rename(d.dir() / "plugins" / "ops-1.so", d.dir() / "plugins" / "ops-renamed.so");
  auto report = reload(*c);
  CHECK(report["plugins"]["ops"] == "1");
  CHECK(report["refused"].empty());
  CHECK(must_call(*c, "ops.version", "[]").data == "\"1\"");
  // A second file providing the same plugin is refused while the first exists...
  install(d, fixture_path("fixture_ops_v2"), "ops-2.so");
  report = reload(*c);
  CHECK(report["plugins"]["ops"] == "1");
  REQUIRE(report["refused"].size() == 1);
  CHECK_THAT(report["refused"][0]["why"].get<std::string>(), Catch::Contains("duplicate plugin name"));
  // ...and takes over once the first is deleted.
  fs::remove(d.dir() / "plugins" / "ops-renamed.so");
  report = reload(*c);
  CHECK(report["plugins"]["ops"] == "2");
  CHECK(report["refused"].empty());
  CHECK(must_call(*c, "ops.version", "[]").data == "\"2\"");
}
