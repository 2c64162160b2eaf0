#include "sandbox/namespaces.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "sandbox/step.hpp"

namespace ferry::sandbox {
namespace {

constexpr char kHostname[] = "ferry-worker";

// Writes `text` to /proc/<pid>/<file> in one write(), as the kernel requires.
Status write_proc(int pid, const char* file, const std::string& text) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_fail("id maps", "open " + path);
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return errno_fail("id maps", "write " + path, err);
  return Status::Ok();
}

}  // namespace

std::uint64_t clone_flags(const Spec& spec) {
  if (!spec.enabled) return 0;
  std::uint64_t flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!spec.network) flags |= CLONE_NEWNET;
  return flags;
}

Status write_id_maps(int pid, std::uint32_t outside_uid, std::uint32_t outside_gid) {
  // Without CAP_SETGID over the parent namespace, the kernel accepts a
  // gid_map only once setgroups is denied. Root leaves it allowed so that
  // the worker can drop the supplementary groups it inherited.
  if (::geteuid() != 0) FERRY_RETURN_IF_ERROR(write_proc(pid, "setgroups", "deny"));
  FERRY_RETURN_IF_ERROR(write_proc(pid, "uid_map", "0 " + std::to_string(outside_uid) + " 1\n"));
  FERRY_RETURN_IF_ERROR(write_proc(pid, "gid_map", "0 " + std::to_string(outside_gid) + " 1\n"));
  return Status::Ok();
}

bool in_user_namespace() {
  // The initial namespace maps every id onto itself: "0 0 4294967295".
  std::FILE* f = std::fopen("/proc/self/uid_map", "re");
  if (f == nullptr) return false;
  unsigned long inside = 0, outside = 0, count = 0;
  const int n = std::fscanf(f, "%lu %lu %lu", &inside, &outside, &count);
  std::fclose(f);
  return !(n == 3 && inside == 0 && outside == 0 && count == 4294967295UL);
}

Status become_namespace_root() {
  // EINVAL: 0 is not mapped, i.e. the host has not written the id maps.
  const char* hint = " (are uid_map/gid_map written?)";
  if (::setresgid(0, 0, 0) != 0)
    return errno_fail("user namespace",
                      std::string("setresgid(0)") + (errno == EINVAL ? hint : ""));
  if (::setresuid(0, 0, 0) != 0)
    return errno_fail("user namespace",
                      std::string("setresuid(0)") + (errno == EINVAL ? hint : ""));
  // EPERM: setgroups is denied in this namespace (the host was not root).
  if (::setgroups(0, nullptr) != 0 && errno != EPERM)
    return errno_fail("user namespace", "setgroups(0)");
  return Status::Ok();
}

Status make_mounts_private() {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return errno_fail("mounts", "mount / MS_REC|MS_PRIVATE");
  return Status::Ok();
}

Status set_hostname() {
  if (::sethostname(kHostname, sizeof kHostname - 1) != 0)
    return errno_fail("hostname", "sethostname");
  return Status::Ok();
}

Status drop_capabilities() {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    return errno_fail("capabilities", "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return errno_fail("capabilities", "capset(none)");
  return Status::Ok();
}

}  // namespace ferry::sandbox
