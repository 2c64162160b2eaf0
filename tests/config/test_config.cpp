// server.toml parsing: valid files land in the struct; each bad input is
// refused with "<file>:<line>: <key.path>: <message>".
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <string>

#include "config/config.hpp"

namespace fs = std::filesystem;
using namespace ferry::config;

namespace {

// Parses `text` as /etc/ferry/server.toml and returns the Config (must succeed).
Config parse_ok(std::string_view text, const fs::path& file = "/etc/ferry/server.toml") {
  ferry::Result<Config> r = parse_config_text(text, file);
  INFO(r.status().message());
  REQUIRE(r.ok());
  return *r;
}

// Parses `text` as "test.toml" and returns the error (must fail).
std::string parse_error(std::string_view text) {
  ferry::Result<Config> r = parse_config_text(text, "test.toml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == FERRY_E_BAD_REQUEST);
  return r.status().message();
}

// A fresh directory under /tmp, removed at scope exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() /
                  ("ferry-test-config-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, std::string_view text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }
};

constexpr const char* kFull = R"(# every key
[server]
socket_path = "/run/ferry/ferry.sock"
socket_mode = "0600"
plugin_dir = "/opt/ferry/plugins"
log_level = "debug"
max_frame_bytes = 1048576
max_connections = 10

[defaults]
executor = "thread"
workers = 8
queue_limit = 0
timeout_ms = 1000

[plugins.primes]
executor = "thread"
workers = 2
queue_limit = 5
timeout_ms = 60000
)";

}  // namespace

TEST_CASE("full file: every key lands in the struct", "[config]") {
  Config c = parse_ok(kFull);
  CHECK(c.file == "/etc/ferry/server.toml");
  CHECK(c.server.socket_path == "/run/ferry/ferry.sock");
  CHECK(c.server.socket_mode == 0600);
  CHECK(c.server.plugin_dir == "/opt/ferry/plugins");
  CHECK(c.server.log_level == "debug");
  CHECK(c.server.max_frame_bytes == 1048576u);
  CHECK(c.server.max_connections == 10u);
  CHECK(c.defaults.executor == ExecutorKind::thread);
  CHECK(c.defaults.workers == 8);
  CHECK(c.defaults.queue_limit == 0);
  CHECK(c.defaults.timeout_ms == 1000u);
  REQUIRE(c.plugins.size() == 1);
  const PluginConfig& p = c.plugins.at("primes");
  CHECK(p.executor == ExecutorKind::thread);
  CHECK(p.workers == 2);
  CHECK(p.queue_limit == 5);
  CHECK(p.timeout_ms == 60000u);
}

TEST_CASE("empty file: struct defaults, plugin_dir beside the file", "[config]") {
  Config c = parse_ok("");
  const ServerConfig s;
  const PluginConfig d;
  CHECK(c.server.socket_path == "/tmp/ferry.sock");
  CHECK(c.server.socket_mode == 0660);
  CHECK(c.server.plugin_dir == "/etc/ferry/plugins");
  CHECK(c.server.log_level == "info");
  CHECK(c.server.max_frame_bytes == s.max_frame_bytes);
  CHECK(c.server.max_connections == s.max_connections);
  CHECK(c.defaults.executor == d.executor);
  CHECK(c.defaults.workers == d.workers);
  CHECK(c.defaults.queue_limit == d.queue_limit);
  CHECK(c.defaults.timeout_ms == d.timeout_ms);
  CHECK(c.plugins.empty());
}

TEST_CASE("range limits themselves are accepted", "[config]") {
  Config lo = parse_ok(
      "[server]\nmax_frame_bytes = 1024\nmax_connections = 1\nsocket_mode = \"0\"\n"
      "[defaults]\nworkers = 1\nqueue_limit = 0\ntimeout_ms = 1\n");
  CHECK(lo.server.max_frame_bytes == 1024u);
  CHECK(lo.server.socket_mode == 0u);
  CHECK(lo.defaults.workers == 1);
  Config hi = parse_ok(
      "[server]\nmax_frame_bytes = 1073741824\nmax_connections = 65536\nsocket_mode = \"777\"\n"
      "[defaults]\nworkers = 1024\nqueue_limit = 1000000\ntimeout_ms = 86400000\n");
  CHECK(hi.server.max_frame_bytes == 1073741824u);
  CHECK(hi.server.max_connections == 65536u);
  CHECK(hi.server.socket_mode == 0777u);
  CHECK(hi.defaults.workers == 1024);
  CHECK(hi.defaults.queue_limit == 1000000);
  CHECK(hi.defaults.timeout_ms == 86400000u);
}

