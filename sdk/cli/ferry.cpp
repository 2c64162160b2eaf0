// ferry: the command-line client of ferryd.
//
//   ferry [--socket PATH] call FN [ARG ...] [--timeout MS] [--priority P]
//   ferry [--socket PATH] call FN - [...]          (the JSON array from stdin)
//   ferry [--socket PATH] call FN [...] -- ARG ... (ARGs taken as is, even - or --x)
//   ferry [--socket PATH] call --raw FN [...]      (stdin's bytes, reply as is)
//   ferry [--socket PATH] list [--json]
//   ferry [--socket PATH] status [--json]
//   ferry [--socket PATH] ping [--count N]
//   ferry [--socket PATH] reload [--json]
//
// Exit status (printed by --help too, from exit_status_help()):
//   0  success                        3  cannot connect to ferryd
//   1  unexpected reply from server   4  connection lost
//   2  usage error                   10 + code  the server answered ERROR code:
//   11 unknown_function  12 bad_request  13 busy  14 timeout  15 cancelled
//   16 worker_crashed  17 out_of_memory  18 plugin_error  19 permission_denied
//   20 shutting_down  21 sandbox_violation  22 call_depth_exceeded
//   23 unsupported_version  24 internal (also: an error code this ferry does not know)
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "ferry/client.hpp"
#include "ferry/errors.h"

namespace {

using nlohmann::json;
using ferry::Priority;

constexpr int kExitUnexpected = 1, kExitUsage = 2, kExitNoConnect = 3, kExitLost = 4;
constexpr int kExitServerError = 10;  // + ferry_code
constexpr std::uint32_t kReplyGraceMs = 5000;  // the client waits --timeout plus this

struct Options {
  std::string socket = "/tmp/ferry.sock";
  std::string fn;
  std::vector<std::string> args;  // call: the ARGs, exactly as given
  std::size_t verbatim = 0;        // call: how many of the last ARGs came after `--`
  bool raw = false;
  std::uint32_t timeout_ms = 0;
  std::string priority = "normal";
  bool json = false;
  int count = 1;
};

int fail(int status, const std::string& message) {
  std::cerr << "ferry: " << message << '\n';
  return status;
}

int server_error(ferry_code code, const std::string& message) {
  return fail(kExitServerError + code, std::string(ferry_code_name(code)) + ": " + message);
}

std::string exit_status_help() {
  std::string s =
      "Exit status:\n"
      "  0   success\n  1   unexpected reply from the server\n  2   usage error\n"
      "  3   cannot connect to ferryd\n  4   connection lost\n"
      "  10+code: the server answered with an error:\n";
  for (int code = 1; code < FERRY_CODE_COUNT; ++code)
    s += "  " + std::to_string(kExitServerError + code) + "  " + ferry_code_name(code) + "\n";
  return s;
}

// The usage line of `ferry call` names its ARGs, which CLI11 takes as extras
// and so cannot list by itself.
class CallFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    std::string usage = CLI::Formatter::make_usage(app, std::move(name));  // "Usage: ... FN\n"
    return usage.insert(usage.find_last_not_of('\n') + 1, " [ARG ...]");
  }
};

void add_call_command(CLI::App& app, Options& o) {
  CLI::App* call = app.add_subcommand("call", "Call a function and print its result");
  call->formatter(std::make_shared<CallFormatter>());
  call->add_option("FN", o.fn, "Function name, plugin.function; its ARGs follow (see below)")->required()->check([](const std::string& fn) {
    return fn.empty() || fn.size() > 255 ? std::string("must be 1..255 bytes") : std::string();
  });
  // The ARGs are taken as extras, not as a vector option: CLI11 would split a
  // bracketed value such as [1,2] at its commas into several arguments.
  call->allow_extras();
  call->footer(
      "ARG: each one JSON value: 7, true, null, '[1,2]', '{\"k\":[1,2]}';\n"
      "  strings need JSON quotes: '\"hi\"'. The payload is the JSON array of them.\n"
      "  A single - reads that JSON array from stdin instead. An ARG may start with\n"
      "  one - (-5); one that starts with -- is taken for a mistyped option.\n"
      "  Everything after -- is an ARG, even - (then not stdin) and --x.\n"
      "With --raw, no ARG: stdin's bytes are the payload, and the reply is written\n"
      "  to stdout as it came, for raw functions and binary data.\n\n" + exit_status_help());
  call->add_flag("--raw", o.raw, "Send stdin's bytes as the payload; write the raw reply to stdout");
  call->add_option("--timeout", o.timeout_ms, "Deadline in milliseconds (0: the plugin's default)");
  call->add_option("--priority", o.priority, "Queue priority")
      ->check(CLI::IsMember({"normal", "high", "low"}))
      ->capture_default_str();
}

