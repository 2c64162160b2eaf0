// Ferry C++ plugin SDK: a header-only layer over the C ABI in <ferry/plugin.h>.
//
//   FERRY_PLUGIN("primes", "1.0.0") {
//     plugin.def("is_prime", [](std::int64_t n) { return check(n); });  // JSON in/out
//     plugin.raw("noop", [](std::string_view) { return std::string("null"); });
//   }
//
// def(): the request is a JSON array of the arguments, the reply the JSON of the
// result. raw(): bytes in, bytes out. A thrown ferry::Error replies with its
// code; any other exception becomes plugin_error (bad_alloc: out_of_memory).
// Nothing ever throws across the C ABI. Functions run concurrently on several
// threads, so they must be const callables and synchronous. A function that
// takes a ferry::Context& may call other functions through it (ctx.call).
#ifndef FERRY_PLUGIN_HPP
#define FERRY_PLUGIN_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <new>
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

// One call's view of the host: deadline, cancellation, logging, nested calls.
// Valid only while the call runs; all methods are thread-safe.
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

  // CLOCK_MONOTONIC milliseconds, or 0 when the call has no deadline.
  std::int64_t deadline_ms() const noexcept { return api_->ctx_deadline_ms(ctx_); }
  // True once the call was cancelled or passed its deadline: stop and return.
  bool cancelled() const noexcept { return api_->ctx_cancelled(ctx_) != 0; }

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
  Plugin(const ferry_host_api* api, ferry_registrar* reg) noexcept : api_(api), reg_(reg) {}

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

  // Logs through the host, tagged with the plugin name.
  void log(int level, std::string_view msg) const noexcept {
    api_->log(reg_, level, msg.data(), msg.size());
  }
  const ferry_host_api* api() const noexcept { return api_; }

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
};

namespace detail {

inline int init_failed(const ferry_host_api* api, ferry_registrar* reg, int code,
                       const char* why) noexcept {
  char buf[512];
  const int n = std::snprintf(buf, sizeof buf, "plugin init failed: %s", why);
  const std::size_t len = n < 0 ? 0 : (n < int(sizeof buf) ? std::size_t(n) : sizeof buf - 1);
  api->log(reg, FERRY_LOG_ERROR, buf, len);
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

// Defines and exports the plugin's two entry points; the block that follows
// is its registration function, receiving `ferry::Plugin& plugin`. Use once
// per plugin library. ferry_plugin_info is defined under another C++ name
// (asm label) because the name is also plugin.h's struct typedef.
#define FERRY_PLUGIN(NAME, VERSION)                                                        \
  static_assert(::ferry::detail::valid_name(NAME), "FERRY_PLUGIN: name must match [A-Za-z0-9_]+"); \
  static void ferry_detail_register(::ferry::Plugin& plugin);                              \
  extern "C" {                                                                             \
  FERRY_EXPORT const ferry_plugin_info* ferry_detail_info(void) __asm__("ferry_plugin_info"); \
  FERRY_EXPORT int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg);     \
  }                                                                                        \
  static constexpr ferry_plugin_info ferry_detail_info_data = {FERRY_ABI_MAJOR, FERRY_ABI_MINOR, \
                                                               NAME, VERSION};             \
  const ferry_plugin_info* ferry_detail_info(void) { return &ferry_detail_info_data; }     \
  int ferry_plugin_init(const ferry_host_api* api, ferry_registrar* reg) {                 \
    return ::ferry::detail::run_init(api, reg, &ferry_detail_register);                    \
  }                                                                                        \
  static void ferry_detail_register([[maybe_unused]] ::ferry::Plugin& plugin)

#endif  // FERRY_PLUGIN_HPP
