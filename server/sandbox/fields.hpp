// The fields of a sandbox::Spec, one row each: the keys of
// [plugins.NAME.sandbox] in server.toml and of the worker spec's JSON. The
// config parser and the spec codec both walk this table, so a field is
// added in one place.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// Exactly one of flag, number, paths is set.
struct SpecField {
  std::string_view key;
  bool Spec::*flag = nullptr;                       // true or false
  std::uint64_t Spec::*number = nullptr;            // an integer in [min, max]
  std::vector<std::string> Spec::*paths = nullptr;  // absolute paths
  std::uint64_t min = 0, max = 0;
};

inline constexpr SpecField kSpecFields[] = {
    {.key = "enabled", .flag = &Spec::enabled},
    {.key = "network", .flag = &Spec::network},
    {.key = "read_paths", .paths = &Spec::read_paths},
    {.key = "write_paths", .paths = &Spec::write_paths},
    {.key = "memory_mb", .number = &Spec::memory_mb, .min = 0, .max = 1048576},
    {.key = "cpu_seconds", .number = &Spec::cpu_seconds, .min = 0, .max = 1000000},
    {.key = "max_files", .number = &Spec::max_files, .min = 16, .max = 1048576},
    {.key = "max_procs", .number = &Spec::max_procs, .min = 1, .max = 100000},
    {.key = "seccomp", .flag = &Spec::seccomp},
    {.key = "allow_weaker", .flag = &Spec::allow_weaker},
};

}  // namespace ferry::sandbox
