// Ferry C++ plugin SDK: a header-only layer over the C ABI in <ferry/plugin.h>.
//
//   FERRY_PLUGIN("primes", "1.0.0") {
//     plugin.def("is_prime", [](std::int64_t n) { return check(n); });  // JSON in/out
//     plugin.raw("noop", [](std::string_view) { return std::string("null"); });
//   }
//
// Per-plugin state: create it in the block (from plugin.settings()), capture
// a shared_ptr to it in the functions, release it in plugin.on_shutdown().
//
// def(): the request is a JSON array of the arguments, the reply the JSON of the
// result. raw(): bytes in, bytes out. A thrown ferry::Error replies with its
// code; any other exception becomes plugin_error (bad_alloc: out_of_memory).
// Nothing ever throws across the C ABI. Functions run concurrently on several
// threads, so they must be const callables and synchronous. A function that
// takes a ferry::Context& may call other functions through it (ctx.call).
#ifndef FERRY_PLUGIN_HPP
#define FERRY_PLUGIN_HPP

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <new>
#include <thread>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "ferry/detail/traits.hpp"
#include "ferry/plugin.h"

namespace ferry {

// An error reply: throw it from a plugin function to answer with `code`.
// Immutable; safe to copy and share.
class Error : public std::runtime_error {
 public:
  Error(ferry_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ferry_code code() const noexcept { return code_; }

 private:
  ferry_code code_;
};

// A plugin's own log, for any thread (its background threads too), valid
// until its shutdown hook returns. Copyable. Lines are tagged with the plugin
// (and, in process mode, the worker's pid). A default-constructed Logger, or
// one from a host older than ABI 1.2, drops every line.
class Logger {
 public:
  Logger() noexcept = default;
  Logger(const ferry_host_api* api, ferry_instance* inst) noexcept : api_(api), inst_(inst) {}

  void log(int level, std::string_view msg) const noexcept {
    if (inst_ != nullptr) api_->instance_log(inst_, level, msg.data(), msg.size());
  }
  void debug(std::string_view msg) const noexcept { log(FERRY_LOG_DEBUG, msg); }
  void info(std::string_view msg) const noexcept { log(FERRY_LOG_INFO, msg); }
  void warn(std::string_view msg) const noexcept { log(FERRY_LOG_WARN, msg); }
  void error(std::string_view msg) const noexcept { log(FERRY_LOG_ERROR, msg); }

 private:
  const ferry_host_api* api_ = nullptr;
  ferry_instance* inst_ = nullptr;
};

// One call's view of the host: deadline, cancellation, logging, partial
// results, nested calls. Valid only while the call runs; all methods are
// thread-safe.
class Context {
 public:
  Context(const ferry_host_api* api, ferry_ctx* ctx) noexcept : api_(api), ctx_(ctx) {}

  // Calls the registered function `fn` ("plugin.function") with the request
  // bytes `payload` and returns its result bytes. It runs at once on this
  // thread, under this call's deadline and cancellation (see ctx_call in
  // <ferry/plugin.h> for what is reachable). Throws ferry::Error with the
  // callee's code and message: uncaught, it becomes this call's error reply.
  std::string call_raw(std::string_view fn, std::string_view payload) const {
    if (!FERRY_HOST_API_HAS(api_, ctx_call) || api_->ctx_call == nullptr)
      throw Error(FERRY_E_UNSUPPORTED_VERSION, "nested calls need a host with plugin ABI 1.1 or later");
    Reply reply;
    const auto* in = reinterpret_cast<const std::uint8_t*>(payload.data());
    const int rc = api_->ctx_call(ctx_, fn.data(), fn.size(), in, payload.size(), &Reply::take, &reply);
    if (reply.out_of_memory) throw std::bad_alloc();
    if (rc == FERRY_OK) return std::move(reply.data);
    const bool known = rc > FERRY_OK && rc < FERRY_CODE_COUNT;
    throw Error(known ? ferry_code(rc) : FERRY_E_PLUGIN_ERROR, reply.data);
  }
  // As call_raw() for a typed (def) function: `args` is the JSON array of its
  // arguments; returns its JSON result.
  nlohmann::json call(std::string_view fn, const nlohmann::json& args) const {
    const std::string out = call_raw(fn, args.dump());
    try {
      return nlohmann::json::parse(out);
    } catch (const nlohmann::json::exception& e) {
      throw Error(FERRY_E_PLUGIN_ERROR, std::string(fn) + " returned a result that is not JSON: " + e.what());
    }
  }

