#include "sandbox/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/step.hpp"

// Debian 12's <linux/landlock.h> stops at ABI 2.
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)  // ABI 4
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

namespace ferry::sandbox {
namespace {

// struct landlock_ruleset_attr as of ABI 6; older kernels accept it as long
// as the fields they do not know are zero.
struct RulesetAttr {
  std::uint64_t handled_access_fs = 0;
  std::uint64_t handled_access_net = 0;
  std::uint64_t scoped = 0;
};

constexpr std::uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr std::uint64_t kReadExec = kRead | LANDLOCK_ACCESS_FS_EXECUTE;
constexpr std::uint64_t kReadWrite =
    kRead | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER;
constexpr std::uint64_t kDevice =
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;
// The only rights a rule on a file (not a directory) may carry.
constexpr std::uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                      LANDLOCK_ACCESS_FS_IOCTL_DEV;

struct PathRule {
  std::string path;
  std::uint64_t access;
  bool optional;  // a system path this machine may not have
};

// What the dynamic loader, glibc and libstdc++ read after the plugin is loaded
// (more libraries, locales, time zones, the CPU count).
const PathRule kSystemRules[] = {
    {"/usr", kReadExec, true},
    {"/lib", kReadExec, true},
    {"/lib64", kReadExec, true},
    {"/bin", kReadExec, true},
    {"/etc/ld.so.cache", kReadExec, true},
    {"/etc/ld.so.preload", kRead, true},
    {"/etc/localtime", kRead, true},
    {"/sys/devices/system/cpu", kRead, true},
    {"/dev/null", kDevice, true},
    {"/dev/zero", kDevice, true},
    {"/dev/full", kDevice, true},
    {"/dev/random", LANDLOCK_ACCESS_FS_READ_FILE, true},
    {"/dev/urandom", LANDLOCK_ACCESS_FS_READ_FILE, true},
};

// Name resolution and TLS certificates, for plugins allowed the network.
const PathRule kNetworkRules[] = {
    {"/etc/resolv.conf", kRead, true},   {"/etc/hosts", kRead, true},
    {"/etc/nsswitch.conf", kRead, true}, {"/etc/gai.conf", kRead, true},
    {"/etc/services", kRead, true},      {"/etc/protocols", kRead, true},
    {"/etc/ssl", kRead, true},           {"/etc/ca-certificates", kRead, true},
};

std::uint64_t fs_rights(int abi) {
  std::uint64_t rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: EXECUTE..MAKE_SYM
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return rights;
}

RulesetAttr ruleset_for(int abi, bool network) {
  RulesetAttr attr;
  attr.handled_access_fs = fs_rights(abi);
  if (abi >= 4 && !network)
    attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  if (abi >= 6) attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
  return attr;
}

// What this ABI leaves unrestricted, for the notes.
void note_gaps(int abi, bool network, Notes* skipped) {
  if (skipped == nullptr) return;
  const std::string prefix = "landlock ABI " + std::to_string(abi) + ": ";
  if (abi < 3) skipped->push_back(prefix + "truncate() not restricted (needs ABI 3)");
  if (abi < 4 && !network)
    skipped->push_back(prefix + "TCP bind/connect not restricted (needs ABI 4)");
  if (abi < 5) skipped->push_back(prefix + "device ioctls not restricted (needs ABI 5)");
  if (abi < 6) skipped->push_back(prefix + "signals and abstract sockets not scoped (needs ABI 6)");
}

Status add_rule(int ruleset, const PathRule& rule, std::uint64_t handled) {
  const int fd = ::open(rule.path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0 && rule.optional && errno == ENOENT) return Status::Ok();
  if (fd < 0) return errno_fail("landlock", "open " + rule.path);
  struct stat st {};
  std::uint64_t access = rule.access & handled;
  if (::fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) access &= kFileRights;
  landlock_path_beneath_attr attr{access, fd};
  const long rc =
      access == 0 ? 0
                  : ::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &attr, 0);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return errno_fail("landlock", "landlock_add_rule " + rule.path, err);
  return Status::Ok();
}

std::vector<PathRule> rules_for(const Spec& spec, const std::string& plugin_path) {
  std::vector<PathRule> rules(std::begin(kSystemRules), std::end(kSystemRules));
  if (spec.network) rules.insert(rules.end(), std::begin(kNetworkRules), std::end(kNetworkRules));
  if (!plugin_path.empty()) rules.push_back({plugin_path, kReadExec, false});
  for (const std::string& p : spec.read_paths) rules.push_back({p, kReadExec, false});
  for (const std::string& p : spec.write_paths) rules.push_back({p, kReadWrite, false});
  return rules;
}

Status restrict_self(int ruleset) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return errno_fail("landlock", "prctl(PR_SET_NO_NEW_PRIVS)");
  if (::syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
    return errno_fail("landlock", "landlock_restrict_self");
  return Status::Ok();
}

Status build_and_restrict(int ruleset, const Spec& spec, const std::string& plugin_path,
                          std::uint64_t handled) {
  for (const PathRule& rule : rules_for(spec, plugin_path))
    FERRY_RETURN_IF_ERROR(add_rule(ruleset, rule, handled));
  return restrict_self(ruleset);
}

}  // namespace

int landlock_abi() {
  const long abi =
      ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? -errno : static_cast<int>(abi);
}

Status apply_landlock(const Spec& spec, const std::string& plugin_path, Notes* skipped) {
  const int abi = landlock_abi();
  if (abi < 0)
    return lacking(spec, skipped, "landlock",
                   std::string("landlock_create_ruleset: ") + std::strerror(-abi));
  note_gaps(abi, spec.network, skipped);
  const RulesetAttr attr = ruleset_for(abi, spec.network);
  const long ruleset = ::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (ruleset < 0) return errno_fail("landlock", "landlock_create_ruleset");
  const Status status =
      build_and_restrict(static_cast<int>(ruleset), spec, plugin_path, attr.handled_access_fs);
  ::close(static_cast<int>(ruleset));
  return status;
}

}  // namespace ferry::sandbox
