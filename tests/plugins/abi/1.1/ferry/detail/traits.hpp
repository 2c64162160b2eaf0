// Part of <ferry/plugin.hpp>: what plugin.def and plugin.raw accept. The
// signature of a callable, and the compile-time checks that refuse
// asynchronous functions with one clear error. Compile-time only.
#ifndef FERRY_DETAIL_TRAITS_HPP
#define FERRY_DETAIL_TRAITS_HPP

#include <future>
#include <string_view>
#include <type_traits>

namespace ferry {

class Context;

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

// The two shapes of a raw function.
template <class F>
inline constexpr bool raw_with_context = std::is_invocable_v<const F&, Context&, std::string_view>;
template <class F>
inline constexpr bool raw_plain = std::is_invocable_v<const F&, std::string_view>;

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
}  // namespace ferry

#endif  // FERRY_DETAIL_TRAITS_HPP
