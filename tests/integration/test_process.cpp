// The process executor end to end: real ferryd, real sandboxed ferry-worker
// processes, real plugins (including a hostile one).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"
#include "sandbox/sandbox.hpp"

using ferry::Client;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::must_call;
using ferry::test::reply_for;
using ferry::test::plugin_status;
using ferry::test::status_until;
using ferry::test::wait_until;
using ferry::test::fixture_path;
using ferry::test::plugin_path;
using nlohmann::json;

namespace {

// The full sandbox needs kernel features; without them this suite skips, saying why.
[[maybe_unused]] const bool kSandboxAvailable = [] {
  const auto features = ferry::sandbox::probe();
  if (!features.missing.empty()) {
    std::fprintf(stderr, "SKIP test_process: this kernel lacks %s\n", features.missing.c_str());
    std::exit(77);
  }
  return true;
}();

const char* kDemoProcess = "[plugins.demo]\nexecutor = \"process\"\nworkers = 2\n";

// Polls status (each poll a round trip, bounded) until every worker is idle.
json wait_all_idle(Client& c, const std::string& plugin) {
  return status_until(
      c, plugin,
      [](const json& st) {
        for (const auto& w : st["processes"]) {
          if (w["state"] != "idle") return false;
        }
        return true;
      },
      "every worker idle");
}

std::set<int> worker_pids(const json& st) {
  std::set<int> pids;
  for (auto& w : st["processes"]) pids.insert(w["pid"].get<int>());
  return pids;
}

std::size_t count_dir(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

// Direct children of `pid`, zombies included.
int children_of(int pid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    int ppid;
    rest >> state >> ppid;
    n += ppid == pid;
  }
  return n;
}

}  // namespace

TEST_CASE("process mode gives the same results and errors as thread mode", "[process]") {
  FerrydProcess threads({plugin_path("primes"), plugin_path("demo")});
  FerrydProcess procs({plugin_path("primes"), plugin_path("demo")},
                      std::string(kDemoProcess) + "[plugins.primes]\nexecutor = \"process\"\nworkers = 1\n");
  auto a = connect(threads);
  auto b = connect(procs);
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"primes.is_prime", "[112272535095293]"}, {"primes.factorize", "[600851475143]"},
      {"primes.factorize", "[1]"},              {"demo.echo", R"([{"k":[1,2,"x"]}])"},
      {"demo.fail", R"(["broken"])"},           {"demo.echo", "[]"},
      {"demo.sleep_ms", "[5]"},                 {"nope.nothing", "[]"}};
  for (const auto& [fn, args] : calls) {
    auto x = must_call(*a, fn, args);
    auto y = must_call(*b, fn, args);
    INFO(fn << " " << args);
    CHECK(x.code == y.code);
    CHECK(x.data == y.data);
  }
  CHECK(plugin_status(*b, "demo")["executor"] == "process");
  CHECK(plugin_status(*a, "demo")["executor"] == "thread");
}

TEST_CASE("a crashing call fails alone; the worker is replaced and others keep running",
          "[process]") {
  FerrydProcess d({plugin_path("primes"), plugin_path("demo")}, kDemoProcess);
  auto c = connect(d);
  auto before = worker_pids(wait_all_idle(*c, "demo"));
  const auto slow = c->send_call("demo.sleep_ms", "[300]");  // on the other worker
  auto crash = must_call(*c, "demo.crash", "[]");
  CHECK(crash.code == FERRY_E_WORKER_CRASHED);
  CHECK_THAT(crash.data, Catch::Contains("SIGSEGV"));
  auto next = must_call(*c, "demo.echo", "[1]");
  CHECK(next.code == FERRY_OK);
  CHECK(must_call(*c, "primes.is_prime", "[7]").data == "true");
  auto r = c->read_reply();
  REQUIRE(r.has_value());
  CHECK(r->call_id == slow);
  CHECK(r->code == FERRY_OK);
  CHECK(r->data == "300");
  auto after = wait_all_idle(*c, "demo");
  CHECK(after["processes"].size() == 2);
  CHECK(after["restarts"] == 1);
  CHECK(worker_pids(after) != before);
}

