// Part of <ferry/plugin.hpp>, which includes it once Error and Context are
// defined: how a registered function is called. The C entry points, the
// JSON argument array decoded into typed parameters, the result encoded, and
// every exception turned into an error reply at the C ABI boundary.
#ifndef FERRY_DETAIL_TYPED_HPP
#define FERRY_DETAIL_TYPED_HPP

#ifndef FERRY_PLUGIN_HPP
#error "include <ferry/plugin.hpp>, not <ferry/detail/typed.hpp>"
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/detail/traits.hpp"
#include "ferry/plugin.h"

namespace ferry::detail {

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

// ---- Arguments in, result out --------------------------------------------

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

// ---- The entry points registered with the host ---------------------------

template <class F>
int typed_entry(void* user, ferry_ctx* ctx, const std::uint8_t* in, std::size_t len) noexcept {
  const auto& b = *static_cast<const Bound<F>*>(user);
  Context c(b.api, ctx);
  return guarded(c, [&] { return call_typed(b, c, {reinterpret_cast<const char*>(in), len}); });
}

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

}  // namespace ferry::detail

#endif  // FERRY_DETAIL_TYPED_HPP
