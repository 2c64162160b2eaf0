// Asynchronous result types for the compile checks (sdk_rejects_*). Each is
// complete and usable: sync_ok.cpp uses them all, so a rejects_* file can
// only fail on the SDK's static_assert.
#ifndef FERRY_TESTS_SDK_ASYNC_TYPES_HPP
#define FERRY_TESTS_SDK_ASYNC_TYPES_HPP

#include <coroutine>
#include <future>

// A coroutine type: it has a promise_type.
struct Task {
  struct promise_type {
    int value = 0;
    Task get_return_object() { return Task{}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_value(int v) { value = v; }
    void unhandled_exception() {}
  };
};

inline Task twice_coroutine(int x) { co_return 2 * x; }

// An awaitable: await_ready/await_suspend/await_resume members.
struct Ready {
  int value;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  int await_resume() const noexcept { return value; }
};

// Awaitable only through a free operator co_await.
struct Deferred {
  int value;
};
inline Ready operator co_await(Deferred d) { return Ready{d.value}; }

inline Task await_both(int x) { co_return co_await Ready{x} + co_await Deferred{x}; }

#endif
