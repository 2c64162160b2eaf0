#include "sandbox/rlimits.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <string>

#include "sandbox/step.hpp"

namespace ferry::sandbox {
namespace {

struct Limit {
  int resource;
  const char* name;
  rlim_t value;  // RLIM_INFINITY: as high as the inherited hard limit
};

// soft = hard = min(value, inherited hard).
Status set_limit(const Limit& limit) {
  const std::string step = std::string("rlimit ") + limit.name;
  rlimit current{};
  if (::getrlimit(limit.resource, &current) != 0) return errno_fail(step, "getrlimit");
  const rlim_t value = std::min(limit.value, current.rlim_max);
  const rlimit wanted{value, value};
  if (::setrlimit(limit.resource, &wanted) != 0)
    return errno_fail(step, "setrlimit(" + std::to_string(value) + ")");
  return Status::Ok();
}

rlim_t or_infinity(std::uint64_t value, std::uint64_t unit) {
  if (value == 0 || value > RLIM_INFINITY / unit) return RLIM_INFINITY;
  return static_cast<rlim_t>(value * unit);
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// ASan and TSan reserve terabytes of shadow address space at start-up: under
// them every later mapping would pass any address-space limit. Sanitizer
// builds only.
constexpr std::uint64_t kAddressSpaceUnit = 0;
#else
constexpr std::uint64_t kAddressSpaceUnit = 1024 * 1024;
#endif

Status apply_rlimits(const Spec& spec) {
  const Limit limits[] = {
      {RLIMIT_AS, "RLIMIT_AS", or_infinity(kAddressSpaceUnit == 0 ? 0 : spec.memory_mb, kAddressSpaceUnit)},
      {RLIMIT_CPU, "RLIMIT_CPU", or_infinity(spec.cpu_seconds, 1)},
      {RLIMIT_NOFILE, "RLIMIT_NOFILE", or_infinity(spec.max_files, 1)},
      {RLIMIT_NPROC, "RLIMIT_NPROC", or_infinity(spec.max_procs, 1)},
      {RLIMIT_CORE, "RLIMIT_CORE", 0},
  };
  for (const Limit& limit : limits) FERRY_RETURN_IF_ERROR(set_limit(limit));
  return Status::Ok();
}

}  // namespace ferry::sandbox
