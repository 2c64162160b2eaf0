// ferryd: serves plugin functions over a Unix socket. A flat list of steps,
// and the one place where the production parts are wired together: the
// clock, the worker launcher, the invoker, the executor factory.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/clock.hpp"
#include "config/config.hpp"
#include "exec/factory.hpp"
#include "loop/completion_queue.hpp"
#include "loop/reactor.hpp"
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

int serve(const Options& opt) {
  auto parsed = ferry::config::parse_config_file(opt.config);
  if (!parsed.ok()) {
    spdlog::critical("{}", parsed.status().message());
    return 1;
  }
  auto cfg_ptr = std::make_shared<const ferry::config::Config>(std::move(parsed).value());
  const ferry::config::Config& cfg = *cfg_ptr;
  spdlog::set_level(spdlog::level::from_str(cfg.server.log_level));
  block_signals();
  ferry::SystemClock clock;
  // Declared early, destroyed late: pools and the reloader use it to the end.
  const std::unique_ptr<ferry::Launcher> launcher = ferry::make_process_launcher(ferry::default_worker_path());
  ferry::Invoker invoker(clock, int(cfg.server.max_call_depth));
  ferry::Registry registry;
  ferry::loop::Reactor reactor;
  if (const ferry::Status st = reactor.init(1024); !st.ok()) {
    spdlog::critical("cannot start: {}", st.message());
    return 1;
  }
  auto queue = ferry::loop::CompletionQueue::create();
  if (!queue.ok()) {
    spdlog::critical("cannot start: {}", queue.status().message());
    return 1;
  }
  ferry::loop::CompletionQueue& completions = **queue;
  auto made = ferry::Reloader::create(cfg_ptr, *launcher, clock, registry, reactor, completions);
  if (!made.ok()) {
    spdlog::critical("cannot start: {}", made.status().message());
    return 1;
  }
  ferry::Reloader& reloader = **made;
  const int loaded = reloader.load_initial();
  spdlog::info("{} plugins loaded from {}", loaded, cfg.server.plugin_dir.string());
  auto on_loop = [&](std::function<void()> task) { completions.post(std::move(task)); };
  const auto factory = ferry::make_executor_factory({reactor, completions, *launcher, invoker, clock, on_loop});
  ferry::Router router(cfg_ptr, registry, *factory, invoker, clock, on_loop,
                       [&](std::function<void()> task) { reloader.run_off_loop(std::move(task)); });
  ferry::Server server(cfg.server, reactor, router, completions, clock);
  if (const ferry::Status st = server.start(); !st.ok()) {
    spdlog::critical("cannot start: {}", st.message());
    return 1;
  }
  reloader.set_apply([&](const std::shared_ptr<const ferry::config::Config>& next) {
    server.reconfigure(next->server);
    router.apply(next);
  });
  router.set_reload_handler([&](const ferry::CallRef& ref) { reloader.request(true, ref); });
  server.on_hangup([&] { reloader.request(true); });
  if (const ferry::Status st = reloader.watch(); !st.ok()) {
    spdlog::warn("plugin_dir and config changes are not picked up automatically: {}", st.message());
  }
  server.run(opt.ready_fd);
  if (const int left = router.stop(); left > 0) {
    // Their plugin code ignores cancellation; unloading under them would crash.
    spdlog::warn("ferryd stopped; {} threads still in plugin code are ended by the exit", left);
    reloader.remove_snapshots();
    spdlog::shutdown();
    std::_Exit(0);
  }
  spdlog::info("ferryd stopped");
  return 0;
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
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  if (!opt.check.empty()) return check_config(opt.check);
  return serve(opt);
}
