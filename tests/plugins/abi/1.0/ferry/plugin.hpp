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
// threads, so they must be const callables and synchronous.
#ifndef FERRY_PLUGIN_HPP
#define FERRY_PLUGIN_HPP

#include <cstdint>
#include <cstdio>
#include <future>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

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

// One call's view of the host: deadline, cancellation and logging.
// Valid only while the call runs; all methods are thread-safe.
class Context {
 public:
  Context(const ferry_host_api* api, ferry_ctx* ctx) noexcept : api_(api), ctx_(ctx) {}

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
  const ferry_host_api* api_;
  ferry_ctx* ctx_;
};

namespace detail {

// ---- Compile-time checks -------------------------------------------------

template <class R>
inline constexpr bool is_future = false;
template <class T>
inline constexpr bool is_future<std::future<T>> = true;
template <class T>
inline constexpr bool is_future<std::shared_future<T>> = true;

template <class R>
concept coroutine_like = requires { typename R::promise_type; };
template <class R>
concept awaitable_like = requires(R& r) { r.await_ready(); } ||
                         requires(R&& r) { static_cast<R&&>(r).operator co_await(); } ||
                         requires(R&& r) { operator co_await(static_cast<R&&>(r)); };

template <class R>
inline constexpr bool is_synchronous =
    !coroutine_like<R> && !awaitable_like<R> && !is_future<R>;

// Instantiating this is the one error an asynchronous function produces;
// `value` then discards the rest of the registration code (no error cascade).
template <class R>
struct require_synchronous {
  static_assert(is_synchronous<R>,
                "ferry: plugin functions must be synchronous: the call is over when the "
                "function returns, so coroutines, awaitables and futures are not allowed");
  static constexpr bool value = is_synchronous<R>;
};

// ---- Signature of a callable ---------------------------------------------

template <class... T>
struct types {};

// result + argument list of a function pointer or a single operator().
template <class T>
struct signature {};  // no members: not a callable with one fixed signature
template <class R, class... A>
struct signature<R (*)(A...)> {
  using list = types<R, A...>;
  static constexpr bool is_const = true;
};
template <class R, class... A>
struct signature<R (*)(A...) noexcept> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) const> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) const noexcept> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...)> : signature<R (*)(A...)> {
  static constexpr bool is_const = false;
};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) noexcept> : signature<R (C::*)(A...)> {};

template <class F>
auto call_operator(int) -> decltype(&F::operator());
template <class F>
F call_operator(...);

template <class F>
using signature_of = signature<decltype(call_operator<F>(0))>;
template <class F>
concept has_signature = requires { typename signature_of<F>::list; };

template <class R, class... A>
R result_of(types<R, A...>);

// Splits an optional leading ferry::Context parameter off the argument list.
template <class L>
struct strip_context {
  using list = L;
  static constexpr bool takes_context = false;
};
template <class R, class C, class... A>
  requires std::is_same_v<std::remove_cvref_t<C>, Context>
struct strip_context<types<R, C, A...>> {
  using list = types<R, A...>;
  static constexpr bool takes_context = true;
};

// ---- Storage and the C entry points --------------------------------------

// A registered callable plus what its entry point needs; `user` points here.
// Immutable after registration, so calls on many threads share it safely.
template <class F>
struct Bound {
  const ferry_host_api* api;
  std::string name;
  F f;
};

// Heap storage owned by the plugin library: freed when it is unloaded.
// Written only during ferry_plugin_init (single-threaded).
using Slot = std::unique_ptr<void, void (*)(void*)>;
inline std::vector<Slot>& storage() {
  static std::vector<Slot> slots;
  return slots;
}

inline int reply_error(const Context& c, int code, const char* msg) noexcept {
  if (code <= FERRY_OK) code = FERRY_E_PLUGIN_ERROR;
  c.api()->set_error(c.handle(), code, msg, std::char_traits<char>::length(msg));
  return 1;
}