  // Sends a partial result to the caller before the final reply (protocol
  // 1.2 PARTIAL frames; dropped when the caller did not ask for them).
  // Blocks while too many of this call's partials wait for a slow caller.
  // Throws ferry::Error (cancelled or timeout) once the call is over: let it
  // propagate. A host older than ABI 1.2: unsupported_version.
  void emit(const nlohmann::json& part) const { emit_raw(part.dump()); }
  void emit_raw(std::string_view part) const {
    if (!FERRY_HOST_API_HAS(api_, ctx_emit) || api_->ctx_emit == nullptr)
      throw Error(FERRY_E_UNSUPPORTED_VERSION, "partial results need a host with plugin ABI 1.2 or later");
    const int rc = api_->ctx_emit(ctx_, reinterpret_cast<const std::uint8_t*>(part.data()), part.size());
    if (rc == FERRY_OK) return;
    const bool known = rc > FERRY_OK && rc < FERRY_CODE_COUNT;
    throw Error(known ? ferry_code(rc) : FERRY_E_CANCELLED, "the call ended while it was sending partial results");
  }

  // CLOCK_MONOTONIC milliseconds, or 0 when the call has no deadline.
  std::int64_t deadline_ms() const noexcept { return api_->ctx_deadline_ms(ctx_); }
  // True once the call was cancelled or passed its deadline: stop and return.
  bool cancelled() const noexcept { return api_->ctx_cancelled(ctx_) != 0; }
  // An fd that turns readable when cancelled() turns true, for poll() next
  // to the fds the function waits on. The host owns it: never read or close
  // it. -1 on a host older than ABI 1.2 (or when none could be made).
  int cancel_fd() const noexcept {
    if (!FERRY_HOST_API_HAS(api_, ctx_cancel_fd) || api_->ctx_cancel_fd == nullptr) return -1;
    return api_->ctx_cancel_fd(ctx_);
  }
  // Sleeps for `d`, or less: true when it slept the whole time, false as
  // soon as the call is cancelled or passes its deadline.
  bool sleep_for(std::chrono::milliseconds d) const noexcept {
    using clock = std::chrono::steady_clock;
    d = std::min(d, std::chrono::milliseconds(std::chrono::hours(24 * 365 * 100)));  // now() + d must not overflow
    const auto until = clock::now() + d;
    const int fd = cancel_fd();
    while (!cancelled()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now());
      if (left.count() <= 0) return true;
      if (fd < 0) {  // no fd: poll the flag every 10 ms at most
        std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(10)));
        continue;
      }
      pollfd p{fd, POLLIN, 0};
      const int n = ::poll(&p, 1, int(std::min<std::int64_t>(left.count(), 1 << 30)));
      if (n > 0) return false;
      if (n < 0 && errno != EINTR) std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(10)));
    }
    return false;
  }

  void log(int level, std::string_view msg) const noexcept {
    api_->ctx_log(ctx_, level, msg.data(), msg.size());
  }
  void debug(std::string_view msg) const noexcept { log(FERRY_LOG_DEBUG, msg); }
  void info(std::string_view msg) const noexcept { log(FERRY_LOG_INFO, msg); }
  void warn(std::string_view msg) const noexcept { log(FERRY_LOG_WARN, msg); }
  void error(std::string_view msg) const noexcept { log(FERRY_LOG_ERROR, msg); }

  // The C handles, for host services this wrapper does not cover.
  ferry_ctx* handle() const noexcept { return ctx_; }
  const ferry_host_api* api() const noexcept { return api_; }

 private:
  // Collects ctx_call's reply; on_reply must not throw across the C ABI.
  struct Reply {
    std::string data;
    bool out_of_memory = false;
    static void take(void* user, const std::uint8_t* data, std::size_t len) noexcept {
      auto* self = static_cast<Reply*>(user);
      try {
        self->data.assign(reinterpret_cast<const char*>(data), len);
      } catch (...) {
        self->out_of_memory = true;
      }
    }
  };

  const ferry_host_api* api_;
  ferry_ctx* ctx_;
};

}  // namespace ferry

