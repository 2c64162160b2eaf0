// The `ferry` command line against the real ferryd.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "ferry/errors.h"
#include "ferryd_process.hpp"

using ferry::test::Captured;
using ferry::test::FerrydProcess;
using ferry::test::ferry_cli_path;
using ferry::test::plugin_path;
using ferry::test::run_command;

namespace {
Captured ferry_cli(const FerrydProcess& d, std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), {ferry_cli_path(), "--socket", d.socket()});
  return run_command(args, input);
}

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The exit status of pid, or -1 after 20 s (then it is killed): a ferry that
// never sees the end of its input fails the test instead of hanging it.
int wait_exit(pid_t pid) {
  for (int i = 0; i < 2000; ++i) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// Runs ferry with a terminal as its stdin and types `typed` into it; the
// terminal turns a Ctrl-D (\x04) at the start of a line into end of file.
Captured ferry_cli_on_tty(const FerrydProcess& d, std::vector<std::string> args, const std::string& typed) {
  args.insert(args.begin(), {ferry_cli_path(), "--socket", d.socket()});
  int master = -1, slave = -1;
  REQUIRE(openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
  const std::filesystem::path out = d.dir() / "tty.out", err = d.dir() / "tty.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, slave, 0);
  posix_spawn_file_actions_addclose(&fa, slave);
  posix_spawn_file_actions_addclose(&fa, master);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(slave);
  Captured c{-1000, {}, {}};
  if (spawned == 0) {
    CHECK(write(master, typed.data(), typed.size()) == static_cast<ssize_t>(typed.size()));
    c.status = wait_exit(pid);
  }
  close(master);
  c.out = read_all(out);
  c.err = read_all(err);
  return c;
}
}  // namespace

TEST_CASE("ferry call prints the JSON result", "[cli]") {
  FerrydProcess d({plugin_path("primes"), plugin_path("demo")});
  auto r = ferry_cli(d, {"call", "primes.is_prime", "112272535095293"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "true\n");
  auto e = ferry_cli(d, {"call", "demo.echo", R"({"a":1})"});
  CHECK(e.status == 0);
  CHECK(e.out == "{\"a\":1}\n");
  CHECK(ferry_cli(d, {"call", "demo.echo", R"("hi")"}).out == "\"hi\"\n");
}

TEST_CASE("each ARG of ferry call is one JSON value, however many commas it holds", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1,2]", "[1,2]\n"},
      {R"(["a b",{"k":[1,2]}])", R"(["a b",{"k":[1,2]}])" "\n"},
      {R"({"k":[1,2],"j":{"x":[]}})", R"({"j":{"x":[]},"k":[1,2]})" "\n"},
      {R"("a, b, [c]")", R"("a, b, [c]")" "\n"},
      {"-5", "-5\n"},
      {"[]", "[]\n"}};
  for (const auto& [arg, out] : cases) {
    auto r = ferry_cli(d, {"call", "demo.echo", arg});
    INFO(arg << " -> " << r.err);
    CHECK(r.status == 0);
    CHECK(r.out == out);
  }
  // Two ARGs are two arguments: echo takes one, so the plugin refuses them.
  auto two = ferry_cli(d, {"call", "demo.echo", "[1,2]", "[3]"});
  CHECK(two.status == 10 + FERRY_E_BAD_REQUEST);
  CHECK_THAT(two.err, Catch::Contains("got 2"));
  // Options may follow the ARGs; -- passes an ARG that looks like an option.
  CHECK(ferry_cli(d, {"call", "demo.echo", "[1,2]", "--timeout", "5000"}).out == "[1,2]\n");
  auto dashed = ferry_cli(d, {"call", "demo.echo", "--", "--timeout"});
  CHECK(dashed.status == 2);
  CHECK_THAT(dashed.err, Catch::Contains("argument 1 is not JSON: --timeout"));
  CHECK(ferry_cli(d, {"list", "extra"}).status == 2);
}

TEST_CASE("ferry call refuses a mistyped option, unless it follows --", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"call", "demo.echo", "--timout", "5"},
        {"call", "demo.echo", "1", "--timout=5"},
        {"call", "--raw", "demo.echo_raw", "--timout", "5"},
        {"call", "demo.echo", "1", "--timout", "--", "2"}}) {
    auto r = ferry_cli(d, args);
    INFO(args[2] << " " << args[3]);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::StartsWith("ferry: unknown option --timout (see ferry call --help)"));
  }
  // After --, "--timout" is an ARG: not JSON, and named as such.
  auto after = ferry_cli(d, {"call", "demo.echo", "1", "--", "--timout"});
  CHECK(after.status == 2);
  CHECK_THAT(after.err, Catch::Contains("argument 2 is not JSON: --timout"));
  // A JSON value may start with a single -.
  CHECK(ferry_cli(d, {"call", "demo.echo", "-1.5e3"}).out == "-1500.0\n");
  // The usage line names the ARGs.
  auto help = ferry_cli(d, {"call", "--help"});
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Catch::Contains("call [OPTIONS] FN [ARG ...]\n"));
}