// Runs `body` (returning the reply bytes) with every exception turned into an
// error reply: this is the C ABI boundary.
template <class Body>
int guarded(const Context& c, Body&& body) noexcept {
  try {
    const std::string out = body();
    c.api()->set_result(c.handle(), reinterpret_cast<const std::uint8_t*>(out.data()), out.size());
    return 0;
  } catch (const Error& e) {
    return reply_error(c, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return reply_error(c, FERRY_E_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return reply_error(c, FERRY_E_PLUGIN_ERROR, e.what());
  } catch (...) {
    return reply_error(c, FERRY_E_PLUGIN_ERROR, "unknown exception");
  }
}

inline Error bad_request(const std::string& msg) { return Error(FERRY_E_BAD_REQUEST, msg); }

inline std::string count_text(std::size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

// Parses the argument array; an empty payload counts as `[]`.
inline nlohmann::json parse_args(std::string_view in, const std::string& fn, std::size_t arity) {
  nlohmann::json args = nlohmann::json::array();
  if (!in.empty()) {
    try {
      args = nlohmann::json::parse(in.begin(), in.end());
    } catch (const nlohmann::json::exception& e) {
      throw bad_request(fn + ": arguments are not valid JSON: " + e.what());
    }
  }
  if (!args.is_array())
    throw bad_request(fn + ": arguments must be a JSON array, got " + args.type_name());
  if (args.size() != arity)
    throw bad_request(fn + " takes " + count_text(arity, "argument") + ", got " +
                      std::to_string(args.size()));
  return args;
}

// Integer parameters (not bool or characters) are range-checked: nlohmann
// would turn 2.5 into 2 and wrap 300 into a uint8_t.
template <class T>
inline constexpr bool plain_integer =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> &&
    !std::is_same_v<T, wchar_t> && !std::is_same_v<T, char8_t> &&
    !std::is_same_v<T, char16_t> && !std::is_same_v<T, char32_t>;

template <class T>
void check_integer(const nlohmann::json& j, const std::string& where) {
  if (!j.is_number()) return;  // let get<T>() report the type
  bool fits = false;
  if (j.is_number_unsigned()) fits = std::in_range<T>(j.get<std::uint64_t>());
  else if (j.is_number_integer()) fits = std::in_range<T>(j.get<std::int64_t>());
  else throw bad_request(where + " has the wrong type: expected an integer, got " + j.dump());
  if (!fits) throw bad_request(where + " is out of range: " + j.dump());
}

// Argument storage: a string_view parameter views a std::string we own.
template <class A>
using stored_t = std::conditional_t<std::is_same_v<std::decay_t<A>, std::string_view>,
                                    std::string, std::decay_t<A>>;

template <class T>
T convert(const nlohmann::json& j, std::size_t index, const std::string& fn) {
  const std::string where = fn + ": argument " + std::to_string(index + 1);
  if constexpr (plain_integer<T>) check_integer<T>(j, where);
  try {
    return j.get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw bad_request(where + " has the wrong type: " + e.what());
  }
}

// Hands a stored argument to a parameter of type A: lvalue for `T&`, else moved.
template <class A, class T>
decltype(auto) pass(T& value) {
  if constexpr (std::is_lvalue_reference_v<A>) return (value);
  else return std::move(value);
}

template <class G, class R, class... A, std::size_t... I>
std::string call_json(const G& g, const nlohmann::json& args, const std::string& fn,
                      types<R, A...>, std::index_sequence<I...>) {
  // Braced init: arguments convert left to right, so errors name the first bad one.
  std::tuple<stored_t<A>...> values{convert<stored_t<A>>(args[I], I, fn)...};
  if constexpr (std::is_void_v<R>) {
    g(pass<A>(std::get<I>(values))...);
    return "null";
  } else {
    return nlohmann::json(g(pass<A>(std::get<I>(values))...)).dump();
  }
}

template <class F>
std::string call_typed(const Bound<F>& b, Context& c, std::string_view in) {
  using split = strip_context<typename signature_of<F>::list>;
  using list = typename split::list;
  return [&]<class R, class... A>(types<R, A...> l) {
    const nlohmann::json args = parse_args(in, b.name, sizeof...(A));
    auto seq = std::index_sequence_for<A...>{};
    if constexpr (split::takes_context) {
      auto with_ctx = [&](auto&&... x) -> R { return b.f(c, static_cast<decltype(x)&&>(x)...); };
      return call_json(with_ctx, args, b.name, l, seq);
    } else {
      return call_json(b.f, args, b.name, l, seq);
    }
  }(list{});
}

template <class F>
int typed_entry(void* user, ferry_ctx* ctx, const std::uint8_t* in, std::size_t len) noexcept {
  const auto& b = *static_cast<const Bound<F>*>(user);
  Context c(b.api, ctx);
  return guarded(c, [&] { return call_typed(b, c, {reinterpret_cast<const char*>(in), len}); });
}

template <class F>
inline constexpr bool raw_with_context = std::is_invocable_v<const F&, Context&, std::string_view>;
template <class F>
inline constexpr bool raw_plain = std::is_invocable_v<const F&, std::string_view>;

template <class F>
int raw_entry(void* user, ferry_ctx* ctx, const std::uint8_t* in, std::size_t len) noexcept {
  const auto& b = *static_cast<const Bound<F>*>(user);
  Context c(b.api, ctx);
  const std::string_view payload(reinterpret_cast<const char*>(in), len);
  return guarded(c, [&]() -> std::string {
    if constexpr (raw_with_context<F>) return b.f(c, payload);
    else return b.f(payload);
  });
}

// A plugin name as ferry_plugin_info requires: [A-Za-z0-9_]+.
consteval bool valid_name(const char* s) {
  if (*s == '\0') return false;
  for (; *s; ++s) {
    const char ch = *s;
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace detail

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
  if (api->abi_major != FERRY_ABI_MAJOR || api->struct_size < sizeof(ferry_host_api))
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
