#include "plugins/invoke.hpp"

#include <mutex>
#include <new>

#include "plugins/registry.hpp"

// The per-call context behind the opaque C handle.
struct ferry_ctx {
  const ferry::Invoker* invoker;
  const ferry::Function* fn;
  std::int64_t deadline_ms;
  ferry::CallEnv env;  // a nested call shares its caller's
  int depth = 0;       // 0: a client's call; nested: caller's + 1
  ferry_code code = FERRY_OK;
  std::string data;
  bool replied = false;
};

// The registrar lives in registry.cpp.
struct ferry_registrar;
namespace ferry {
int registrar_add(ferry_registrar* reg, const char* name, ferry_fn fn, void* user);
ferry_instance* registrar_instance(ferry_registrar* reg);
std::string_view registrar_settings(const ferry_registrar* reg);
void registrar_refuse(ferry_registrar* reg, std::string_view why);
}  // namespace ferry

namespace ferry {
namespace {

// Every line of a load, from any thread, passes its rate bound; the drop
// summary, when one is due, goes out first. A refused line costs a clock
// read and a short lock: a plugin that logs in a loop burns its own time,
// not the sink's (in a worker: no syscall, nothing for ferryd to read).
void bounded_write(ferry_instance* inst, LogSink& sink, int level, std::uint64_t call_id, std::string_view text) {
  const std::int64_t now = inst->clock->now_ms();
  bool admitted;
  std::uint64_t dropped;
  {
    std::lock_guard lock(inst->mu);
    admitted = inst->limit.admit(now);
    dropped = inst->limit.take_summary(now);
  }
  if (dropped != 0) sink.dropped(inst->plugin, dropped);
  if (admitted) sink.write(level, inst->plugin, call_id, text);
}

// A client's call ended: what its flood dropped is told now, not at the
// plugin's next line, which may never come.
void summarize_after_call(const Function& fn, LogSink& sink) {
  ferry_instance* inst = fn.plugin != nullptr ? fn.plugin->instance.get() : nullptr;
  if (inst == nullptr) return;
  std::uint64_t dropped;
  {
    std::lock_guard lock(inst->mu);
    dropped = inst->limit.take_summary(inst->clock->now_ms(), true);
  }
  if (dropped != 0) sink.dropped(inst->plugin, dropped);
}

void instance_write(ferry_instance* inst, int level, std::uint64_t call_id, std::string_view text) {
  bounded_write(inst, *inst->log, level, call_id, text);
}

int host_register(ferry_registrar* reg, const char* name, ferry_fn fn, void* user) {
  return registrar_add(reg, name, fn, user);
}

void host_log(ferry_registrar* reg, int level, const char* msg, std::size_t len) {
  instance_write(registrar_instance(reg), level, 0, std::string_view(msg, len));
}

std::int64_t ctx_deadline(const ferry_ctx* ctx) { return ctx->deadline_ms; }

bool is_cancelled(const ferry_ctx& ctx) { return ctx.env.control != nullptr && ctx.env.control->cancelled(); }
bool past_deadline(const ferry_ctx& ctx) {
  return ctx.deadline_ms != 0 && ctx.invoker->clock().now_ms() >= ctx.deadline_ms;
}

int ctx_cancelled(const ferry_ctx* ctx) { return is_cancelled(*ctx) || past_deadline(*ctx); }

void ctx_log(ferry_ctx* ctx, int level, const char* msg, std::size_t len) {
  const Plugin* plugin = ctx->fn->plugin.get();
  const std::string_view text(msg, msg != nullptr ? len : 0);
  if (plugin != nullptr && plugin->instance != nullptr) {
    return bounded_write(plugin->instance.get(), ctx->invoker->log(), level, ctx->env.call_id, text);
  }
  ctx->invoker->log().write(level, plugin != nullptr ? std::string_view(plugin->name) : ctx->fn->name,
                            ctx->env.call_id, text);
}

// ---- Minor 2 -------------------------------------------------------------

const char* host_settings(ferry_registrar* reg, std::size_t* len) {
  const std::string_view s = registrar_settings(reg);
  if (len != nullptr) *len = s.size();
  return s.data();
}

void host_init_error(ferry_registrar* reg, const char* msg, std::size_t len) {
  registrar_refuse(reg, std::string_view(msg, msg != nullptr ? len : 0));
}

ferry_instance* host_instance(ferry_registrar* reg) { return registrar_instance(reg); }

void host_instance_log(ferry_instance* inst, int level, const char* msg, std::size_t len) {
  if (inst != nullptr && msg != nullptr) instance_write(inst, level, 0, std::string_view(msg, len));
}

// The code a call that is over ended with, or FERRY_OK while it runs.
ferry_code ended(const ferry_ctx& ctx) {
  if (is_cancelled(ctx)) return FERRY_E_CANCELLED;
  return past_deadline(ctx) ? FERRY_E_TIMEOUT : FERRY_OK;
}

int ctx_emit(ferry_ctx* ctx, const std::uint8_t* data, std::size_t len) {
  if (ctx == nullptr || (data == nullptr && len != 0)) return FERRY_E_BAD_REQUEST;
  if (const ferry_code code = ended(*ctx); code != FERRY_OK) return code;
  if (ctx->env.partials == nullptr) return FERRY_OK;
  try {
    return ctx->env.partials->emit(std::string_view(reinterpret_cast<const char*>(data), len), ctx->env.control);
  } catch (const std::bad_alloc&) {
    return FERRY_E_OUT_OF_MEMORY;
  } catch (...) {
    return FERRY_E_INTERNAL;
  }
}

int ctx_cancel_fd(ferry_ctx* ctx) {
  if (ctx == nullptr || ctx->env.control == nullptr) return -1;
  return ctx->env.control->fd();
}

void set_result(ferry_ctx* ctx, const std::uint8_t* data, std::size_t len) {
  ctx->code = FERRY_OK;
  ctx->data.assign(reinterpret_cast<const char*>(data), len);
  ctx->replied = true;
}

void set_error(ferry_ctx* ctx, int code, const char* msg, std::size_t len) {
  const bool known = code > FERRY_OK && code < FERRY_CODE_COUNT;
  ctx->code = known ? ferry_code(code) : FERRY_E_PLUGIN_ERROR;
  ctx->data.assign(msg, len);
  ctx->replied = true;
}

// Runs `fn` on this thread unless `deadline_ms` already passed. Client calls
// and nested calls alike.
Result<std::string> run(const Invoker& invoker, const Function& fn, std::string_view payload,
                        std::int64_t deadline_ms, const CallEnv& env, int depth) {
  const Clock& clock = invoker.clock();
  const std::int64_t started_ns = clock.now_ns();
  if (deadline_ms != 0 && started_ns / 1'000'000 >= deadline_ms) {
    return Status(FERRY_E_TIMEOUT, "deadline passed before the call started");
  }
  ferry_ctx ctx{&invoker, &fn, deadline_ms, env, depth, FERRY_OK, {}, false};
  const auto* in = reinterpret_cast<const std::uint8_t*>(payload.data());
  const int rc = fn.fn(fn.user, &ctx, in, payload.size());
  const std::int64_t finished_ns = clock.now_ns();
  if (env.times != nullptr) *env.times = CallTimes{started_ns, finished_ns};
  if (rc != 0 && (!ctx.replied || ctx.code == FERRY_OK)) {
    return Status(FERRY_E_PLUGIN_ERROR, fn.name + " failed without an error message");
  }
  if (deadline_ms != 0 && finished_ns / 1'000'000 >= deadline_ms) {
    // Too late to count: the caller was promised `timeout` at the deadline.
    return Status(FERRY_E_TIMEOUT, fn.name + " ran past its deadline");
  }
  if (ctx.code != FERRY_OK) return Status(ctx.code, std::move(ctx.data));
  return std::move(ctx.data);
}

// ---- Nested calls --------------------------------------------------------

std::string quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

// Finds what `name` may run here, or why nothing may.
Result<std::shared_ptr<const Function>> resolve(const Invoker& invoker, std::string_view name) {
  const auto dir = invoker.directory();
  const auto it = dir->targets.find(name);
  if (it == dir->targets.end() && !dir->only_plugin.empty()) {
    return Status(FERRY_E_PERMISSION_DENIED,
                  quoted(name) + " is out of reach: a nested call from a worker process reaches only "
                  "the functions of its own plugin (" + dir->only_plugin + ".*)");
  }
  if (it == dir->targets.end()) return Status(FERRY_E_UNKNOWN_FUNCTION, "unknown function " + quoted(name));
  if (!it->second.runnable_here) {
    return Status(FERRY_E_PERMISSION_DENIED,
                  quoted(name) + " runs in worker processes; nested calls reach only "
                  "thread-executor plugins from here");
  }
  std::shared_ptr<const Function> fn = it->second.fn.lock();
  if (fn == nullptr) {
    return Status(FERRY_E_UNKNOWN_FUNCTION, "unknown function " + quoted(name) + " (its plugin was removed)");
  }
  return fn;
}

// Whether a call made from `parent` may start at all. The deadline is
// checked by run().
Status admit(const ferry_ctx& parent, std::string_view name) {
  const int depth = parent.depth + 1;
  const int max = parent.invoker->max_call_depth();
  if (depth > max) {
    return Status(FERRY_E_CALL_DEPTH_EXCEEDED,
                  "call depth exceeded: " + quoted(name) + " would run at depth " + std::to_string(depth) +
                      ", deeper than max_call_depth " + std::to_string(max));
  }
  if (is_cancelled(parent)) {
    return Status(FERRY_E_CANCELLED, "not started: the calling call was cancelled");
  }
  return Status::Ok();
}

// Caller-runs: the nested call runs right here, as a plain function call. It
// never waits for pool capacity, so nested calls cannot deadlock.
Result<std::string> nested_call(const ferry_ctx& parent, std::string_view name, std::string_view payload) {
  const Invoker& invoker = *parent.invoker;
  Result<std::shared_ptr<const Function>> fn = resolve(invoker, name);  // keeps its library loaded meanwhile
  if (!fn.ok()) return fn.status();
  FERRY_RETURN_IF_ERROR(admit(parent, name));
  CallEnv env = parent.env;
  env.times = nullptr;  // the client's call is timed, not its nested calls
  return run(invoker, **fn, payload, parent.deadline_ms, env, parent.depth + 1);
}

using ReplyFn = void (*)(void* user, const std::uint8_t* data, std::size_t len);

int answer(ReplyFn on_reply, void* user, ferry_code code, std::string_view data) {
  if (on_reply != nullptr) on_reply(user, reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  return code;
}

int ctx_call(ferry_ctx* ctx, const char* fn, std::size_t fn_len, const std::uint8_t* in, std::size_t in_len,
             ReplyFn on_reply, void* user) {
  if (ctx == nullptr || (fn == nullptr && fn_len != 0) || (in == nullptr && in_len != 0)) {
    return answer(on_reply, user, FERRY_E_BAD_REQUEST, "ctx_call: null ctx, function name or input");
  }
  try {
    const Result<std::string> r = nested_call(*ctx, {fn, fn_len}, {reinterpret_cast<const char*>(in), in_len});
    return r.ok() ? answer(on_reply, user, FERRY_OK, *r) : answer(on_reply, user, r.status().code(), r.status().message());
  } catch (const std::bad_alloc&) {
    return answer(on_reply, user, FERRY_E_OUT_OF_MEMORY, "out of memory");
  } catch (...) {
    return answer(on_reply, user, FERRY_E_INTERNAL, "ctx_call failed in the host");
  }
}

const ferry_host_api kApi = {
    FERRY_ABI_MAJOR, FERRY_ABI_MINOR, sizeof(ferry_host_api), host_register, host_log,
    ctx_deadline,    ctx_cancelled,   ctx_log,                 set_result,    set_error,
    ctx_call,        host_settings,   host_init_error,         host_instance, host_instance_log,
    ctx_emit,        ctx_cancel_fd,
};

}  // namespace

const ferry_host_api* host_api() { return &kApi; }

Invoker::Invoker(const Clock& clock, int max_call_depth, LogSink* log)
    : clock_(clock), log_(log != nullptr ? log : &default_sink_), max_depth_(max_call_depth) {}

Result<std::string> Invoker::invoke(const Function& fn, std::string_view payload, std::int64_t deadline_ms,
                                    const CallEnv& env) const {
  Result<std::string> r = run(*this, fn, payload, deadline_ms, env, 0);
  summarize_after_call(fn, *log_);
  return r;
}

void Invoker::publish(std::shared_ptr<const CallDirectory> dir) {
  if (dir == nullptr) dir = std::make_shared<CallDirectory>();
  std::lock_guard lock(mu_);
  dir_.swap(dir);  // `dir` now holds the old one: released after the lock
}

std::shared_ptr<const CallDirectory> Invoker::directory() const {
  std::lock_guard lock(mu_);
  return dir_;
}

std::shared_ptr<const CallDirectory> directory_of(const Registry& registry, std::string only_plugin) {
  auto dir = std::make_shared<CallDirectory>();
  dir->only_plugin = std::move(only_plugin);
  for (const auto& plugin : registry.plugins()) {
    const bool here = plugin->library.is_loaded();
    for (const auto& name : plugin->functions) dir->targets[name] = CallTarget{registry.find(name), here};
  }
  return dir;
}

}  // namespace ferry

// The load is going: what its bound dropped since the last summary is said now.
ferry_instance::~ferry_instance() {
  if (const std::uint64_t dropped = limit.take_all(); dropped != 0) {
    log->dropped(plugin, dropped);
  }
}
