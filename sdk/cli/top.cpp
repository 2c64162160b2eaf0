// `ferry metrics` and `ferry top`: both read the ferry.metrics built-in.
// top samples it every interval and shows, per plugin, what changed since
// the previous sample (calls/s, run-time percentiles, errors/s) next to
// what is true now (queued, running, workers).
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"

namespace ferry_cli {
namespace {

using json = nlohmann::json;

// One plugin as top shows it; counters are totals since ferryd started.
struct PluginRow {
  std::string executor = "-";
  double calls = 0;
  std::map<std::string, double> errors;  // by outcome, ok excluded
  std::vector<std::pair<double, double>> buckets;  // run time: (le, cumulative count), all functions
  double runs = 0;                                  // run time: every call counted (the +Inf bucket)
  double queued = 0, running = 0, workers = 0, busy = 0, backoff = 0;
};

struct Sample {
  std::chrono::steady_clock::time_point at;
  std::map<std::string, PluginRow> plugins;
  double connections = 0;
};

std::string label(const json& m, const char* key) {
  const json& labels = m["labels"];
  auto it = labels.find(key);
  return it != labels.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void add_buckets(PluginRow& row, const json& m) {
  row.runs += m["count"].get<double>();
  const json& b = m["buckets"];
  if (row.buckets.empty()) {
    for (const json& pair : b) row.buckets.emplace_back(pair[0].get<double>(), 0);
  }
  for (std::size_t i = 0; i < b.size() && i < row.buckets.size(); ++i) row.buckets[i].second += b[i][1].get<double>();
}

// Folds one sample of a family into its plugin's row.
void fold(Sample& s, const std::string& family, const json& m) {
  const std::string plugin = label(m, "plugin");
  if (family == "ferry_connections") s.connections = m["value"].get<double>();
  if (plugin.empty() || plugin == "ferry") return;  // unknown names and built-ins
  PluginRow& row = s.plugins[plugin];
  if (family == "ferry_calls_total") {
    const double v = m["value"].get<double>();
    row.calls += v;
    if (label(m, "outcome") != "ok") row.errors[label(m, "outcome")] += v;
  } else if (family == "ferry_call_run_seconds") {
    add_buckets(row, m);
  } else if (family == "ferry_queue_depth") {
    row.queued += m["value"].get<double>();
  } else if (family == "ferry_calls_running") {
    row.running = m["value"].get<double>();
  } else if (family == "ferry_workers") {
    const std::string state = label(m, "state");
    const double n = m["value"].get<double>();
    if (state != "empty") row.workers += n;
    if (state == "busy") row.busy += n;
    if (state == "backoff") row.backoff += n;
  } else if (family == "ferry_plugin_info") {
    row.executor = label(m, "executor");
  }
}

// A reply of another shape (a field of another type) is no sample: top
// must end normally, restoring the terminal, rather than throw.
std::optional<Sample> parse_sample(const std::string& text) {
  const json doc = json::parse(text, nullptr, false);
  if (!doc.is_array()) return std::nullopt;
  Sample s;
  s.at = std::chrono::steady_clock::now();
  try {
    for (const json& f : doc) {
      if (!f.is_object() || !f["name"].is_string() || !f["metrics"].is_array()) return std::nullopt;
      for (const json& m : f["metrics"]) fold(s, f["name"].get<std::string>(), m);
    }
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return s;
}

// The q-quantile of the calls counted by `now` minus `before` (cumulative
// buckets), interpolated within its bucket, as Prometheus'
// histogram_quantile does: the last finite bound when it lies beyond
// every bound; -1 without calls.
double quantile(double q, const PluginRow& now, const PluginRow* before) {
  const bool same = before != nullptr && before->buckets.size() == now.buckets.size();
  std::vector<double> counts;
  for (std::size_t i = 0; i < now.buckets.size(); ++i) {
    counts.push_back(now.buckets[i].second - (same ? before->buckets[i].second : 0));
  }
  const double total = now.runs - (same ? before->runs : 0);
  if (counts.empty() || total <= 0) return -1;
  const double rank = q * total;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < rank) continue;
    const double lo = i == 0 ? 0 : now.buckets[i - 1].first, below = i == 0 ? 0 : counts[i - 1];
    const double in = counts[i] - below;
    return lo + (now.buckets[i].first - lo) * (in > 0 ? (rank - below) / in : 1);
  }
  return now.buckets.back().first;  // beyond the last finite bound
}

std::string duration(double seconds) {
  char buf[32];
  if (seconds < 0) return "-";
  if (seconds < 0.001) std::snprintf(buf, sizeof buf, "%.0fus", seconds * 1e6);
  else if (seconds < 1) std::snprintf(buf, sizeof buf, "%.1fms", seconds * 1e3);
  else std::snprintf(buf, sizeof buf, "%.2fs", seconds);
  return buf;
}

std::string errors_per_second(const PluginRow& now, const PluginRow* before, double dt) {
  std::string out;
  for (const auto& [code, n] : now.errors) {
    const double was = before != nullptr && before->errors.count(code) ? before->errors.at(code) : 0;
    if (n - was <= 0) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.1f", out.empty() ? "" : ", ", code.c_str(), (n - was) / dt);
    out += buf;
  }
  return out.empty() ? "-" : out;
}

// One screen (or one plain snapshot): a header, a row per plugin, a total.
std::string render(const std::string& socket, const Sample& now, const Sample& before) {
  const double dt = std::max(1e-3, std::chrono::duration<double>(now.at - before.at).count());
  std::string out;
  char line[512];
  const std::time_t t = std::time(nullptr);
  char clock[16];
  std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&t));
  std::snprintf(line, sizeof line, "ferry top  %s  %s  connections %.0f  (interval %.1f s)\n", socket.c_str(), clock,
                now.connections, dt);
  out += line;
  std::snprintf(line, sizeof line, "%-16s %-8s %10s %9s %9s %7s %7s %9s  %s\n", "PLUGIN", "EXECUTOR", "CALLS/S", "P50",
                "P99", "QUEUED", "RUNNING", "WORKERS", "ERRORS/S");
  out += line;
  double total_rate = 0, total_queued = 0, total_running = 0;
  for (const auto& [name, row] : now.plugins) {
    const auto it = before.plugins.find(name);
    const PluginRow* was = it == before.plugins.end() ? nullptr : &it->second;
    const double rate = (row.calls - (was ? was->calls : 0)) / dt;
    total_rate += rate, total_queued += row.queued, total_running += row.running;
    std::string workers = std::to_string(int(row.busy)) + "/" + std::to_string(int(row.workers));
    if (row.backoff > 0) workers += " " + std::to_string(int(row.backoff)) + "bk";
    std::snprintf(line, sizeof line, "%-16s %-8s %10.1f %9s %9s %7.0f %7.0f %9s  %s\n", name.c_str(),
                  row.executor.c_str(), rate, duration(quantile(0.5, row, was)).c_str(),
                  duration(quantile(0.99, row, was)).c_str(), row.queued, row.running, workers.c_str(),
                  errors_per_second(row, was, dt).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "%-16s %-8s %10.1f %9s %9s %7.0f %7.0f\n", "TOTAL", "", total_rate, "", "",
                total_queued, total_running);
  return out + line;
}

// One sample, or null with *failed set to what went wrong (reported by the
// caller once the terminal is back to normal).
std::optional<Sample> fetch(ferry::Client& client, std::optional<ferry::Reply>* failed) {
  std::optional<ferry::Reply> reply = client.call("ferry.metrics", R"(["json"])");
  std::optional<Sample> s;
  if (reply && reply->kind == ferry::ReplyKind::result) s = parse_sample(reply->data);
  if (!s) *failed = std::move(reply);
  return s;
}

int report_failure(const ferry::Client& client, const std::optional<ferry::Reply>& failed) {
  if (failed && failed->kind == ferry::ReplyKind::result) return fail(kExitUnexpected, "unexpected ferry.metrics reply");
  return report(client, failed);
}

// The terminal in raw-ish mode while top runs (keys without Enter, no
// echo), restored however top ends.
class RawTerminal {
 public:
  RawTerminal() {
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~tcflag_t(ICANON | ECHO);
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  bool keys() const { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

// The alternate screen without a cursor while it lives (live mode), left
// however top ends.
class LiveScreen {
 public:
  explicit LiveScreen(bool on) : on_(on) {
    if (on_) std::fputs("\x1b[?1049h\x1b[?25l", stdout);
  }
  ~LiveScreen() {
    if (on_) std::fputs("\x1b[?25h\x1b[?1049l", stdout), std::fflush(stdout);
  }

 private:
  bool on_;
};

volatile std::sig_atomic_t g_interrupted = 0;  // set by SIGINT/SIGTERM: leave and restore the terminal

// Without SA_RESTART: a Ctrl-C also ends a wait for ferryd's reply.
void on_interrupt(int sig) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

// Waits up to ms; true when the user pressed q (or the input ended).
bool wait_for_quit(const RawTerminal& term, int ms) {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (poll(term.keys() ? &p : nullptr, term.keys() ? 1 : 0, ms) <= 0) return g_interrupted != 0;
  char c = 0;
  return read(STDIN_FILENO, &c, 1) <= 0 || c == 'q' || c == 'Q';
}

}  // namespace

int run_metrics(const Options& o) {
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  std::optional<ferry::Reply> reply = client->call("ferry.metrics", o.json ? R"(["json"])" : "[]");
  if (!reply || reply->kind != ferry::ReplyKind::result) return report(*client, reply);
  std::fwrite(reply->data.data(), 1, reply->data.size(), stdout);
  if (o.json) std::fputc('\n', stdout);
  return 0;
}

// Samples until q, Ctrl-C or --once; a failure ends it, and is reported
// once the terminal is restored.
int run_top(const Options& o) {
  int status = 0;
  auto client = connect_or_report(o.socket, &status);
  if (!client) return status;
  std::optional<ferry::Reply> failed;
  std::optional<Sample> before = fetch(*client, &failed);
  if (!before) return report_failure(*client, failed);
  const bool live = !o.once && isatty(STDOUT_FILENO);
  bool broken = false;
  on_interrupt(SIGINT);
  on_interrupt(SIGTERM);
  {
    RawTerminal term;
    LiveScreen screen(live);
    while (!wait_for_quit(term, o.interval_ms)) {
      std::optional<Sample> now = fetch(*client, &failed);
      if (!now) {
        broken = true;
        break;
      }
      const std::string text = render(o.socket, *now, *before);
      std::fputs(live ? ("\x1b[H\x1b[2J" + text + "\npress q to quit").c_str() : (text + "\n").c_str(), stdout);
      std::fflush(stdout);
      before = std::move(now);
      if (o.once) break;
    }
  }
  return broken && !g_interrupted ? report_failure(*client, failed) : 0;
}

}  // namespace ferry_cli
