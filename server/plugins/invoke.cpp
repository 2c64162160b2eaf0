#include "plugins/invoke.hpp"

#include <spdlog/spdlog.h>

#include "plugins/registry.hpp"

// The per-call context behind the opaque C handle.
struct ferry_ctx {
  const ferry::Function* fn;
  std::int64_t deadline_ms;
  const std::atomic<bool>* cancelled;
  ferry_code code = FERRY_OK;
  std::string data;
  bool replied = false;
};

// The registrar lives in registry.cpp; log() only needs its plugin name.
struct ferry_registrar;
namespace ferry {
std::string_view registrar_plugin_name(const ferry_registrar* reg);
int registrar_add(ferry_registrar* reg, const char* name, ferry_fn fn, void* user);
}  // namespace ferry

namespace ferry {
namespace {

spdlog::level::level_enum to_level(int level) {
  if (level <= FERRY_LOG_TRACE) return spdlog::level::trace;
  if (level >= FERRY_LOG_ERROR) return spdlog::level::err;
  return spdlog::level::level_enum(level);  // debug, info, warn share numbering
}

int host_register(ferry_registrar* reg, const char* name, ferry_fn fn, void* user) {
  return registrar_add(reg, name, fn, user);
}

void host_log(ferry_registrar* reg, int level, const char* msg, std::size_t len) {
  spdlog::log(to_level(level), "[{}] {}", registrar_plugin_name(reg), std::string_view(msg, len));
}

std::int64_t ctx_deadline(const ferry_ctx* ctx) { return ctx->deadline_ms; }

int ctx_cancelled(const ferry_ctx* ctx) {
  if (ctx->cancelled != nullptr && ctx->cancelled->load(std::memory_order_relaxed)) return 1;
  return ctx->deadline_ms != 0 && monotonic_ms() >= ctx->deadline_ms;
}

void ctx_log(ferry_ctx* ctx, int level, const char* msg, std::size_t len) {
  spdlog::log(to_level(level), "[{}] {}", ctx->fn->name, std::string_view(msg, len));
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

const ferry_host_api kApi = {
    FERRY_ABI_MAJOR, FERRY_ABI_MINOR, sizeof(ferry_host_api), host_register, host_log,
    ctx_deadline,    ctx_cancelled,   ctx_log,                 set_result,    set_error,
};

}  // namespace

const ferry_host_api* host_api() { return &kApi; }

Completion run_job(const Job& job, const std::atomic<bool>* cancelled) {
  Completion out{job.ref, FERRY_OK, {}};
  if (job.deadline_ms != 0 && monotonic_ms() >= job.deadline_ms) {
    out.code = FERRY_E_TIMEOUT;
    out.data = "deadline passed before the call started";
    return out;
  }
  ferry_ctx ctx{job.fn.get(), job.deadline_ms, cancelled, FERRY_OK, {}, false};
  const auto* in = reinterpret_cast<const std::uint8_t*>(job.payload.data());
  const int rc = job.fn->fn(job.fn->user, &ctx, in, job.payload.size());
  if (rc != 0 && (!ctx.replied || ctx.code == FERRY_OK)) {
    ctx.code = FERRY_E_PLUGIN_ERROR;
    ctx.data = job.fn->name + " failed without an error message";
  }
  if (job.deadline_ms != 0 && monotonic_ms() >= job.deadline_ms) {
    // Too late to count: the caller was promised `timeout` at the deadline.
    out.code = FERRY_E_TIMEOUT;
    out.data = job.fn->name + " ran past its deadline";
    return out;
  }
  out.code = ctx.code;
  out.data = std::move(ctx.data);
  return out;
}

}  // namespace ferry