TEST_CASE("1,000 calls with a crash every 10th: 900 results, 100 crashes, nothing leaked",
          "[process]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 4\nqueue_limit = 2000\n");
  const std::string proc = "/proc/" + std::to_string(d.pid());
  auto c = connect(d);
  wait_all_idle(*c, "demo");
  const std::size_t fds = count_dir(proc + "/fd");
  const int kids = children_of(d.pid());
  CHECK(kids == 4);
  std::map<std::uint64_t, bool> crash;  // call id -> is a crash call
  for (int i = 1; i <= 1000; ++i) {
    const bool bad = i % 10 == 0;
    crash[c->send_call(bad ? "demo.crash" : "demo.echo", bad ? "[]" : "[" + std::to_string(i) + "]")] = bad;
  }
  int results = 0, crashes = 0, other = 0;
  for (int i = 0; i < 1000; ++i) {
    auto r = c->read_reply();
    REQUIRE(r.has_value());
    REQUIRE(crash.count(r->call_id) == 1);
    if (!crash[r->call_id] && r->code == FERRY_OK) ++results;
    else if (crash[r->call_id] && r->code == FERRY_E_WORKER_CRASHED) ++crashes;
    else ++other;
    crash.erase(r->call_id);
  }
  CHECK(results == 900);
  CHECK(crashes == 100);
  CHECK(other == 0);
  auto st = wait_all_idle(*c, "demo");
  CHECK(st["processes"].size() == 4);
  CHECK(st["restarts"] == 100);
  CHECK(count_dir(proc + "/fd") == fds);
  CHECK(children_of(d.pid()) == kids);  // no zombies, no extras
}

TEST_CASE("a call past its deadline gets timeout; a worker whose call returns in time is kept", "[process]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 1\n");
  auto c = connect(d);
  auto before = worker_pids(wait_all_idle(*c, "demo"));
  auto r = must_call(*c, "demo.sleep_ms", "[60000]", 200);  // ctx.sleep_for wakes at the deadline
  CHECK(r.code == FERRY_E_TIMEOUT);
  CHECK(must_call(*c, "demo.echo", R"(["after"])").data == "\"after\"");
  const json st = wait_all_idle(*c, "demo");
  CHECK(worker_pids(st) == before);
  CHECK(st["restarts"] == 0);
}

TEST_CASE("workers are recycled after max_calls_per_worker calls", "[process]") {
  FerrydProcess d({fixture_path("fixture_hostile")},
                  "[plugins.hostile]\nexecutor = \"process\"\nworkers = 1\nmax_calls_per_worker = 5\n");
  auto c = connect(d);
  std::vector<std::string> tokens;  // a random value drawn once per worker process
  for (int i = 0; i < 15; ++i) tokens.push_back(must_call(*c, "hostile.token", "[]").data);
  const std::set<std::string> distinct(tokens.begin(), tokens.end());
  CHECK(distinct.size() == 3);
  for (int i = 0; i < 15; ++i) CHECK(tokens[std::size_t(i)] == tokens[std::size_t(i / 5 * 5)]);
  CHECK(wait_all_idle(*c, "hostile")["restarts"] == 3);
}

TEST_CASE("a worker that cannot start is retried with backoff; the server stays up", "[process]") {
  FerrydProcess d({plugin_path("demo"), plugin_path("primes")},
                  "[plugins.demo]\nexecutor = \"process\"\nworkers = 1\n"
                  "[plugins.demo.sandbox]\nread_paths = [\"/nonexistent/ferry/data\"]\n");
  auto c = connect(d);
  auto r = must_call(*c, "demo.echo", "[1]", 300);
  CHECK(r.code == FERRY_E_TIMEOUT);  // queued until its deadline: no worker ever got ready
  CHECK(must_call(*c, "primes.is_prime", "[11]").data == "true");
  wait_until(
      [&] {
        REQUIRE(c->ping().has_value());  // ferryd is up, and the poll is a round trip
        return d.log().find("crash loop") != std::string::npos;
      },
      "\"crash loop\" in ferryd's log");
  const std::string log = d.log();
  CHECK_THAT(log, Catch::Contains("/nonexistent/ferry/data"));  // the worker's own reason
  CHECK(plugin_status(*c, "demo")["processes"][0]["state"] != "idle");
}

