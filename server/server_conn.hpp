// One client connection of Server, shared by server*.cpp and private to them.
// Loop thread only, like Server.
#pragma once

#include <linux/time_types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "loop/user_data.hpp"

namespace ferry {

// One client connection. Buffers stay put while the kernel owns them.
struct Conn {
  int fd = -1;
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;
  std::vector<std::uint8_t> in;
  std::size_t in_len = 0;
  std::string out;      // replies not yet handed to the kernel
  std::string sending;  // bytes of the send in flight
  std::size_t sent = 0;
  bool recv_armed = false;
  bool recv_paused = false;  // backpressure: too much output pending
  bool send_armed = false;
  bool hello = false;
  bool closing = false;  // read no more; close once replies are flushed
  bool dead = false;     // shut down; released when no operation is pending
  bool dirty = false;    // listed in Server::dirty_
  std::unordered_map<std::uint64_t, std::uint64_t> calls;  // unanswered: client id -> CallTable token

  std::uint64_t tag(loop::Op op) const { return loop::pack(loop::Tag{op, gen, slot}); }
  bool idle_output() const { return out.empty() && sending.empty(); }
};

}  // namespace ferry
