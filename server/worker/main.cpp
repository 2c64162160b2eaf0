// ferry-worker: one sandboxed process serving one plugin's calls for ferryd.
// Spawned by ferryd with the channel on fd 3 (docs/worker-channel.md). The
// steps below run in this order; the first failure is reported to the host
// as a `failed` message and the worker exits.
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "common/json_text.hpp"
#include "worker/channel.hpp"
#include "worker/control.hpp"
#include "worker/log_sink.hpp"
#include "worker/spec.hpp"
#include "plugins/invoke.hpp"
#include "plugins/registry.hpp"
#include "sandbox/sandbox.hpp"

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds: crashes must look as they do in production (die by the
// signal), allocation failures must reach the plugin as bad_alloc, and the
// leak check at exit would need syscalls the sandbox forbids.
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0:allocator_may_return_null=1:handle_segv=0:handle_abort=0:"
         "handle_sigbus=0:handle_sigfpe=0:handle_sigill=0";
}
#endif

namespace {

constexpr int kChannel = 3;
constexpr std::size_t kMaxBody = 1u << 30;

using ferry::channel::Header;
using ferry::channel::Type;

// The worker is PID 1 of its pid namespace, where a signal it raises itself
// without a handler is ignored: abort() would end in a fault instead. So
// SIGABRT gets a handler that tells the host, then exits.
void on_abort(int sig) {
  static const Header report{Type::fatal, 0, 0, 0, std::uint32_t(SIGABRT)};
  ::send(kChannel, &report, sizeof report, MSG_NOSIGNAL);
  _exit(128 + sig);
}

// The seccomp filter refused syscall `nr`: tell the host, which answers the
// call sandbox_violation. Async-signal-safe (it runs in the SIGSYS handler).
void report_violation(int nr) {
  Header report{Type::violation};
  report.code = static_cast<std::uint32_t>(nr);
  ::send(kChannel, &report, sizeof report, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void report_aborts() {
  struct sigaction sa {};
  sa.sa_handler = on_abort;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGABRT, &sa, nullptr);
}

int fail(const std::string& why) {
  (void)ferry::channel::send(kChannel, Header{Type::failed}, why);  // the exit status tells the rest
  return 3;
}

struct Loaded {
  std::vector<std::shared_ptr<const ferry::Function>> functions;  // index = call code
  std::string ready_json;
};

// Loads the plugin through the same registry code ferryd uses; its init gets
// its entry of the spec's settings. Its own functions are all that nested
// calls can reach in here (caller-runs, as in ferryd: docs/design.md,
// "Nested calls").
ferry::Status load(ferry::Registry& reg, const ferry::WorkerSpec& spec, ferry::OpenOptions options,
                   ferry::Invoker& invoker, Loaded* out) {
  const std::string& path = spec.plugin_path;
  options.settings = &spec.settings;
  if (const ferry::Status st = reg.load(path, options); !st.ok()) return st.with_context("plugin " + path + " refused");
  const auto& plugin = *reg.plugins().front();
  for (const auto& name : plugin.functions) out->functions.push_back(reg.find(name));
  invoker.publish(ferry::directory_of(reg, plugin.name));
  out->ready_json = ferry::json_text(
      nlohmann::json{{"name", plugin.name}, {"version", plugin.version}, {"functions", plugin.functions}});
  return ferry::Status::Ok();
}

// A streamed call's partial results, sent to ferryd as `partial` messages,
// in inline chunks (never a memfd: the socket buffer then bounds what waits
// in the kernel, and no descriptors pile up in flight). A send blocks while
// ferryd does not read them (it stops while the client is slow: that is the
// back-pressure), but never past the call's cancellation or deadline: each
// wait also watches the call's cancel fd.
class ChannelPartials final : public ferry::PartialSink {
 public:
  ChannelPartials(std::uint64_t id, std::int64_t deadline_ms) : id_(id), deadline_ms_(deadline_ms) {}
  ferry_code emit(std::string_view data, ferry::CallControl* control) override {
    std::lock_guard lock(mu_);  // one partial's chunks stay together when several threads emit
    do {
      const std::string_view chunk = data.substr(0, ferry::channel::kInlineMax);
      data.remove_prefix(chunk.size());
      if (const ferry_code code = wait_writable(control); code != FERRY_OK) return code;
      const std::uint32_t flags = data.empty() ? 0 : ferry::channel::kFlagMore;
      // A failed send means ferryd is gone: the call may as well stop.
      if (!ferry::channel::send(kChannel, Header{Type::partial, flags, id_}, chunk).ok()) return FERRY_E_CANCELLED;
    } while (!data.empty());
    return FERRY_OK;
  }

 private:
  ferry_code wait_writable(ferry::CallControl* control) {
    const int cancel_fd = control != nullptr ? control->fd() : -1;
    pollfd fds[2] = {{kChannel, POLLOUT, 0}, {cancel_fd, POLLIN, 0}};
    while (::poll(fds, cancel_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno != EINTR) return FERRY_OK;  // the send blocks instead
    }
    if ((fds[1].revents & POLLIN) == 0) return FERRY_OK;
    return deadline_ms_ != 0 && clock_.now_ms() >= deadline_ms_ ? FERRY_E_TIMEOUT : FERRY_E_CANCELLED;
  }

  const std::uint64_t id_;
  const std::int64_t deadline_ms_;
  ferry::SystemClock clock_;
  std::mutex mu_;
};

// Runs one call; a call cancelled while it waited behind others does not run.
ferry::Result<std::string> run(const Loaded& loaded, const ferry::Invoker& invoker,
                               ferry::worker::Control& control, const ferry::worker::Control::Call& call) {
  const Header& h = call.header;
  if (call.skip) return ferry::Status(FERRY_E_CANCELLED, "cancelled before it started");
  ChannelPartials partials(h.id, h.deadline_ms);
  const bool stream = (h.flags & ferry::channel::kFlagPartials) != 0;
  const ferry::CallEnv env{h.id, control.control(), stream ? &partials : nullptr};
  return invoker.invoke(*loaded.functions[h.code], call.payload, h.deadline_ms, env);
}

// Serves calls until the host closes the channel: the control thread reads
// it, this (main) thread runs the calls one at a time, in order. Each reply
// says how long its call ran (ns, in deadline_ms), since ferryd cannot tell
// when a call queued here started.
int serve(const Loaded& loaded, const ferry::Invoker& invoker, const ferry::Clock& clock) {
  ferry::worker::Control control(kChannel, kMaxBody);
  ferry::worker::Control::Call call;
  while (control.next(&call)) {
    const Header& h = call.header;
    if (h.code >= loaded.functions.size()) return 4;  // ferryd and this worker disagree: give up
    const std::int64_t started_ns = clock.now_ns();
    const ferry::Result<std::string> r = run(loaded, invoker, control, call);
    const ferry_code code = r.ok() ? FERRY_OK : r.status().code();
    Header reply{Type::reply, 0, h.id, clock.now_ns() - started_ns, std::uint32_t(code)};
    if (!ferry::channel::send(kChannel, reply, r.ok() ? *r : r.status().message()).ok()) return 5;
  }
  return control.exit_status();
}

}  // namespace

int main() {
  spdlog::set_level(spdlog::level::off);  // the worker reports on its channel; stderr is the plugin's
  setvbuf(stdout, nullptr, _IOLBF, 0);      // a pipe to ferryd: each printf'd line goes at once
  Header h;
  std::string body;
  const auto got = ferry::channel::recv(kChannel, &h, &body, 1u << 20);
  if (!got.ok() || *got != ferry::channel::Received::message || h.type != Type::spec) return 2;
  const ferry::Result<ferry::WorkerSpec> spec = ferry::decode_worker_spec(body);
  if (!spec.ok()) return fail("malformed spec message: " + spec.status().message());
  const ferry::sandbox::Spec& sandbox = spec->sandbox;
  if (sandbox.enabled) {
    auto st = ferry::sandbox::apply_before_load(sandbox, kChannel);
    if (!st.ok()) return fail("sandbox step " + st.message());
  }
  ferry::SystemClock clock;
  ferry::worker::ChannelLogSink log(kChannel);  // the plugin's log lines, to ferryd; outlives the registry
  ferry::Invoker invoker(clock, int(std::min<std::uint32_t>(spec->max_call_depth, 1000)), &log);
  ferry::Registry registry;
  Loaded loaded;
  const ferry::OpenOptions options{.log = &log, .clock = &clock};
  if (const ferry::Status st = load(registry, *spec, options, invoker, &loaded); !st.ok()) {
    return fail(st.message());
  }
  if (sandbox.enabled) {
    auto st = ferry::sandbox::apply_after_load(sandbox, spec->plugin_path, report_violation);
    if (!st.ok()) return fail("sandbox step " + st.message());
  }
  report_aborts();
  if (!ferry::channel::send(kChannel, Header{Type::ready}, loaded.ready_json).ok()) return 5;
  const int status = serve(loaded, invoker, clock);
  // The last references: ~Plugin runs the plugin's ferry_plugin_fini (its
  // shutdown hook) now, as the worker ends normally. A kill never gets here.
  loaded.functions.clear();
  registry.clear();
  return status;
}
