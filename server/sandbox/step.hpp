// Helpers shared by the sandbox steps: a failed Status carrying errno text,
// the allow_weaker rule, and the macro that makes a step list flat.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// A failed step: "step: message".
inline Status step_fail(const std::string& step, const std::string& message) {
  return Status::Error(step + ": " + message);
}

// A failed step: "step: what: <strerror(err)>".
inline Status errno_fail(const std::string& step, const std::string& what, int err = errno) {
  return step_fail(step, what + ": " + std::strerror(err));
}

// The kernel lacks a feature: a failure, unless spec.allow_weaker, in which
// case the step is skipped and `skipped` says so.
inline Status lacking(const Spec& spec, Notes* skipped, const std::string& step,
                      const std::string& why) {
  if (!spec.allow_weaker) return step_fail(step, why + " (allow_weaker = false)");
  if (skipped != nullptr) skipped->push_back(step + " skipped: " + why);
  return Status::Ok();
}

}  // namespace ferry::sandbox
