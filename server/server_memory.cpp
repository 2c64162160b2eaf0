// Server: what connections hold while they are idle. The sweep that frees
// it also looks after half-closed connections and closes connections past
// handshake_timeout_ms or idle_timeout_ms (server_conn.cpp); it stays armed
// while connections are open and either is on. Buffers a busy
// connection emptied stay for its next frames and replies; a sweep frees
// those of connections that neither read nor sent since the sweep before.
// After many closes, or a sweep that freed much, malloc_trim gives the
// memory back to the system (glibc keeps it otherwise).
#include "server.hpp"

#include <malloc.h>

#include <algorithm>

#include "common/clock.hpp"
#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

namespace {
// How often buffers of connections gone quiet are freed.
constexpr std::int64_t kSweepMs = 1000;
// Closed connections after which freed memory goes back to the system,
// kTrimDelayMs after the one that reached the count (at least as many as
// stay open: steady churn of short clients does not trim all the time); a
// sweep trims when it freed this much. malloc_trim runs on the loop and walks
// every arena, so at most once per kTrimEveryMs.
constexpr std::size_t kTrimAfterReleases = 256;
constexpr std::int64_t kTrimDelayMs = 100;
constexpr std::int64_t kTrimEveryMs = 5000;
constexpr std::size_t kTrimAfterSweptBytes = 1u << 20;
}  // namespace

// What an idle connection would keep beyond its small state: an emptied
// input buffer (only where provided buffers read for it) or large output ones.
bool Server::holds_buffers(const Conn& c) const {
  return (buffers_ != nullptr && c.in_len == 0 && c.in.capacity() > 0) || c.out.capacity() > kKeepOutput ||
         c.sending.capacity() > kKeepOutput;
}

// Lists a connection whose buffers emptied for the sweep.
void Server::hold(Conn& c) {
  if (c.holding || !holds_buffers(c)) return;
  c.holding = true;
  holding_.push_back({c.slot, c.gen});
  arm_sweep();
}

void Server::arm_sweep() {
  if (sweep_armed_) return;
  sweep_armed_ = true;
  sweep_ts_ = loop::at_ms(clock_.now_ms() + kSweepMs);
  ring_.timeout_at(&sweep_ts_, pack(Tag{Op::sweep, 0, 0}));
}

void Server::on_sweep() {
  sweep_armed_ = false;
  std::size_t freed = 0;
  std::erase_if(holding_, [&](const std::pair<std::uint32_t, std::uint32_t>& h) {
    Conn* c = lookup(h.first, h.second);
    if (c == nullptr) return true;
    if (c->busy) {  // still at work: ask again next sweep
      c->busy = false;
      return false;
    }
    c->holding = false;
    freed += free_buffers(*c);
    return true;
  });
  if (freed >= kTrimAfterSweptBytes) trim();
  check_half_closed();
  check_timeouts();
  if (!holding_.empty() || !half_closed_.empty() || (open_conns_ > 0 && timeouts_on())) arm_sweep();
}

// Frees what no kernel operation reads or writes: an empty input buffer
// (provided buffers read for the connection) and output buffers when nothing
// is being sent. Returns the bytes freed.
std::size_t Server::free_buffers(Conn& c) {
  std::size_t freed = 0;
  if (buffers_ != nullptr && c.in_len == 0) {
    freed += c.in.capacity();
    std::vector<std::uint8_t>().swap(c.in);
  }
  if (!c.idle_output()) return freed;
  if (c.sending.capacity() > kKeepOutput) {
    freed += c.sending.capacity();
    std::string().swap(c.sending);
  }
  if (c.out.capacity() > kKeepOutput) {
    freed += c.out.capacity();
    std::string().swap(c.out);
  }
  return freed;
}

// Counts a released connection; after many, a trim follows shortly.
void Server::note_release() {
  ++released_since_trim_;
  if (released_since_trim_ < std::max(kTrimAfterReleases, open_conns_) || trim_armed_) return;
  trim_armed_ = true;
  const std::int64_t now = clock_.now_ms();
  trim_ts_ = loop::at_ms(last_trim_ms_ == 0 ? now + kTrimDelayMs : std::max(now + kTrimDelayMs, last_trim_ms_ + kTrimEveryMs));
  ring_.timeout_at(&trim_ts_, pack(Tag{Op::trim, 0, 0}));
}

void Server::on_trim() {
  trim_armed_ = false;
  if (!trim()) {  // a sweep trimmed meanwhile: this one comes when allowed
    trim_armed_ = true;
    trim_ts_ = loop::at_ms(last_trim_ms_ + kTrimEveryMs);
    ring_.timeout_at(&trim_ts_, pack(Tag{Op::trim, 0, 0}));
  }
}

// Gives freed memory back to the system, unless that was done less than
// kTrimEveryMs ago (false). With no connection open, the call tables' node
// pool (call_nodes_) is emptied first: no table uses it then.
bool Server::trim() {
  const std::int64_t now = clock_.now_ms();
  if (last_trim_ms_ != 0 && now < last_trim_ms_ + kTrimEveryMs) return false;
  last_trim_ms_ = now;
  released_since_trim_ = 0;
  if (open_conns_ == 0) call_nodes_.release();
  malloc_trim(0);
  return true;
}

}  // namespace ferry