TEST_CASE("ferry call - reads the JSON payload array from stdin", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  const std::string big(200000, 'x');  // far past what a shell would quote comfortably
  auto r = ferry_cli(d, {"call", "demo.echo", "-"}, "[\"" + big + "\"]\n");
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "\"" + big + "\"\n");
  CHECK(ferry_cli(d, {"call", "demo.echo", "-"}, R"([{"n":[1, 2.5, "x,y"]}])").out == R"({"n":[1,2.5,"x,y"]})" "\n");
  // The array is sent as read, byte for byte: echo_raw answers the payload's
  // bytes, which ferry prints as they came, plus a newline.
  const std::string exact = "[123456789012345678901234567890, 1.50,\t-0, 1E+2 ]";
  auto digits = ferry_cli(d, {"call", "demo.echo_raw", "-"}, exact);
  INFO(digits.err);
  CHECK(digits.status == 0);
  CHECK(digits.out == exact + "\n");
  CHECK(digits.err.empty());  // stdin is a file, not a terminal: no hint
  auto object = ferry_cli(d, {"call", "demo.echo", "-"}, R"({"k":1})");
  CHECK(object.status == 2);
  CHECK_THAT(object.err, Catch::Contains("JSON array"));
  auto broken = ferry_cli(d, {"call", "demo.echo", "-"}, "[1,");
  CHECK(broken.status == 2);
  CHECK_THAT(broken.err, Catch::Contains("not JSON"));
  CHECK(ferry_cli(d, {"call", "demo.echo", "1", "-"}).status == 2);
  // After --, - is an ARG (and not JSON): stdin is not read.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"call", "demo.echo", "--", "-"},
                                               {"call", "--", "demo.echo", "-"}}) {
    auto dash = ferry_cli(d, args, "[1]");
    CHECK(dash.status == 2);
    CHECK(dash.out.empty());
    CHECK_THAT(dash.err, Catch::Contains("argument 1 is not JSON: -"));
  }
}

TEST_CASE("ferry call reading a terminal says how to end the payload", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  const std::string hint = "ferry: reading the payload from stdin; end with Ctrl-D\n";
  auto r = ferry_cli_on_tty(d, {"call", "demo.echo", "-"}, "[7]\n\x04");
  CHECK(r.status == 0);
  CHECK(r.out == "7\n");
  CHECK(r.err == hint);
  auto raw = ferry_cli_on_tty(d, {"call", "--raw", "demo.echo_raw"}, "bytes\n\x04");
  CHECK(raw.status == 0);
  CHECK(raw.out == "bytes\n");
  CHECK(raw.err == hint);
  CHECK(ferry_cli_on_tty(d, {"call", "demo.echo", "7"}, "").err.empty());  // no stdin, no hint
}

TEST_CASE("ferry call --raw sends stdin's bytes and writes the raw reply", "[cli]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 1\n");
  std::string every_byte;
  for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(i);
  const std::string payload = every_byte + std::string(1 << 20, '\0') + every_byte;
  auto r = ferry_cli(d, {"call", "--raw", "demo.echo_raw"}, payload);
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.size() == payload.size());
  CHECK(r.out == payload);  // no newline added, nothing re-encoded
  CHECK(ferry_cli(d, {"call", "--raw", "demo.noop"}, "not json at all").out == "null");
  auto with_arg = ferry_cli(d, {"call", "--raw", "demo.echo_raw", "1"});
  CHECK(with_arg.status == 2);
  CHECK_THAT(with_arg.err, Catch::Contains("--raw takes no ARG"));
}

TEST_CASE("ferry call reports typed errors with distinct exit codes", "[cli]") {
  FerrydProcess d({plugin_path("primes"), plugin_path("demo")});
  auto r = ferry_cli(d, {"call", "nope.nothing"});
  CHECK(r.status == 10 + FERRY_E_UNKNOWN_FUNCTION);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("unknown_function") && Catch::Contains("nope.nothing"));
  auto f = ferry_cli(d, {"call", "demo.fail", R"("boom")"});
  CHECK(f.status == 10 + FERRY_E_PLUGIN_ERROR);
  CHECK_THAT(f.err, Catch::Contains("boom"));
  auto bad = ferry_cli(d, {"call", "demo.echo", "not-json"});
  CHECK(bad.status == 2);
}

