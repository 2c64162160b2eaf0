#include "common/status.hpp"

#include <cstring>

namespace ferry {

Status Status::Errno(std::string_view what, int err) {
  return Error(std::string(what) + ": " + std::strerror(err));
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  return {code_, std::string(context) + ": " + message_};
}

}  // namespace ferry