void add_list_command(CLI::App& app, Options& o) {
  CLI::App* list = app.add_subcommand("list", "List the functions the server hosts");
  list->add_flag("--json", o.json, "Print the raw ferry.list JSON");
}

void add_status_command(CLI::App& app, Options& o) {
  CLI::App* status = app.add_subcommand("status", "Show each plugin's pool: queue, calls, worker processes");
  status->add_flag("--json", o.json, "Print the raw ferry.status JSON");
}

void add_reload_command(CLI::App& app, Options& o) {
  CLI::App* reload = app.add_subcommand(
      "reload", "Re-read server.toml and plugin_dir now and apply the changes (as SIGHUP does); print the outcome");
  reload->add_flag("--json", o.json, "Print the raw ferry.reload JSON");
}

void add_ping_command(CLI::App& app, Options& o) {
  CLI::App* ping = app.add_subcommand("ping", "Measure the round-trip time to the server");
  ping->add_option("--count,-c", o.count, "Number of pings")->check(CLI::Range(1, 1000000));
}

void configure(CLI::App& app, Options& o) {
  // Subcommands inherit the footer: every --help shows the exit status table.
  if (const char* env = std::getenv("FERRY_SOCKET"); env && *env) o.socket = env;
  app.add_option("--socket,-s", o.socket, "ferryd's Unix socket (default: $FERRY_SOCKET, else /tmp/ferry.sock)");
  app.require_subcommand(1);
  app.fallthrough();  // --socket may follow the command too
  app.allow_extras();  // call's ARGs fall through to here; other commands refuse extras
  app.footer(exit_status_help());
  add_call_command(app, o);
  add_list_command(app, o);
  add_status_command(app, o);
  add_reload_command(app, o);
  add_ping_command(app, o);
}

// Returns an exit status when the program should stop here (help or bad usage).
std::optional<int> parse_args(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
}

std::string read_stdin() {
  if (isatty(STDIN_FILENO)) std::cerr << "ferry: reading the payload from stdin; end with Ctrl-D\n";
  std::string data;
  char buf[1 << 16];
  std::size_t n;
  do {  // a short read is the end (or an error): on a terminal, one Ctrl-D ends it
    n = std::fread(buf, 1, sizeof buf, stdin);
    data.append(buf, n);
  } while (n == sizeof buf);
  return data;
}

// `ferry call FN -`: the payload is stdin's JSON array, sent as read (so
// numbers keep every digit). 0 or a usage exit status.
int payload_from_stdin(std::string* payload) {
  *payload = read_stdin();
  if (std::ferror(stdin)) return fail(kExitUsage, "cannot read stdin");
  const json value = json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (!value.is_array())
    return fail(kExitUsage, value.is_discarded() ? "stdin is not JSON" : "stdin must hold a JSON array of the arguments");
  return 0;
}

// How many of call's n_args ARGs came after the first `--` of argv: they are
// the last ones (CLI11 keeps extras in order, and FN may take the first).
std::size_t args_after_dashdash(int argc, char** argv, std::size_t n_args) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") return std::min<std::size_t>(argc - 1 - i, n_args);
  }
  return 0;
}

// An ARG before `--` that starts with -- is a mistyped option: no JSON value
// starts so. 0 or a usage exit status.
int check_no_unknown_option(const Options& o) {
  for (std::size_t i = 0; i + o.verbatim < o.args.size(); ++i) {
    const std::string& arg = o.args[i];
    if (arg.starts_with("--"))
      return fail(kExitUsage, "unknown option " + arg.substr(0, arg.find('=')) + " (see ferry call --help)");
  }
  return 0;
}

// The call payload: the JSON array of the arguments, stdin's array for a
// lone "-" (not after `--`), or stdin's bytes with --raw. 0 or a usage exit status.
int build_payload(const Options& o, std::string* payload) {
  if (int status = check_no_unknown_option(o)) return status;
  if (o.raw) {
    if (!o.args.empty()) return fail(kExitUsage, "--raw takes no ARG: the payload is read from stdin");
    *payload = read_stdin();
    return std::ferror(stdin) ? fail(kExitUsage, "cannot read stdin") : 0;
  }
  if (o.args.size() == 1 && o.args[0] == "-" && o.verbatim == 0) return payload_from_stdin(payload);
  json array = json::array();
  for (std::size_t i = 0; i < o.args.size(); ++i) {
    json value = json::parse(o.args[i], nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded())
      return fail(kExitUsage, "argument " + std::to_string(i + 1) + " is not JSON: " + o.args[i] +
                                  "\n       (strings need JSON quotes, e.g. '\"hi\"'; - reads stdin only as the only ARG, not after --)");
    array.push_back(std::move(value));
  }
  *payload = array.dump();
  return 0;
}