TEST_CASE("ferry status: a plugin whose workers all die before ready is unhealthy, the others ok", "[process][health]") {
  FerrydProcess d({fixture_path("fixture_good"), plugin_path("primes"), plugin_path("demo")},
                  "[plugins.good]\nexecutor = \"process\"\nworkers = 2\n"
                  "[plugins.good.sandbox]\nread_paths = [\"/nonexistent/ferry/health\"]\n" +
                      std::string(kDemoProcess));
  auto c = connect(d);
  wait_all_idle(*c, "demo");
  const json good = status_until(
      *c, "good",
      [](const json& st) {
        return st["health"] == "unhealthy" && st["health_reason"].get<std::string>().find("/nonexistent/ferry/health") !=
                                                  std::string::npos;
      },
      "good unhealthy, with its workers' own error");
  CHECK_THAT(good["health_reason"].get<std::string>(), Catch::StartsWith("every worker dies before it is ready (2 of 2"));
  for (const auto& w : good["processes"]) CHECK(w["start_failures"].get<int>() >= 1);
  CHECK(plugin_status(*c, "demo")["health"] == "ok");
  CHECK(plugin_status(*c, "demo")["health_reason"] == "");
  CHECK(plugin_status(*c, "primes")["health"] == "ok");

  // Once every slot has failed, none can get ready: the CLI sees it too.
  auto cli = ferry::test::run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "status", "--json"});
  REQUIRE(cli.status == 0);
  const json doc = json::parse(cli.out);
  for (const auto& p : doc["plugins"]) CHECK(p["health"] == (p["name"] == "good" ? "unhealthy" : "ok"));
  auto text = ferry::test::run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "status"});
  CHECK_THAT(text.out, Catch::Contains("health unhealthy: every worker dies before it is ready (2 of 2"));
  CHECK_THAT(text.out, Catch::Contains("health ok"));
}

namespace {

struct Hostile {
  std::filesystem::path readable, writable, outside;
  std::unique_ptr<FerrydProcess> d;
  std::unique_ptr<Client> c;

  Hostile() {
    const auto base = std::filesystem::temp_directory_path() / ("ferry-hostile-" + std::to_string(getpid()));
    readable = base / "in";
    writable = base / "out";
    outside = base / "secret";
    std::filesystem::create_directories(readable);
    std::filesystem::create_directories(writable);
    std::filesystem::create_directories(outside);
    std::filesystem::permissions(base, std::filesystem::perms::all);
    for (const auto& p : {readable, writable, outside}) std::filesystem::permissions(p, std::filesystem::perms::all);
    std::ofstream(readable / "data.txt") << "visible";
    std::ofstream(outside / "data.txt") << "hidden";
    for (const auto& f : {readable / "data.txt", outside / "data.txt"}) {
      std::filesystem::permissions(f, std::filesystem::perms::all);
    }
    d = std::make_unique<FerrydProcess>(
        std::vector<std::string>{fixture_path("fixture_hostile"), plugin_path("primes")},
        "[plugins.hostile]\nexecutor = \"process\"\nworkers = 2\ntimeout_ms = 2000\n"
        "[plugins.hostile.sandbox]\nmemory_mb = 512\nread_paths = [\"" + readable.string() +
            "\"]\nwrite_paths = [\"" + writable.string() + "\"]\n");
    c = connect(*d);
  }
  ~Hostile() { std::filesystem::remove_all(readable.parent_path()); }

  // The hostile call's reply, then a successful follow-up on the same plugin.
  ferry::Reply call(std::string_view fn, const std::string& args, std::uint32_t timeout_ms = 0) {
    auto r = must_call(*c, fn, args, timeout_ms);
    auto ok = must_call(*c, "hostile.ok", "[]");
    INFO("follow-up after " << fn << ": " << ok.data);
    CHECK(ok.code == FERRY_OK);
    CHECK(must_call(*c, "primes.is_prime", "[13]").data == "true");
    return r;
  }
};

std::string quoted(const std::filesystem::path& p) { return "[\"" + p.string() + "\"]"; }

}  // namespace

