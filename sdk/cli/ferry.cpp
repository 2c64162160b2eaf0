// ferry: the command-line client of ferryd.
//
//   ferry [--socket PATH] call FN [ARG ...] [--timeout MS] [--priority P]
//   ferry [--socket PATH] call FN - [...]          (the JSON array from stdin)
//   ferry [--socket PATH] call FN [...] -- ARG ... (ARGs taken as is, even - or --x)
//   ferry [--socket PATH] call --raw FN [...]      (stdin's bytes, reply as is)
//   ferry [--socket PATH] call --stream FN [...]   (partial results, one JSON line each)
//   ferry [--socket PATH] list [--json]
//   ferry [--socket PATH] status [--json]
//   ferry [--socket PATH] ping [--count N]
//   ferry [--socket PATH] reload [--json]
//   ferry [--socket PATH] metrics [--json]
//   ferry [--socket PATH] top [--once] [--interval MS]
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

#include "cli.hpp"
#include "ferry/client.hpp"
#include "ferry/errors.h"

namespace ferry_cli {

int fail(int status, const std::string& message) {
  std::cerr << "ferry: " << message << '\n';
  return status;
}

int server_error(ferry_code code, const std::string& message) {
  return fail(kExitServerError + code, std::string(ferry_code_name(code)) + ": " + message);
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
static int no_reply(const ferry::Client& client) {
  if (client.connected()) return server_error(FERRY_E_TIMEOUT, client.last_error());
  return fail(kExitLost, "connection lost: " + client.last_error());
}

int report(const ferry::Client& client, const std::optional<ferry::Reply>& reply, bool raw) {
  if (!reply) return no_reply(client);
  if (reply->kind == ferry::ReplyKind::error) return server_error(reply->code, reply->data);
  if (reply->kind != ferry::ReplyKind::result) return fail(kExitUnexpected, "unexpected reply from server");
  std::cout.write(reply->data.data(), static_cast<std::streamsize>(reply->data.size()));
  if (!raw) std::cout << '\n';
  std::cout.flush();
  return std::cout ? 0 : fail(kExitUnexpected, "cannot write the result to stdout");
}

}  // namespace ferry_cli

namespace {

using namespace ferry_cli;
using nlohmann::json;
using ferry::Priority;

constexpr std::uint32_t kReplyGraceMs = 5000;  // the client waits --timeout plus this

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
      "  to stdout as it came, for raw functions and binary data.\n"
      "With --stream (protocol 1.2), each partial result is printed as it arrives,\n"
      "  one JSON line each, and the result on the last line; a partial or result\n"
      "  that is not JSON is printed as a JSON string of its bytes.\n\n" + exit_status_help());
  call->add_flag("--raw", o.raw, "Send stdin's bytes as the payload; write the raw reply to stdout");
  call->add_flag("--stream", o.stream, "Print partial results as they arrive, one JSON line each, then the result");
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
  CLI::App* ping = app.add_subcommand(
      "ping", "Measure the round-trip time to the server; exit 0 only if it serves (not stopping)");
  ping->add_option("--count,-c", o.count, "Number of pings")->check(CLI::Range(1, 1000000));
}

void add_metrics_commands(CLI::App& app, Options& o) {
  CLI::App* metrics = app.add_subcommand("metrics", "Print ferryd's metrics in the Prometheus text format");
  metrics->add_flag("--json", o.json, "Print them as JSON instead");
  CLI::App* top = app.add_subcommand("top", "Show calls/s, run times, queues, workers and errors per plugin, live");
  top->add_flag("--once", o.once, "Print one snapshot (over one interval) and exit");
  top->add_option("--interval", o.interval_ms, "Milliseconds between samples")->check(CLI::Range(100, 3600000));
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
  add_metrics_commands(app, o);
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

Priority priority_of(const std::string& name) {
  return name == "high" ? Priority::high : name == "low" ? Priority::low : Priority::normal;
}

// One line of `ferry call --stream`: JSON text as it came (compacted if it
// spans lines), anything else as a JSON string of its bytes (invalid UTF-8
// replaced), so every line is one JSON value.
std::string json_line(std::string_view data) {
  const json value = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return json(std::string(data)).dump(-1, ' ', false, json::error_handler_t::replace);
  if (data.find_first_of("\r\n") == std::string_view::npos) return std::string(data);
  return value.dump();
}

// `ferry call --stream`: the partials, then the result, each on its line.
int run_stream(ferry::Client& client, const Options& o, const std::string& payload) {
  if (client.server_minor() < 2) {
    return server_error(FERRY_E_UNSUPPORTED_VERSION, "the server speaks protocol 1." +
                                                         std::to_string(client.server_minor()) +
                                                         ", which has no partial results: call without --stream");
  }
  if (client.send_stream(o.fn, payload, o.timeout_ms, priority_of(o.priority)) == 0)
    return client.connected() ? fail(kExitUsage, client.last_error()) : no_reply(client);
  while (true) {
    std::optional<ferry::Reply> reply = client.read_reply();
    if (!reply || reply->kind != ferry::ReplyKind::partial) {
      if (reply && reply->kind == ferry::ReplyKind::result) reply->data = json_line(reply->data);
      return report(client, reply);
    }
    std::cout << json_line(reply->data) << '\n' << std::flush;
  }
}

int run_call(const Options& o) {
  std::string payload;
  if (int status = build_payload(o, &payload)) return status;
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  if (o.timeout_ms) client->set_timeout(o.timeout_ms + kReplyGraceMs);
  if (o.stream) return run_stream(*client, o, payload);
  if (client->send_call(o.fn, payload, o.timeout_ms, priority_of(o.priority)) == 0)
    return client->connected() ? fail(kExitUsage, client->last_error()) : no_reply(*client);
  return report(*client, client->read_reply(), o.raw);
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

// A PONG only shows that ferryd's loop answers: it does so while it drains,
// too. A call shows that it still takes work (a draining ferryd answers
// every call shutting_down). 0 when it serves.
int check_serving(ferry::Client& client) {
  std::optional<ferry::Reply> reply = client.call("ferry.status", "[]");
  if (!reply) return no_reply(client);
  if (reply->kind == ferry::ReplyKind::result) return 0;
  if (reply->kind != ferry::ReplyKind::error) return fail(kExitUnexpected, "unexpected reply to ferry.status");
  if (reply->code != FERRY_E_SHUTTING_DOWN) return server_error(reply->code, reply->data);
  return server_error(reply->code, "ferryd is stopping: it finishes the calls it has and takes no new ones");
}

// Exit 0 only when every PING got its PONG and ferryd then still serves.
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
  return check_serving(*client);
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
  if (app.got_subcommand("metrics")) return run_metrics(opt);
  if (app.got_subcommand("top")) return run_top(opt);
  return run_ping(opt);
}