// The machinery behind Plugin::def and Plugin::raw (argument decoding, result
// encoding, the C entry points); it needs Error and Context above.
#include "ferry/detail/typed.hpp"

namespace ferry {

// Registers a plugin's functions; handed to the FERRY_PLUGIN block.
// Not thread-safe: use it only inside that block (during ferry_plugin_init).
class Plugin {
 public:
  // Reads the settings the host hands over (an empty object before ABI 1.2).
  Plugin(const ferry_host_api* api, ferry_registrar* reg)
      : api_(api), reg_(reg), settings_(detail::read_settings(api, reg)) {
    if (FERRY_HOST_API_HAS(api, instance) && api->instance != nullptr) {
      detail::logger() = Logger(api, api->instance(reg));
    }
  }

  // This plugin's [plugins.NAME.settings] table from server.toml, as JSON:
  // always an object, empty when there is no table. Valid during the block;
  // copy what the functions need.
  const nlohmann::json& settings() const noexcept { return settings_; }

  // Runs `hook` once when this version of the plugin is retired (after its
  // last call) or ferryd stops; in process mode, in each worker before it
  // exits normally, never after a kill. Hooks run in reverse order of
  // registration; one that throws is logged and the next still runs. If the
  // block throws, the hooks registered so far run at once.
  Plugin& on_shutdown(std::function<void()> hook) {
    detail::hooks().push_back(std::move(hook));
    return *this;
  }

  // The plugin's log, for any thread until the shutdown hooks return.
  Logger logger() const noexcept { return detail::logger(); }

  // Typed function: f(Args...) or f(ferry::Context&, Args...), with Args read
  // from the request's JSON array and the result returned as JSON.
  template <class F>
  Plugin& def(std::string name, F f) {
    static_assert(detail::has_signature<F>,
                  "ferry: plugin.def needs a callable with one fixed signature "
                  "(a function, a non-generic lambda or a functor with one operator())");
    if constexpr (detail::has_signature<F>) {
      using sig = detail::signature_of<F>;
      using R = std::remove_cvref_t<decltype(detail::result_of(typename sig::list{}))>;
      static_assert(sig::is_const, "ferry: plugin functions run on several threads at once, "
                                   "so operator() must be const (no mutable lambdas)");
      if constexpr (detail::require_synchronous<R>::value && sig::is_const)
        add(std::move(name), &detail::typed_entry<F>, std::move(f));
    }
    return *this;
  }

  // Bytes in, bytes out: f is std::string(ferry::Context&, std::string_view)
  // or std::string(std::string_view).
  template <class F>
  Plugin& raw(std::string name, F f) {
    constexpr bool ok = detail::raw_with_context<F> || detail::raw_plain<F>;
    static_assert(ok, "ferry: plugin.raw needs a const callable "
                      "std::string(ferry::Context&, std::string_view) or std::string(std::string_view)");
    if constexpr (ok) {
      using R = std::remove_cvref_t<typename std::conditional_t<
          detail::raw_with_context<F>, std::invoke_result<const F&, Context&, std::string_view>,
          std::invoke_result<const F&, std::string_view>>::type>;
      if constexpr (detail::require_synchronous<R>::value) {
        static_assert(std::is_convertible_v<R, std::string>,
                      "ferry: a plugin.raw function must return std::string");
        add(std::move(name), &detail::raw_entry<F>, std::move(f));
      }
    }
    return *this;
  }

  // Logs through the host, tagged with the plugin name. During the block
  // only; logger() works from anywhere.
  void log(int level, std::string_view msg) const noexcept {
    api_->log(reg_, level, msg.data(), msg.size());
  }
  const ferry_host_api* api() const noexcept { return api_; }
  ferry_registrar* registrar() const noexcept { return reg_; }