TEST_CASE("hostile plugin: every escape is denied or contained with a typed error", "[process][sandbox]") {
  Hostile h;
  SECTION("network") {
    auto r = h.call("hostile.connect_tcp", "[9]");
    CHECK(r.code == FERRY_E_SANDBOX_VIOLATION);
    CHECK_THAT(r.data, Catch::Contains("socket"));
  }
  SECTION("reading outside read_paths") {
    auto shadow = h.call("hostile.read_file", R"(["/etc/shadow"])");
    CHECK(shadow.code == FERRY_E_PERMISSION_DENIED);
    auto secret = h.call("hostile.read_file", quoted(h.outside / "data.txt"));
    CHECK(secret.code == FERRY_E_PERMISSION_DENIED);
    CHECK(secret.data.find("hidden") == std::string::npos);
    auto allowed = h.call("hostile.read_file", quoted(h.readable / "data.txt"));
    CHECK(allowed.code == FERRY_OK);
    CHECK(allowed.data == "\"visible\"");
  }
  SECTION("writing outside write_paths") {
    auto r = h.call("hostile.write_file", quoted(h.outside / "new.txt"));
    CHECK(r.code == FERRY_E_PERMISSION_DENIED);
    CHECK_FALSE(std::filesystem::exists(h.outside / "new.txt"));
    auto w = h.call("hostile.write_file", quoted(h.writable / "new.txt"));
    CHECK(w.code == FERRY_OK);
    CHECK(std::filesystem::exists(h.writable / "new.txt"));
  }
  SECTION("fork bomb") {
    auto r = h.call("hostile.fork_bomb", "[]");
    CHECK(r.code == FERRY_E_SANDBOX_VIOLATION);
  }
  SECTION("memory bomb") {
#if defined(__SANITIZE_ADDRESS__)
    WARN("not checked under ASan: its shadow memory rules out an address-space limit");
#else
    auto r = h.call("hostile.alloc_gib", "[4]");
    CHECK(r.code == FERRY_E_OUT_OF_MEMORY);
#endif
  }
  SECTION("spinning forever") {
    auto r = h.call("hostile.spin", "[]", 300);
    CHECK(r.code == FERRY_E_TIMEOUT);
  }
  SECTION("ptrace, exec, kill") {
    CHECK(h.call("hostile.ptrace_parent", "[]").code == FERRY_E_SANDBOX_VIOLATION);
    CHECK(h.call("hostile.exec_shell", "[]").code == FERRY_E_SANDBOX_VIOLATION);
    // PID 1 of the worker's pid namespace is the worker itself: the host's init is out of reach.
    auto k = h.call("hostile.kill_init", "[]");
    CHECK(k.code == FERRY_OK);
  }
  SECTION("segfault and abort") {
    auto segv = h.call("hostile.segfault", "[]");
    CHECK(segv.code == FERRY_E_WORKER_CRASHED);
    CHECK_THAT(segv.data, Catch::Contains("SIGSEGV"));
    auto abrt = h.call("hostile.abort_now", "[]");
    CHECK(abrt.code == FERRY_E_WORKER_CRASHED);
    CHECK_THAT(abrt.data, Catch::Contains("SIGABRT"));
  }
  SECTION("stdout and stderr flood") {
    auto r = h.call("hostile.flood", "[64]");
    CHECK(r.code == FERRY_OK);
    CHECK(r.data == "64");
  }
}

TEST_CASE("without network = true the worker has no network even with seccomp off", "[process][sandbox]") {
  FerrydProcess d({fixture_path("fixture_hostile")},
                  "[plugins.hostile]\nexecutor = \"process\"\nworkers = 1\n[plugins.hostile.sandbox]\nseccomp = false\n");
  auto c = connect(d);
  // A live listener on the host's loopback: reachable unless the worker is isolated.
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(lfd, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto r = must_call(*c, "hostile.connect_tcp", "[" + std::to_string(ntohs(addr.sin_port)) + "]");
  close(lfd);
  INFO(r.data);
  // Denied by Landlock's TCP rule (EACCES) or the empty network namespace (ENETUNREACH).
  CHECK((r.code == FERRY_E_PERMISSION_DENIED || r.code == FERRY_E_PLUGIN_ERROR));
  CHECK(must_call(*c, "hostile.ok", "[]").code == FERRY_OK);
}

TEST_CASE("ferry status shows each worker process", "[process][cli]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 3\n");
  auto c = connect(d);
  auto st = wait_all_idle(*c, "demo");
  REQUIRE(st["processes"].size() == 3);
  auto out = ferry::test::run_command({ferry::test::ferry_cli_path(), "--socket", d.socket(), "status"});
  INFO(out.err);
  CHECK(out.status == 0);
  CHECK_THAT(out.out, Catch::Contains("demo 1.0.0  process x3"));
  for (int pid : worker_pids(st)) CHECK_THAT(out.out, Catch::Contains("pid " + std::to_string(pid)));
  for (auto& w : st["processes"]) CHECK(w["rss_kb"].get<int>() > 0);
}

