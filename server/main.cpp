// ferryd: serves plugin functions over a Unix socket. A flat list of steps,
// and the one place where the production parts are wired together: the
// clock, the worker launcher, the invoker, the executor factory.
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <prometheus/metric_family.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/clock.hpp"
#include "common/log_output.hpp"
#include "config/config.hpp"
#include "exec/factory.hpp"
#include "loop/completion_queue.hpp"
#include "loop/reactor.hpp"
#include "metrics.hpp"
#include "metrics_http.hpp"
#include "notify.hpp"
#include "plugins/finalizer.hpp"
#include "plugins/invoke.hpp"
#include "plugins/registry.hpp"
#include "reload.hpp"
#include "router.hpp"
#include "server.hpp"

namespace {

struct Options {
  std::string config = "config/server.toml";
  std::string check;
  int ready_fd = -1;
};

// Signals are read through a signalfd on the loop, so every thread blocks them.
void block_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int check_config(const std::string& file) {
  auto parsed = ferry::config::parse_config_file(file);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.status().message().c_str());
    return 1;
  }
  std::printf("%s: OK (%zu plugin sections)\n", file.c_str(), parsed->plugins.size());
  return 0;
}

// The parts that outlive the loop, built in this order and destroyed in
// reverse: the launcher outlives the pools and the reloader that use it, the
// finalizer every plugin version.
struct Base {
  std::shared_ptr<const ferry::config::Config> cfg;
  std::shared_ptr<ferry::ReopenableFileSink> log_file;  // null: the log goes to stderr
  ferry::SystemClock clock;
  std::unique_ptr<ferry::Finalizer> finalizer;
  std::unique_ptr<ferry::Launcher> launcher;
  std::unique_ptr<ferry::Invoker> invoker;
  ferry::Registry registry;
  ferry::loop::Reactor reactor;
  std::unique_ptr<ferry::loop::CompletionQueue> completions;
  std::unique_ptr<ferry::Reloader> reloader;
};

int cannot_start(const ferry::Status& st) {
  spdlog::critical("cannot start: {}", st.message());
  return 1;
}

// The log's form and place ([server] log_format, log_file), before any
// other thread runs.
ferry::Status open_log(const ferry::config::Config& cfg, Base* b) {
  const bool json = cfg.server.log_format == ferry::config::LogFormat::json;
  if (!json && cfg.server.log_file.empty()) return ferry::Status::Ok();  // as main() set it up
  auto sink = ferry::set_up_log(json, cfg.server.log_file);
  if (!sink.ok()) return sink.status();
  b->log_file = std::move(sink).value();
  return ferry::Status::Ok();
}

// SIGUSR1: logrotate moved the file; later lines go to a new one.
void reopen_log(Base& b) {
  if (!b.log_file) return spdlog::info("SIGUSR1: the log goes to stderr, nothing to reopen");
  if (const ferry::Status st = b.log_file->reopen(); !st.ok()) {
    return spdlog::error("SIGUSR1: cannot reopen the log file, still writing the old one: {}", st.message());
  }
  spdlog::info("SIGUSR1: log file reopened");
}

// Each connection is an open file: the soft limit goes up to the hard one
// (ulimit -Hn, systemd's LimitNOFILE=), and a max_connections it cannot
// hold is told at start. A connection over the limit is retried later.
void raise_file_limit(const ferry::config::ServerConfig& s) {
  constexpr rlim_t kOwnFiles = 64;  // listening socket, ring, eventfds, workers' channels, plugins
  constexpr rlim_t kEnough = 1u << 20;  // not LimitNOFILE=infinity: plugins inherit the limit
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return spdlog::warn("getrlimit(RLIMIT_NOFILE): {}; the open-file limit stays as it is", std::strerror(errno));
  }
  const rlim_t want = std::min<rlim_t>(lim.rlim_max, kEnough);
  if (lim.rlim_cur < want) {
    const rlim_t was = lim.rlim_cur;
    lim.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
      spdlog::warn("setrlimit(RLIMIT_NOFILE, {}): {}; the open-file limit stays {}", want, std::strerror(errno), was);
      lim.rlim_cur = was;
    }
  }
  if (lim.rlim_cur < s.max_connections + kOwnFiles) {
    spdlog::warn("max_connections is {}, but the open-file limit ({}, hard limit {}) allows about {} connections",
                 s.max_connections, lim.rlim_cur, lim.rlim_max, lim.rlim_cur > kOwnFiles ? lim.rlim_cur - kOwnFiles : 0);
  }
}

// Config, clock, finalizer, launcher, invoker, ring, completion queue, reloader.
ferry::Status build_base(const std::string& config_file, Base* b) {
  auto parsed = ferry::config::parse_config_file(config_file);
  if (!parsed.ok()) return parsed.status();
  b->cfg = std::make_shared<const ferry::config::Config>(std::move(parsed).value());
  spdlog::set_level(spdlog::level::from_str(b->cfg->server.log_level));
  FERRY_RETURN_IF_ERROR(open_log(*b->cfg, b));
  raise_file_limit(b->cfg->server);
  auto finalizer = ferry::Finalizer::create();
  if (!finalizer.ok()) return finalizer.status();
  b->finalizer = std::move(finalizer).value();
  auto launcher = ferry::make_process_launcher(ferry::default_worker_path());
  if (!launcher.ok()) return launcher.status();
  b->launcher = std::move(launcher).value();
  b->invoker = std::make_unique<ferry::Invoker>(b->clock, int(b->cfg->server.max_call_depth));
  FERRY_RETURN_IF_ERROR(b->reactor.init(1024));
  auto queue = ferry::loop::CompletionQueue::create();
  if (!queue.ok()) return queue.status();
  b->completions = std::move(queue).value();
  ferry::OpenOptions open;
  open.finalizer = b->finalizer.get();
  auto reloader =
      ferry::Reloader::create(b->cfg, *b->launcher, b->clock, b->registry, b->reactor, *b->completions, open);
  if (!reloader.ok()) return reloader.status();
  b->reloader = std::move(reloader).value();
  return ferry::Status::Ok();
}