 private:
  template <class F>
  void add(std::string name, ferry_fn entry, F f) {
    auto& slots = detail::storage();
    slots.reserve(slots.size() + 1);  // so keeping the slot below cannot throw
    auto* bound = new detail::Bound<F>{api_, std::move(name), std::move(f)};
    detail::Slot slot(bound, [](void* p) { delete static_cast<detail::Bound<F>*>(p); });
    const int rc = api_->register_fn(reg_, bound->name.c_str(), entry, bound);
    if (rc != 0) {
      throw Error(static_cast<ferry_code>(rc), "cannot register function '" + bound->name +
                                                   "': " + ferry_code_name(rc));
    }
    slots.push_back(std::move(slot));
  }

  const ferry_host_api* api_;
  ferry_registrar* reg_;
  nlohmann::json settings_;
};

namespace detail {

// Runs the shutdown hooks, newest first, each at most once.
inline void run_hooks() noexcept {
  auto& hooks = detail::hooks();
  while (!hooks.empty()) {
    std::function<void()> hook = std::move(hooks.back());
    hooks.pop_back();
    try {
      hook();
    } catch (const std::exception& e) {
      logger().error(std::string("shutdown hook failed: ") + e.what());
    } catch (...) {
      logger().error("shutdown hook failed: unknown exception");
    }
  }
}

// The body of ferry_plugin_fini.
inline void run_fini() noexcept {
  run_hooks();
  logger() = Logger();  // its instance is no longer valid
}

inline int init_failed(const ferry_host_api* api, ferry_registrar* reg, int code,
                       const char* why) noexcept {
  run_fini();  // release what the block set up before it threw
  if (FERRY_HOST_API_HAS(api, init_error) && api->init_error != nullptr) {
    api->init_error(reg, why, std::char_traits<char>::length(why));
  } else {
    char buf[512];
    const int n = std::snprintf(buf, sizeof buf, "plugin init failed: %s", why);
    const std::size_t len = n < 0 ? 0 : (n < int(sizeof buf) ? std::size_t(n) : sizeof buf - 1);
    api->log(reg, FERRY_LOG_ERROR, buf, len);
  }
  return code > FERRY_OK ? code : FERRY_E_PLUGIN_ERROR;
}

// The body of ferry_plugin_init: checks the host table, runs the registrations.
inline int run_init(const ferry_host_api* api, ferry_registrar* reg,
                    void (*body)(Plugin&)) noexcept {
  if (api == nullptr) return FERRY_E_INTERNAL;
  // A host of an older minor has a shorter table: the SDK needs the minor-0
  // members; newer ones are checked where used (Context::call_raw).
  if (api->abi_major != FERRY_ABI_MAJOR || !FERRY_HOST_API_HAS(api, set_error))
    return init_failed(api, reg, FERRY_E_UNSUPPORTED_VERSION, "host ABI does not match the SDK");
  try {
    Plugin plugin(api, reg);
    body(plugin);
    return 0;
  } catch (const Error& e) {
    return init_failed(api, reg, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return init_failed(api, reg, FERRY_E_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return init_failed(api, reg, FERRY_E_PLUGIN_ERROR, e.what());
  } catch (...) {
    return init_failed(api, reg, FERRY_E_PLUGIN_ERROR, "unknown exception");
  }
}

}  // namespace detail
}  // namespace ferry

// Defines and exports the plugin's three entry points (<ferry/plugin.h>);
// the block that follows is its registration function, receiving
// `ferry::Plugin& plugin`. Use once per plugin library.
#define FERRY_PLUGIN(NAME, VERSION)                                                        \
  static_assert(::ferry::detail::valid_name(NAME), "FERRY_PLUGIN: name must match [A-Za-z0-9_]+"); \
  static void ferry_detail_register(::ferry::Plugin& plugin);                              \
  static constexpr ferry_plugin_info_t ferry_detail_info_data = {FERRY_ABI_MAJOR, FERRY_ABI_MINOR, \
                                                                 NAME, VERSION};           \
  extern "C" const struct ferry_plugin_info* ferry_plugin_info(void) {                     \
    return &ferry_detail_info_data;                                                        \
  }                                                                                        \
  extern "C" int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg) {      \
    return ::ferry::detail::run_init(api, reg, &ferry_detail_register);                    \
  }                                                                                        \
  extern "C" void ferry_plugin_fini(void) { ::ferry::detail::run_fini(); }                 \
  static void ferry_detail_register([[maybe_unused]] ::ferry::Plugin& plugin)

#endif  // FERRY_PLUGIN_HPP