TEST_CASE("ferry list shows every function with plugin, version and executor", "[cli]") {
  FerrydProcess d({plugin_path("primes"), plugin_path("demo")});
  auto r = ferry_cli(d, {"list"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  for (const char* fn : {"primes.is_prime", "primes.factorize", "demo.echo", "demo.sleep_ms",
                         "demo.fail", "demo.crash"}) {
    CHECK_THAT(r.out, Catch::Contains(fn));
  }
  CHECK_THAT(r.out, Catch::Contains("thread"));
  CHECK_THAT(r.out, Catch::Contains("1.0.0"));
  CHECK_THAT(r.out, Catch::Contains("LOADED"));
  CHECK_THAT(r.out, Catch::Matches("(.|\\n)*primes\\.is_prime +primes +1\\.0\\.0 +thread +20[0-9-]+T[0-9:]+Z(.|\\n)*"));
}

TEST_CASE("ferry reload applies a changed config and prints the outcome; a bad one changes nothing", "[cli]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nworkers = 2\n");
  const std::string base = "[server]\nsocket_path = \"ferry.sock\"\nplugin_dir = \"plugins\"\n";
  std::ofstream(d.dir() / "server.toml.new") << base << "[plugins.demo]\nworkers = 0\n";
  std::filesystem::rename(d.dir() / "server.toml.new", d.dir() / "server.toml");
  auto bad = ferry_cli(d, {"reload"});
  CHECK(bad.status == 10 + FERRY_E_BAD_REQUEST);
  CHECK_THAT(bad.err, Catch::Contains("server.toml:5: plugins.demo.workers: must be 1..1024"));
  CHECK_THAT(ferry_cli(d, {"status"}).out, Catch::Contains("thread x2"));
  std::ofstream(d.dir() / "server.toml.new") << base << "[plugins.demo]\nworkers = 3\n";
  std::filesystem::rename(d.dir() / "server.toml.new", d.dir() / "server.toml");
  auto ok = ferry_cli(d, {"reload"});
  INFO(ok.err);
  CHECK(ok.status == 0);
  CHECK_THAT(ok.out, Catch::Contains("config: reloaded"));
  CHECK_THAT(ferry_cli(d, {"status"}).out, Catch::Contains("thread x3"));
}

TEST_CASE("ferry ping answers, and a missing server is a clear error", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  CHECK(ferry_cli(d, {"ping"}).status == 0);
  auto gone = run_command({ferry_cli_path(), "--socket", d.dir().string() + "/nothing.sock", "ping"});
  CHECK(gone.status == 3);
  CHECK_THAT(gone.err, Catch::Contains("nothing.sock"));
}

TEST_CASE("ferry ping fails once ferryd stops serving: draining, gone, or a stale socket file", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  auto sleeper = ferry::test::connect(d);
  REQUIRE(sleeper->send_call("demo.sleep_ms", "[60000]") != 0);
  REQUIRE(sleeper->flush());
  auto probe = ferry::test::connect(d);  // connected before the drain
  ferry::test::status_until(*probe, "demo", [](const nlohmann::json& st) { return st["running"] == 1; },
                            "demo.sleep_ms running");
  REQUIRE(ferry_cli(d, {"ping"}).status == 0);

  kill(d.pid(), SIGTERM);  // drains: the sleeping call keeps ferryd in its drain
  ferry::test::wait_until(
      [&] { return ferry::test::must_call(*probe, "ferry.status", "[]").code == FERRY_E_SHUTTING_DOWN; },
      "ferryd draining");
  auto pong = probe->ping("still");  // the loop still answers PINGs: no proof of serving
  REQUIRE(pong.has_value());
  CHECK(pong->kind == ferry::ReplyKind::pong);
  auto draining = ferry_cli(d, {"ping"});
  CHECK(draining.status == 3);  // its socket is gone with the drain's first step
  CHECK_THAT(draining.err, Catch::Contains(d.socket()));

  sleeper.reset();  // the call is cancelled with its connection: the drain ends
  CHECK(d.wait() == 0);
  CHECK(ferry_cli(d, {"ping"}).status == 3);

  // A socket file nobody listens on (a ferryd that was killed): refused.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", d.socket().c_str());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  close(fd);
  auto stale = ferry_cli(d, {"ping"});
  CHECK(stale.status == 3);
  CHECK_THAT(stale.err, Catch::Contains("is ferryd running?"));
}

TEST_CASE("ferryd --check-config validates a config file", "[cli]") {
  FerrydProcess d({plugin_path("demo")});
  auto ok = run_command({FERRYD, "--check-config", (d.dir() / "server.toml").string()});
  CHECK(ok.status == 0);
  std::ofstream(d.dir() / "bad.toml") << "[plugins.demo]\nworkers = 0\n";
  auto bad = run_command({FERRYD, "--check-config", (d.dir() / "bad.toml").string()});
  CHECK(bad.status == 1);
  CHECK_THAT(bad.err, Catch::Contains("bad.toml:2: plugins.demo.workers: must be 1..1024"));
}