// Reloads reach the server and the router; ferry.reload and SIGHUP reach the reloader.
void connect_reloads(Base& b, ferry::Router& router, ferry::Server& server) {
  b.reloader->set_apply([&](const std::shared_ptr<const ferry::config::Config>& next) {
    server.reconfigure(next->server);
    router.apply(next);
  });
  router.set_reload_handler([&](const ferry::CallRef& ref) { b.reloader->request(ferry::ReloadKind::call, true, ref); });
  server.on_hangup([&] { b.reloader->request(ferry::ReloadKind::sighup, true); });
  server.on_reopen_logs([&] { reopen_log(b); });
  if (const ferry::Status st = b.reloader->watch(); !st.ok()) {
    spdlog::warn("plugin_dir and config changes are not picked up automatically: {}", st.message());
  }
}

// After the loop: stop the lanes (process workers end, running their
// plugins' shutdown hooks), then wait for thread plugins' hooks. Threads
// left in plugin code that ignores cancellation, or a hook that does not
// return, would crash if their library were unloaded: exit under them.
int finish(Base& b, ferry::Router& router) {
  const int left = router.stop();
  const bool finalized = b.finalizer->drain(ferry::Finalizer::kStopWait);
  if (left > 0 || !finalized) {
    if (left > 0) spdlog::warn("ferryd stopped; {} threads still in plugin code are ended by the exit", left);
    b.reloader->remove_snapshots();
    spdlog::shutdown();
    std::_Exit(0);
  }
  spdlog::info("ferryd stopped");
  return 0;
}

// Metrics on the socket (ferry.metrics) and, with [server] metrics_listen,
// over HTTP (an address it cannot listen on stops the start: the operator
// asked to be watched). `serving` is false once the loop ended: a scrape
// still queued for it then gets nothing instead of a router that is stopping.
using Endpoint = std::unique_ptr<ferry::MetricsEndpoint>;
ferry::Result<Endpoint> connect_metrics(Base& b, ferry::Metrics& metrics, ferry::Router& router,
                                        ferry::Server& server, const bool& serving) {
  auto snapshot = [&] {
    if (!serving) return std::vector<prometheus::MetricFamily>{};
    return metrics.families(ferry::take_snapshot(router, server, *b.reloader));
  };
  router.set_metrics_handler([snapshot](std::string_view format) {
    return format == "json" ? ferry::metrics_json(snapshot()) : ferry::metrics_text(snapshot());
  });
  const std::string& listen = b.cfg->server.metrics_listen;
  if (listen.empty()) return Endpoint();
  auto endpoint = ferry::MetricsEndpoint::start(listen, snapshot, [&b](std::function<void()> task) {
    b.completions->post(std::move(task));
  });
  if (!endpoint.ok()) return endpoint.status();
  spdlog::info("metrics on http://{}:{}/metrics", listen.substr(0, listen.rfind(':')), (*endpoint)->port());
  return std::move(endpoint).value();
}

int serve(const Options& opt) {
  block_signals();
  Base b;
  if (const ferry::Status st = build_base(opt.config, &b); !st.ok()) return cannot_start(st);
  const int loaded = b.reloader->load_initial();
  spdlog::info("{} plugins loaded from {}", loaded, b.cfg->server.plugin_dir.string());
  auto on_loop = [&](std::function<void()> task) { b.completions->post(std::move(task)); };
  const auto factory =
      ferry::make_executor_factory({b.reactor, *b.completions, *b.launcher, *b.invoker, b.clock, on_loop});
  ferry::Metrics metrics;
  ferry::Router router(b.cfg, b.registry, *factory, *b.invoker, b.clock, on_loop,
                       [&](std::function<void()> task) { b.reloader->run_off_loop(std::move(task)); }, metrics);
  ferry::Server server(b.cfg->server, b.reactor, router, *b.completions, b.clock, metrics);
  if (const ferry::Status st = server.start(); !st.ok()) return cannot_start(st);
  connect_reloads(b, router, server);
  bool serving = true;
  auto endpoint = connect_metrics(b, metrics, router, server, serving);
  if (!endpoint.ok()) {
    cannot_start(endpoint.status());
    router.stop();
    return 1;
  }
  ferry::notify_ready();  // the socket listens: connections wait in its backlog
  server.run(opt.ready_fd);
  serving = false;
  endpoint->reset();
  return finish(b, router);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferryd: runs blocking plugin functions behind an io_uring event loop"};
  Options opt;
  app.add_option("-c,--config", opt.config, "server.toml to serve with")->capture_default_str();
  app.add_option("--check-config", opt.check, "validate this config file and exit");
  app.add_option("--ready-fd", opt.ready_fd, "write \"ready\" to this fd once listening");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("ferryd"));
  spdlog::set_pattern(ferry::kTextLogPattern);
  if (!opt.check.empty()) return check_config(opt.check);
  return serve(opt);
}