std::unique_ptr<ferry::Client> connect_or_report(const std::string& socket, int* status) {
  std::string error;
  ferry_code refused = FERRY_OK;
  std::unique_ptr<ferry::Client> client = ferry::Client::connect(socket, &error, &refused);
  if (client) return client;
  if (refused != FERRY_OK) {
    *status = server_error(refused, error);
  } else {
    *status = fail(kExitNoConnect, error + "\n       is ferryd running? Start it (ferryd --config server.toml)" +
                                       " or point --socket / FERRY_SOCKET at its socket.");
  }
  return nullptr;
}

// Exit status for a missing reply: the connection died, or our wait ran out.
int no_reply(const ferry::Client& client) {
  if (client.connected()) return server_error(FERRY_E_TIMEOUT, client.last_error());
  return fail(kExitLost, "connection lost: " + client.last_error());
}

// Prints a result to stdout (with a newline unless raw), or an error to
// stderr; returns the exit status.
int report(const ferry::Client& client, const std::optional<ferry::Reply>& reply, bool raw = false) {
  if (!reply) return no_reply(client);
  if (reply->kind == ferry::ReplyKind::error) return server_error(reply->code, reply->data);
  if (reply->kind != ferry::ReplyKind::result) return fail(kExitUnexpected, "unexpected reply from server");
  std::cout.write(reply->data.data(), static_cast<std::streamsize>(reply->data.size()));
  if (!raw) std::cout << '\n';
  std::cout.flush();
  return std::cout ? 0 : fail(kExitUnexpected, "cannot write the result to stdout");
}

Priority priority_of(const std::string& name) {
  return name == "high" ? Priority::high : name == "low" ? Priority::low : Priority::normal;
}

int run_call(const Options& o) {
  std::string payload;
  if (int status = build_payload(o, &payload)) return status;
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  if (o.timeout_ms) client->set_timeout(o.timeout_ms + kReplyGraceMs);
  if (client->send_call(o.fn, payload, o.timeout_ms, priority_of(o.priority)) == 0)
    return client->connected() ? fail(kExitUsage, client->last_error()) : no_reply(*client);
  return report(*client, client->read_reply(), o.raw);
}

std::string string_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

using Row = std::array<std::string, 5>;  // FUNCTION PLUGIN VERSION EXECUTOR LOADED

