// The 64-bit io_uring user_data, packed and unpacked only here.
// Layout: op (8 bits) | generation (24 bits) | slot (32 bits).
#pragma once

#include <cstdint>

namespace ferry::loop {

enum class Op : std::uint8_t { accept = 1, recv, send, wake, signal, cancel, client, accept_retry, deadline, drain,
                               event_summary, trim, sweep };

struct Tag {
  Op op;
  std::uint32_t gen;   // low 24 bits used: tells a reused slot from its predecessor
  std::uint32_t slot;  // connection slot, or 0 when the op has no connection
};

inline std::uint64_t pack(Tag t) {
  return (std::uint64_t(t.op) << 56) | (std::uint64_t(t.gen & 0xffffffu) << 32) | t.slot;
}

inline Tag unpack(std::uint64_t v) {
  return Tag{Op(v >> 56), std::uint32_t((v >> 32) & 0xffffffu), std::uint32_t(v)};
}

}  // namespace ferry::loop