TEST_CASE("plugin sections inherit omitted keys from [defaults]", "[config]") {
  Config c = parse_ok(
      "[plugins.a]\nworkers = 3\n"
      "[defaults]\nworkers = 7\nqueue_limit = 9\ntimeout_ms = 500\n"
      "[plugins.b]\n");
  CHECK(c.plugins.at("a").workers == 3);
  CHECK(c.plugins.at("a").queue_limit == 9);
  CHECK(c.plugins.at("a").timeout_ms == 500u);
  CHECK(c.plugins.at("b").workers == 7);
  SECTION("plugin() falls back to [defaults] for an unlisted plugin") {
    CHECK(&c.plugin("a") == &c.plugins.at("a"));
    CHECK(&c.plugin("nope") == &c.defaults);
    CHECK(c.plugin("nope").workers == 7);
  }
}

TEST_CASE("relative paths resolve against the config file's directory", "[config]") {
  Config c = parse_ok("[server]\nsocket_path = \"run/f.sock\"\nplugin_dir = \"../lib/p\"\n");
  CHECK(c.server.socket_path == "/etc/ferry/run/f.sock");
  CHECK(c.server.plugin_dir == "/etc/lib/p");

  SECTION("a relative file name is made absolute against the cwd") {
    Config r = parse_ok("[server]\nplugin_dir = \"p\"\n", "conf/./server.toml");
    CHECK(r.file.is_absolute());
    CHECK(r.file == fs::current_path() / "conf/server.toml");
    CHECK(r.server.plugin_dir == fs::current_path() / "conf/p");
  }
}

TEST_CASE("a TOML syntax error names file, line and column", "[config]") {
  std::string e = parse_error("[server]\nlog_level = \n");
  CHECK_THAT(e, Catch::StartsWith("test.toml:2:13: "));
  CHECK(e.size() > std::string("test.toml:2:13: ").size());
  CHECK_THAT(parse_error("[server]\n[server]\n"), Catch::StartsWith("test.toml:2:"));
}

TEST_CASE("wrong types are refused", "[config]") {
  CHECK(parse_error("[defaults]\nworkers = \"4\"\n") ==
        "test.toml:2: defaults.workers: must be an integer");
  CHECK(parse_error("[server]\n\nmax_frame_bytes = 1.5\n") ==
        "test.toml:3: server.max_frame_bytes: must be an integer");
  CHECK(parse_error("[server]\nlog_level = 3\n") == "test.toml:2: server.log_level: must be a string");
  CHECK(parse_error("[server]\nsocket_mode = 0o660\n") ==
        "test.toml:2: server.socket_mode: must be a string");
  CHECK(parse_error("[server]\nsocket_path = [\"a\"]\n") ==
        "test.toml:2: server.socket_path: must be a string");
  CHECK(parse_error("[plugins.x]\nexecutor = true\n") ==
        "test.toml:2: plugins.x.executor: must be a string");
  CHECK(parse_error("\nserver = 1\n") == "test.toml:2: server: must be a table");
  CHECK(parse_error("defaults = \"x\"\n") == "test.toml:1: defaults: must be a table");
  CHECK(parse_error("plugins = 1\n") == "test.toml:1: plugins: must be a table");
  CHECK(parse_error("[plugins]\nx = 1\n") == "test.toml:2: plugins.x: must be a table");
  CHECK(parse_error("[[plugins.x]]\nworkers = 1\n") == "test.toml:1: plugins.x: must be a table");
}

