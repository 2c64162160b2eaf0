// One client connection of Server, shared by server*.cpp and private to them.
// Loop thread only, like Server.
#pragma once

#include <linux/time_types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <vector>

#include "conn_events.hpp"
#include "loop/completion.hpp"
#include "loop/user_data.hpp"

namespace ferry {

// A client that sends faster than it reads is not read from while this much
// of its output is waiting to be sent, and partial results of its calls get
// their credit back only once the output is under it again.
inline constexpr std::size_t kMaxPendingOutput = 8u << 20;

// The provided receive buffers all connections share (Server::buffers_):
// 4 MiB in all, resident once used.
inline constexpr unsigned kRecvBuffers = 128;
inline constexpr std::uint32_t kRecvBufferSize = 32 * 1024;

// Output buffers a connection keeps once all is sent, even while idle.
inline constexpr std::size_t kKeepOutput = 1024;

// Credit of partial results taken into a connection's output while it was
// over kMaxPendingOutput: given back when the output drains under it.
struct HeldCredit {
  std::shared_ptr<PartialCredit> to;
  std::size_t count = 0;
  std::size_t bytes = 0;
};

// Whether the other end of a connected Unix socket is closed altogether, not
// only its sending side (shutdown(SHUT_WR)): the socket then hangs up.
bool peer_gone(int fd);

// One client connection. Buffers stay put while the kernel owns them. Idle,
// it holds little: with provided buffers (Server::buffers_) `in` holds only
// the start of an unfinished frame, and emptied buffers (but output ones up
// to kKeepOutput) are freed by the first sweep after it went quiet.
struct Conn {
  explicit Conn(std::pmr::memory_resource* call_nodes) : calls(call_nodes) {}
  int fd = -1;
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;
  Peer peer;  // the client process, as the kernel saw it connect
  std::vector<std::uint8_t> in;  // bytes read but not handled: in[0, in_len)
  std::size_t in_len = 0;
  std::string out;      // replies not yet handed to the kernel
  std::string sending;  // bytes of the send in flight
  std::size_t sent = 0;
  bool recv_armed = false;
  bool recv_paused = false;  // backpressure: too much output pending
  bool send_armed = false;
  bool hello = false;
  std::uint16_t minor = 0;  // the protocol minor of the client's HELLO
  bool closing = false;  // read no more; close once replies are flushed
  // The client shut down its sending side (half-close) and still reads: with
  // `closing`, the connection closes once every call is answered and flushed.
  bool half_closed = false;
  std::int64_t opened_ms = 0;  // accepted (Clock::now_ms), for handshake_timeout_ms
  std::int64_t active_ms = 0;  // the client last sent something or got its last reply, for idle_timeout_ms
  bool dead = false;     // shut down; released when no operation is pending
  bool dirty = false;    // listed in Server::dirty_
  bool holding = false;  // listed in Server::holding_: emptied buffers to free once quiet
  bool busy = false;     // read or sent since the last sweep
  // Unanswered calls: client id -> CallTable token. Its nodes come from the
  // server's pool (Server::call_nodes_), not malloc, once per call.
  std::pmr::unordered_map<std::uint64_t, std::uint64_t> calls;
  std::vector<HeldCredit> held;  // partials' credit, while the output is over its bound

  std::uint64_t tag(loop::Op op) const { return loop::pack(loop::Tag{op, gen, slot}); }
  bool idle_output() const { return out.empty() && sending.empty(); }
  bool output_full() const { return out.size() + sending.size() - sent > kMaxPendingOutput; }
};

}  // namespace ferry
