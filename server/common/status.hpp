// The outcome of a fallible server function: OK, or a ferry_code (the codes
// of the wire, docs/protocol.md §6) with a message. OK is cheap: no
// allocation. Result<T> is a T or a failed Status. Plain values: not
// thread-safe to share while one side mutates them.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "ferry/errors.h"

namespace ferry {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ferry_code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }
  // A failure of the system rather than of the request: FERRY_E_INTERNAL.
  static Status Error(std::string message) { return {FERRY_E_INTERNAL, std::move(message)}; }
  // FERRY_E_INTERNAL with "what: strerror(err)".
  static Status Errno(std::string_view what, int err = errno);

  bool ok() const { return code_ == FERRY_OK; }
  ferry_code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "context: message"; an OK status stays OK.
  Status with_context(std::string_view context) const;

 private:
  ferry_code code_ = FERRY_OK;
  std::string message_;
};

// A value, or why there is none. value() on a failed Result is a bug.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit, like a return value
  // From a failure. An OK status carries no value: that is a bug of the
  // caller, kept visible as internal rather than as an empty Result.
  Result(Status failed)  // NOLINT: implicit, like a return value
      : v_(failed.ok() ? Status::Error("Result built from an OK Status") : std::move(failed)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when there is a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace ferry

// Returns the Status of `expr` from the enclosing function when it failed.
#define FERRY_RETURN_IF_ERROR(expr)                     \
  do {                                                  \
    if (::ferry::Status ferry_s_ = (expr); !ferry_s_.ok()) \
      return ferry_s_;                                  \
  } while (0)