TEST_CASE("each ranged key is refused just outside its range", "[config]") {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[defaults]\nworkers = 0\n", "test.toml:2: defaults.workers: must be 1..1024"},
      {"[defaults]\nworkers = 1025\n", "test.toml:2: defaults.workers: must be 1..1024"},
      {"[defaults]\nqueue_limit = -1\n", "test.toml:2: defaults.queue_limit: must be 0..1000000"},
      {"[defaults]\nqueue_limit = 1000001\n",
       "test.toml:2: defaults.queue_limit: must be 0..1000000"},
      {"[defaults]\ntimeout_ms = 0\n", "test.toml:2: defaults.timeout_ms: must be 1..86400000"},
      {"[defaults]\ntimeout_ms = 86400001\n",
       "test.toml:2: defaults.timeout_ms: must be 1..86400000"},
      {"[server]\nmax_frame_bytes = 1023\n",
       "test.toml:2: server.max_frame_bytes: must be 1024..1073741824"},
      {"[server]\nmax_frame_bytes = 1073741825\n",
       "test.toml:2: server.max_frame_bytes: must be 1024..1073741824"},
      {"[server]\nmax_connections = 0\n", "test.toml:2: server.max_connections: must be 1..65536"},
      {"[server]\nmax_connections = 65537\n",
       "test.toml:2: server.max_connections: must be 1..65536"},
      {"[server]\nmax_connections = -9223372036854775808\n",
       "test.toml:2: server.max_connections: must be 1..65536"},
      {"# c\n\n[plugins.primes]\nexecutor = \"thread\"\nworkers = 2\n\n\n\n\n\n\nworkers2 = 1\n",
       "test.toml:12: plugins.primes.workers2: unknown key"},
      {"[plugins.primes]\nqueue_limit = 1\n\n\n\nworkers = 2000\n",
       "test.toml:6: plugins.primes.workers: must be 1..1024"},
      {"[plugins.p]\ntimeout_ms = 86400001\n",
       "test.toml:2: plugins.p.timeout_ms: must be 1..86400000"},
      {"[plugins.p]\nqueue_limit = -5\n", "test.toml:2: plugins.p.queue_limit: must be 0..1000000"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    CHECK(parse_error(c.text) == c.error);
  }
}

TEST_CASE("unknown keys and tables are refused", "[config]") {
  CHECK(parse_error("[server]\nsocket = \"x\"\n") == "test.toml:2: server.socket: unknown key");
  CHECK(parse_error("[defaults]\nworker = 2\n") == "test.toml:2: defaults.worker: unknown key");
  CHECK(parse_error("[plugins.demo]\n\ntimeout = 5\n") ==
        "test.toml:3: plugins.demo.timeout: unknown key");
  CHECK(parse_error("[plugins.demo]\nsandbox.net = false\n") ==
        "test.toml:2: plugins.demo.sandbox.net: unknown key");
  CHECK(parse_error("[server]\n[sandbox]\nx = 1\n") == "test.toml:2: sandbox: unknown key");
  CHECK(parse_error("workers = 4\n") == "test.toml:1: workers: unknown key");
  CHECK(parse_error("[server.tls]\n") == "test.toml:1: server.tls: unknown key");
}

TEST_CASE("executor is thread or process", "[config]") {
  CHECK(parse_error("[defaults]\nexecutor = \"fork\"\n") ==
        "test.toml:2: defaults.executor: must be \"thread\" or \"process\"");
  CHECK(parse_error("[defaults]\nexecutor = \"Thread\"\n") ==
        "test.toml:2: defaults.executor: must be \"thread\" or \"process\"");
  auto r = parse_config_text("[plugins.demo]\nexecutor = \"process\"\n", "/etc/ferry/test.toml");
  REQUIRE(r.ok());
  CHECK(r->plugin("demo").executor == ferry::config::ExecutorKind::process);
}