TEST_CASE("large payloads cross the worker channel intact (sealed memfd)", "[process]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 1\n");
  auto c = connect(d);
  for (std::size_t size : {std::size_t(1000), std::size_t(48 * 1024), std::size_t(3) << 20}) {
    std::string big(size, 'x');
    for (std::size_t i = 0; i < size; i += 7) big[i] = char('a' + i % 26);
    const std::string arg = json(big).dump();
    auto r = must_call(*c, "demo.echo", "[" + arg + "]");
    REQUIRE(r.code == FERRY_OK);
    CHECK(r.data == arg);
  }
}

TEST_CASE("a worker over max_rss_mb after a call is recycled", "[process]") {
  FerrydProcess d({fixture_path("fixture_hostile")},
                  "[plugins.hostile]\nexecutor = \"process\"\nworkers = 1\nmax_rss_mb = 200\n");
  auto c = connect(d);
  const std::string first = must_call(*c, "hostile.token", "[]").data;
  CHECK(must_call(*c, "hostile.leak_mb", "[8]").code == FERRY_OK);  // well under the limit
  CHECK(must_call(*c, "hostile.token", "[]").data == first);
  CHECK(must_call(*c, "hostile.leak_mb", "[300]").data == "300");  // answered, then recycled
  const std::string second = must_call(*c, "hostile.token", "[]").data;
  CHECK(second != first);
  CHECK(wait_all_idle(*c, "hostile")["restarts"] == 1);
  CHECK_THAT(d.log(), Catch::Contains("over max_rss_mb 200"));
}

TEST_CASE("a process plugin's code never runs inside ferryd", "[process][sandbox]") {
  FerrydProcess d({plugin_path("demo"), plugin_path("primes")}, kDemoProcess);
  auto c = connect(d);
  CHECK(must_call(*c, "demo.echo", "[1]").data == "1");
  CHECK(must_call(*c, "primes.is_prime", "[3]").data == "true");
  std::ifstream maps("/proc/" + std::to_string(d.pid()) + "/maps");
  std::stringstream text;
  text << maps.rdbuf();
  // ferryd loads private copies of plugin files: /tmp/ferryd-plugins-*/NAME.N.so
  bool demo = false, primes = false;
  for (std::string line; std::getline(text, line);) {
    if (line.find("/ferryd-plugins-") == std::string::npos) continue;
    demo = demo || line.find("/demo.") != std::string::npos;
    primes = primes || line.find("/primes.") != std::string::npos;
  }
  CHECK_FALSE(demo);  // process: only in its workers
  CHECK(primes);      // thread: loaded in ferryd
}

TEST_CASE("files that are not plugins are refused by the describing worker", "[process]") {
  FerrydProcess d({plugin_path("demo"), fixture_path("fixture_not_plugin"), fixture_path("fixture_wrong_abi")},
                  kDemoProcess);
  auto c = connect(d);
  CHECK(must_call(*c, "demo.echo", "[2]").data == "2");
  const std::string log = d.log();
  CHECK_THAT(log, Catch::Contains("fixture_not_plugin.so refused") && Catch::Contains("not a Ferry plugin"));
  CHECK_THAT(log, Catch::Contains("fixture_wrong_abi.so refused") && Catch::Contains("ABI 2.0"));
}

TEST_CASE("a config reload gives a process plugin's new workers the new sandbox", "[process][sandbox]") {
  Hostile h;
  const auto secret = quoted(h.outside / "data.txt");
  CHECK(h.call("hostile.read_file", secret).code == FERRY_E_PERMISSION_DENIED);
  const auto cfg = h.d->dir() / "server.toml";
  std::ofstream(h.d->dir() / "server.toml.new")
      << "[server]\nsocket_path = \"ferry.sock\"\nplugin_dir = \"plugins\"\n"
      << "[plugins.hostile]\nexecutor = \"process\"\nworkers = 2\ntimeout_ms = 2000\n"
      << "[plugins.hostile.sandbox]\nmemory_mb = 512\nread_paths = [\"" << h.readable.string() << "\", \""
      << h.outside.string() << "\"]\nwrite_paths = [\"" << h.writable.string() << "\"]\n";
  std::filesystem::rename(h.d->dir() / "server.toml.new", cfg);
  auto r = must_call(*h.c, "ferry.reload", "[]");
  INFO(r.data);
  REQUIRE(r.code == FERRY_OK);
  auto now = must_call(*h.c, "hostile.read_file", secret);  // on a worker of the new lane
  CHECK(now.code == FERRY_OK);
  CHECK(now.data == "\"hidden\"");
  CHECK(must_call(*h.c, "hostile.read_file", R"(["/etc/shadow"])").code == FERRY_E_PERMISSION_DENIED);
}