// Rows of the table from a ferry.list reply; nullopt when it has the wrong shape.
std::optional<std::vector<Row>> list_rows(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object() || !doc.contains("plugins") || !doc["plugins"].is_array()) return std::nullopt;
  std::vector<Row> rows;
  for (const json& plugin : doc["plugins"]) {
    if (!plugin.is_object() || !plugin.contains("functions") || !plugin["functions"].is_array()) return std::nullopt;
    for (const json& fn : plugin["functions"]) {
      if (!fn.is_string()) return std::nullopt;
      rows.push_back({fn.get<std::string>(), string_field(plugin, "name"), string_field(plugin, "version"),
                      string_field(plugin, "executor"), string_field(plugin, "loaded_at")});
    }
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

void print_table(std::vector<Row> rows) {
  rows.insert(rows.begin(), Row{"FUNCTION", "PLUGIN", "VERSION", "EXECUTOR", "LOADED"});
  std::array<std::size_t, 5> width{};
  for (const Row& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  for (const Row& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c)
      line += c + 1 < r.size() ? r[c] + std::string(width[c] - r[c].size() + 2, ' ') : r[c];
    std::cout << line << '\n';
  }
}

// Calls a built-in (ferry.list, ferry.status): --json or an error reply is
// reported as is; otherwise `print` renders the reply and returns the status.
template <class Print>
int run_builtin(const Options& o, const char* fn, Print print) {
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  std::optional<ferry::Reply> reply = client->call(fn, "[]");
  if (o.json || !reply || reply->kind != ferry::ReplyKind::result) return report(*client, reply);
  return print(reply->data);
}

int run_list(const Options& o) {
  return run_builtin(o, "ferry.list", [](const std::string& data) {
    std::optional<std::vector<Row>> rows = list_rows(data);
    if (!rows) return fail(kExitUnexpected, "unexpected ferry.list reply: " + data);
    print_table(std::move(*rows));
    return 0;
  });
}

std::uint64_t uint_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

// One line per plugin, then one per worker process of a process pool.
void print_status(const json& doc) {
  for (const json& p : doc["plugins"]) {
    std::printf("%s %s  %s x%llu  queued %llu  running %llu  completed %llu", string_field(p, "name").c_str(),
                string_field(p, "version").c_str(), string_field(p, "executor").c_str(),
                (unsigned long long)uint_field(p, "workers"), (unsigned long long)uint_field(p, "queued"),
                (unsigned long long)uint_field(p, "running"), (unsigned long long)uint_field(p, "completed"));
    if (string_field(p, "executor") == "process") {
      std::printf("  restarts %llu", (unsigned long long)uint_field(p, "restarts"));
    } else {
      std::printf("  threads %llu  stuck %llu", (unsigned long long)uint_field(p, "threads"),
                  (unsigned long long)uint_field(p, "stuck"));
    }
    if (uint_field(p, "draining_versions") != 0) {
      std::printf("  old versions finishing %llu", (unsigned long long)uint_field(p, "draining_versions"));
    }
    std::printf("  loaded %s", string_field(p, "loaded_at").c_str());
    std::printf("\n");
    for (const json& w : p.value("processes", json::array())) {
      std::printf("  pid %-8llu %-9s calls %-8llu rss %.1f MiB\n", (unsigned long long)uint_field(w, "pid"),
                  string_field(w, "state").c_str(), (unsigned long long)uint_field(w, "calls"),
                  double(uint_field(w, "rss_kb")) / 1024.0);
    }
  }
}

int run_status(const Options& o) {
  return run_builtin(o, "ferry.status", [](const std::string& data) {
    json doc = json::parse(data, nullptr, false);
    if (!doc.is_object() || !doc.contains("plugins") || !doc["plugins"].is_array())
      return fail(kExitUnexpected, "unexpected ferry.status reply: " + data);
    print_status(doc);
    return 0;
  });
}

// `ferry reload`: what changed, one line each; exit 0 when the config was
// valid (a refused plugin file is reported, and the old version kept).
int run_reload(const Options& o) {
  return run_builtin(o, "ferry.reload", [](const std::string& data) {
    json doc = json::parse(data, nullptr, false);
    if (!doc.is_object()) return fail(kExitUnexpected, "unexpected ferry.reload reply: " + data);
    std::printf("config: %s\n", string_field(doc, "config").c_str());
    for (const json& p : doc.value("loaded", json::array())) {
      std::printf("loaded %s %s from %s\n", string_field(p, "plugin").c_str(), string_field(p, "version").c_str(),
                  string_field(p, "file").c_str());
    }
    for (const json& p : doc.value("removed", json::array())) {
      std::printf("removed %s (%s)\n", string_field(p, "plugin").c_str(), string_field(p, "file").c_str());
    }
    for (const json& p : doc.value("refused", json::array())) {
      std::printf("refused %s: %s\n", string_field(p, "file").c_str(), string_field(p, "why").c_str());
    }
    return 0;
  });
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

void print_summary(const std::vector<double>& rtts) {
  const auto [lo, hi] = std::minmax_element(rtts.begin(), rtts.end());
  double sum = 0;
  for (double t : rtts) sum += t;
  std::printf("%zu pings: min/avg/max = %.3f/%.3f/%.3f ms\n", rtts.size(), *lo, sum / rtts.size(), *hi);
}

int run_ping(const Options& o) {
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  std::vector<double> rtts;
  for (int seq = 1; seq <= o.count; ++seq) {
    const std::string body = std::to_string(seq);
    const auto start = std::chrono::steady_clock::now();
    std::optional<ferry::Reply> reply = client->ping(body);
    rtts.push_back(elapsed_ms(start));
    if (!reply) return no_reply(*client);
    if (reply->kind == ferry::ReplyKind::error) return server_error(reply->code, reply->data);
    if (reply->kind != ferry::ReplyKind::pong || reply->data != body)
      return fail(kExitUnexpected, "unexpected reply to ping " + body);
    std::printf("pong from %s: seq=%d time=%.3f ms\n", o.socket.c_str(), seq, rtts.back());
  }
  if (rtts.size() > 1) print_summary(rtts);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"ferry: call functions hosted by ferryd"};
  configure(app, opt);
  if (std::optional<int> status = parse_args(app, argc, argv)) return *status;
  if (app.got_subcommand("call")) {
    opt.args = app.remaining();
    opt.verbatim = args_after_dashdash(argc, argv, opt.args.size());
    return run_call(opt);
  }
  if (!app.remaining().empty()) return fail(kExitUsage, "unexpected argument: " + app.remaining().front());
  if (app.got_subcommand("list")) return run_list(opt);
  if (app.got_subcommand("status")) return run_status(opt);
  if (app.got_subcommand("reload")) return run_reload(opt);
  return run_ping(opt);
}