TEST_CASE("process executor settings and the sandbox table", "[config]") {
  auto r = parse_config_text(
      "[defaults.sandbox]\nmemory_mb = 512\n"
      "[plugins.demo]\nexecutor = \"process\"\nmax_calls_per_worker = 100\nmax_rss_mb = 300\n"
      "[plugins.demo.sandbox]\nnetwork = true\nread_paths = [\"data\", \"/srv/in\"]\n"
      "write_paths = [\"/tmp/out\"]\ncpu_seconds = 60\nmax_files = 32\nmax_procs = 8\n"
      "seccomp = false\nallow_weaker = true\nenabled = true\n",
      "/etc/ferry/test.toml");
  INFO(r.status().message());
  REQUIRE(r.ok());
  const auto& p = r->plugin("demo");
  CHECK(p.max_calls_per_worker == 100);
  CHECK(p.max_rss_mb == 300);
  CHECK(p.sandbox.network);
  CHECK(p.sandbox.read_paths == std::vector<std::string>{"/etc/ferry/data", "/srv/in"});
  CHECK(p.sandbox.write_paths == std::vector<std::string>{"/tmp/out"});
  CHECK(p.sandbox.memory_mb == 512);  // inherited from [defaults.sandbox]
  CHECK(p.sandbox.cpu_seconds == 60);
  CHECK(p.sandbox.max_files == 32);
  CHECK(p.sandbox.max_procs == 8);
  CHECK_FALSE(p.sandbox.seccomp);
  CHECK(p.sandbox.allow_weaker);
  CHECK(r->plugin("other").sandbox.memory_mb == 512);
  CHECK_FALSE(r->plugin("other").sandbox.network);

  CHECK(parse_error("[plugins.demo.sandbox]\nnetwork = 1\n") ==
        "test.toml:2: plugins.demo.sandbox.network: must be true or false");
  CHECK(parse_error("[plugins.demo.sandbox]\nread_paths = \"/x\"\n") ==
        "test.toml:2: plugins.demo.sandbox.read_paths: must be an array of paths");
  CHECK(parse_error("[plugins.demo.sandbox]\nwrite_paths = [\"/x\", 3]\n") ==
        "test.toml:2: plugins.demo.sandbox.write_paths[1]: must be a string");
  CHECK(parse_error("[plugins.demo.sandbox]\nmax_files = 2\n") ==
        "test.toml:2: plugins.demo.sandbox.max_files: must be 16..1048576");
  CHECK(parse_error("[plugins.demo]\nmax_rss_mb = -1\n") ==
        "test.toml:2: plugins.demo.max_rss_mb: must be 0..1048576");
  CHECK(parse_error("[plugins.demo]\nsandbox = 1\n") ==
        "test.toml:2: plugins.demo.sandbox: must be a table");
}

TEST_CASE("plugin names are [A-Za-z0-9_]+ and not ferry", "[config]") {
  CHECK(parse_ok("[plugins.Good_name_2]\n").plugins.count("Good_name_2") == 1);
  const char* bad = "plugin name must match [A-Za-z0-9_]+";
  CHECK(parse_error("\n[plugins.\"bad-name\"]\n") == std::string("test.toml:2: plugins.bad-name: ") + bad);
  CHECK(parse_error("[plugins.\"a b\"]\n") == std::string("test.toml:1: plugins.a b: ") + bad);
  CHECK(parse_error("[plugins.\"\"]\n") == std::string("test.toml:1: plugins.: ") + bad);
  CHECK(parse_error("[plugins.\"caf\u00e9\"]\n") ==
        std::string("test.toml:1: plugins.caf\u00e9: ") + bad);
  CHECK(parse_error("[plugins.ok]\n[plugins.ferry]\nworkers = 1\n") ==
        "test.toml:2: plugins.ferry: \"ferry\" is reserved for built-in functions");
}

TEST_CASE("log_level must be a known level", "[config]") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    CHECK(parse_ok(std::string("[server]\nlog_level = \"") + level + "\"\n").server.log_level == level);
  const std::string msg = "must be one of trace, debug, info, warn, error, critical, off";
  CHECK(parse_error("[server]\nlog_level = \"verbose\"\n") == "test.toml:2: server.log_level: " + msg);
  CHECK(parse_error("[server]\nlog_level = \"INFO\"\n") == "test.toml:2: server.log_level: " + msg);
  CHECK(parse_error("[server]\nlog_level = \"\"\n") == "test.toml:2: server.log_level: " + msg);
}

TEST_CASE("log_format is text or json, log_file a path beside the config file", "[config]") {
  const Config defaults = parse_ok("");
  CHECK(defaults.server.log_format == ferry::config::LogFormat::text);
  CHECK(defaults.server.log_file.empty());  // stderr
  CHECK(parse_ok("[server]\nlog_format = \"json\"\n").server.log_format == ferry::config::LogFormat::json);
  CHECK(parse_ok("[server]\nlog_format = \"text\"\n").server.log_format == ferry::config::LogFormat::text);
  CHECK(parse_ok("[server]\nlog_file = \"log/ferryd.log\"\n").server.log_file == "/etc/ferry/log/ferryd.log");
  CHECK(parse_ok("[server]\nlog_file = \"/var/log/ferryd.log\"\n").server.log_file == "/var/log/ferryd.log");
  CHECK(parse_error("[server]\nlog_format = \"JSON\"\n") ==
        "test.toml:2: server.log_format: must be \"text\" or \"json\"");
  CHECK(parse_error("[server]\nlog_format = 1\n") == "test.toml:2: server.log_format: must be a string");
  CHECK(parse_error("[server]\nlog_file = \"\"\n") == "test.toml:2: server.log_file: must be a non-empty path");
  CHECK(parse_error("[server]\nlog_files = \"x\"\n").find("server.log_files") != std::string::npos);
}

