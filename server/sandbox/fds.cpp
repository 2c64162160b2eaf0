#include "sandbox/fds.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <string>

#include "sandbox/step.hpp"

namespace ferry::sandbox {
namespace {

// close_range(first, last); close() one by one where the kernel predates it.
Status close_fds(unsigned first, unsigned last) {
  if (first > last) return Status::Ok();
  if (::syscall(SYS_close_range, first, last, 0) == 0) return Status::Ok();
  if (errno != ENOSYS) return errno_fail("fds", "close_range");
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = first; fd <= static_cast<long>(last) && fd < max; ++fd)
    ::close(static_cast<int>(fd));
  return Status::Ok();
}

}  // namespace

Status null_stdin() {
  const int null = ::open("/dev/null", O_RDONLY);
  if (null < 0) return errno_fail("fds", "open /dev/null");
  if (null != 0 && ::dup2(null, 0) < 0) return errno_fail("fds", "dup2(/dev/null, 0)");
  if (null != 0) ::close(null);
  return Status::Ok();
}

Status close_other_fds(int keep_fd) {
  if (keep_fd >= 0 && keep_fd <= 2)
    return step_fail("fds",
                        "keep_fd " + std::to_string(keep_fd) + " is stdio");
  if (keep_fd < 0) return close_fds(3, UINT_MAX);
  FERRY_RETURN_IF_ERROR(close_fds(3, static_cast<unsigned>(keep_fd) - 1));
  return close_fds(static_cast<unsigned>(keep_fd) + 1, UINT_MAX);
}

}  // namespace ferry::sandbox