TEST_CASE("socket_mode must be an octal string up to 0777", "[config]") {
  const std::string msg = "must be an octal string such as \"0660\", at most \"0777\"";
  for (const char* mode : {"", "0680", "1777", "0o660", "+660", "-1", "660 ", "rw-rw----",
                           "077777777777777777777777"}) {
    INFO(mode);
    CHECK(parse_error(std::string("[server]\nsocket_mode = \"") + mode + "\"\n") ==
          "test.toml:2: server.socket_mode: " + msg);
  }
}

TEST_CASE("paths must be non-empty; socket_path must fit sun_path", "[config]") {
  CHECK(parse_error("[server]\nplugin_dir = \"\"\n") ==
        "test.toml:2: server.plugin_dir: must be a non-empty path");
  CHECK(parse_error("[server]\nsocket_path = \"\"\n") ==
        "test.toml:2: server.socket_path: must be a non-empty path");
  const std::string longest = "/" + std::string(106, 's');
  CHECK(parse_ok("[server]\nsocket_path = \"" + longest + "\"\n").server.socket_path == longest);
  CHECK_THAT(parse_error("[server]\nsocket_path = \"" + longest + "s\"\n"),
             Catch::StartsWith("test.toml:2: server.socket_path: resolves to /sss"));
}

TEST_CASE("parse_config_file reads a file; errors use the path as given", "[config]") {
  TempDir dir;
  fs::path good = dir.write("good.toml", "[server]\nplugin_dir = \"p\"\n[plugins.x]\nworkers = 2\n");
  ferry::Result<Config> r = parse_config_file(good);
  INFO(r.status().message());
  REQUIRE(r.ok());
  CHECK(r->file == good);
  CHECK(r->server.plugin_dir == dir.path / "p");
  CHECK(r->plugin("x").workers == 2);

  fs::path bad = dir.write("bad.toml", "[defaults]\n\nworkers = 0\n");
  CHECK(parse_config_file(bad).status().message() == bad.string() + ":3: defaults.workers: must be 1..1024");
}

TEST_CASE("a missing or unreadable file is reported with strerror", "[config]") {
  ferry::Result<Config> r = parse_config_file("/nonexistent/ferry/server.toml");
  CHECK_FALSE(r.ok());
  CHECK(r.status().message() == "/nonexistent/ferry/server.toml: cannot read: No such file or directory");
  TempDir dir;
  CHECK(parse_config_file(dir.path).status().message() == dir.path.string() + ": cannot read: Is a directory");
}

TEST_CASE("the bundled config/server.toml parses cleanly", "[config]") {
  const fs::path file = fs::path(FERRY_SOURCE_DIR) / "config/server.toml";
  ferry::Result<Config> r = parse_config_file(file);
  INFO(r.status().message());
  REQUIRE(r.ok());
  const Config& c = *r;
  CHECK(c.server.socket_path == "/tmp/ferry.sock");
  CHECK(c.server.plugin_dir == (fs::path(FERRY_SOURCE_DIR) / "build/plugins").lexically_normal());
  CHECK(c.server.log_level == "info");
  CHECK(c.plugin("primes").executor == ExecutorKind::thread);
  CHECK(c.plugin("primes").workers == 2);
  CHECK(c.plugin("demo").workers == 4);
  CHECK(c.plugin("demo").timeout_ms == 60000u);
  CHECK(c.plugin("other").workers == c.defaults.workers);
}

TEST_CASE("metrics_listen is off by default, else ADDRESS:PORT", "[config]") {
  CHECK(parse_ok("").server.metrics_listen.empty());
  for (const char* ok : {"127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464", "[::]:65535", ""})
    CHECK(parse_ok(std::string("[server]\nmetrics_listen = \"") + ok + "\"\n").server.metrics_listen == ok);
  const std::string msg = "must be \"ADDRESS:PORT\", e.g. \"127.0.0.1:9464\" or \"[::1]:9464\"";
  for (const char* bad : {"9464", "localhost:9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:9464",
                          "[::1]", "127.0.0.1:94x", "[not-an-address]:1"}) {
    CHECK(parse_error(std::string("[server]\nmetrics_listen = \"") + bad + "\"\n") ==
          "test.toml:2: server.metrics_listen: " + msg);
  }
}
