// Server: connections and their buffers. Accepting, reading with a growing
// input buffer, one batched send per turn with short sends continued, and
// closing once nothing of the kernel's is pending.
#include "server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

namespace {
constexpr std::size_t kRecvChunk = 64 * 1024;
}  // namespace

void Server::on_accept(int res, bool more) {
  if (!more && !draining_) {
    if (res == -EMFILE || res == -ENFILE) {  // out of fds: retry later, do not spin
      accept_retry_at_ = loop::at_ms(clock_.now_ms() + 100);
      ring_.timeout_at(&accept_retry_at_, pack(Tag{Op::accept_retry, 0, 0}));
    } else {
      ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
    }
  }
  if (res < 0) {
    if (res != -ECANCELED) spdlog::warn("accept: {}", std::strerror(-res));
    return;
  }
  if (draining_ || open_conns_ >= cfg_.max_connections) {
    return refuse(res, draining_ ? ConnRefusal::shutting_down : ConnRefusal::max_connections);
  }
  Conn& c = open_conn(res);
  spdlog::debug("connection {} opened (pid {}, uid {})", c.slot, c.peer.pid, c.peer.uid);
  arm_recv(c);
}

// Puts an accepted socket in a free slot (a released one first).
Conn& Server::open_conn(int fd) {
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = std::uint32_t(conns_.size());
    conns_.push_back(std::make_unique<Conn>());
  }
  Conn& c = *conns_[slot];
  c.fd = fd;
  c.slot = slot;
  c.peer = peer_of(fd);
  c.in.resize(kRecvChunk);
  ++open_conns_;
  return c;
}

// Reads into the free end of the input buffer. The buffer grows (doubling)
// only as bytes arrive, so a header announcing a large frame costs nothing
// until its body is really sent. Paused while the client does not read.
void Server::arm_recv(Conn& c) {
  if (c.output_full()) {
    c.recv_paused = true;
    return;
  }
  c.recv_paused = false;
  const std::size_t cap = proto::kHeaderSize + cfg_.max_frame_bytes + kRecvChunk;
  if (c.in.size() - c.in_len < kRecvChunk / 4) {
    c.in.resize(std::min(cap, std::max(c.in.size() * 2, c.in_len + kRecvChunk)));
  }
  ring_.recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, c.tag(Op::recv));
  c.recv_armed = true;
}

void Server::on_recv(Conn& c, int res) {
  c.recv_armed = false;
  if (c.dead) return maybe_release(c);
  if (res <= 0) {  // peer closed or failed: nobody left to answer
    if (res < 0 && res != -ECONNRESET) spdlog::debug("recv: {}", std::strerror(-res));
    return close_connection(c);
  }
  c.in_len += std::size_t(res);
  if (handle_frames(c) && !c.closing) arm_recv(c);
}

void Server::queue_send(Conn& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(&c);
}

// One send per connection per loop turn, carrying every reply queued so far.
void Server::flush_sends() {
  for (Conn* c : dirty_) {
    c->dirty = false;
    if (c->dead || c->send_armed || c->out.empty()) continue;
    c->sending.swap(c->out);
    c->out.clear();
    c->sent = 0;
    ring_.send(c->fd, c->sending.data(), c->sending.size(), c->tag(Op::send));
    c->send_armed = true;
  }
  dirty_.clear();
}

void Server::on_send(Conn& c, int res) {
  c.send_armed = false;
  if (c.dead) return maybe_release(c);
  if (res < 0) return close_connection(c);  // peer gone: its replies have no reader
  c.sent += std::size_t(res);
  if (c.sent < c.sending.size()) {  // short send: continue where the kernel stopped
    ring_.send(c.fd, c.sending.data() + c.sent, c.sending.size() - c.sent, c.tag(Op::send));
    c.send_armed = true;
    if (!c.held.empty() && !c.output_full()) give_back_credit(c);
    return;
  }
  c.sending.clear();
  c.sent = 0;
  if (!c.out.empty()) queue_send(c);
  else if (c.closing) return close_connection(c);
  if (!c.held.empty() && !c.output_full()) give_back_credit(c);
  if (c.recv_paused && !c.recv_armed && !c.closing) arm_recv(c);
}

// A partial result of a call still waiting for its reply joins the output
// (before that reply, which comes through the same output later); one of a
// call already answered (deadline, CANCEL, client gone) is dropped. Its
// credit goes back at once while the output is under its bound, else when
// it drains (on_send): so neither a call nor a connection that does not
// read can make ferryd buffer more than a window of partials per call.
void Server::deliver_partial(Completion& d) {
  const std::size_t size = d.data.size();
  const CallTable::Entry* e = calls_.find(d.ref.token);
  Conn* c = e != nullptr && !e->answered ? lookup(d.ref.slot, d.ref.gen) : nullptr;
  if (c == nullptr) return d.partial->give_back(1, size);
  proto::encode_partial(c->out, d.ref.call_id, d.data);
  queue_send(*c);
  if (!c->output_full()) return d.partial->give_back(1, size);
  if (!c->held.empty() && c->held.back().to == d.partial) {
    c->held.back().count += 1;
    c->held.back().bytes += size;
    return;
  }
  c->held.push_back(HeldCredit{std::move(d.partial), 1, size});
}

void Server::give_back_credit(Conn& c) {
  auto held = std::move(c.held);
  c.held.clear();
  for (HeldCredit& h : held) h.to->give_back(h.count, h.bytes);
}

// Sends a connection-level ERROR, then closes once it is flushed.
void Server::fail_connection(Conn& c, ProtocolError kind, const std::string& why) {
  note_protocol_error(c, kind, why);
  const ferry_code code = kind == ProtocolError::unsupported_version ? FERRY_E_UNSUPPORTED_VERSION : FERRY_E_BAD_REQUEST;
  proto::encode_error(c.out, 0, code, why);
  c.closing = true;
  queue_send(c);
}

void Server::close_connection(Conn& c) {
  if (c.dead) return;
  c.dead = true;
  c.closing = true;
  // Nobody is left to answer (lookup() skips a dead connection): its calls
  // are only cancelled, and queued ones never run.
  auto calls = std::move(c.calls);
  c.calls.clear();
  for (const auto& [id, token] : calls) {
    if (CallTable::Entry* e = calls_.find(token)) abandon(token, *e, FERRY_E_CANCELLED, {});
  }
  give_back_credit(c);  // their calls are cancelled: nobody waits for this output any more
  shutdown(c.fd, SHUT_RDWR);  // completes any pending recv/send
  maybe_release(c);
}

void Server::maybe_release(Conn& c) {
  if (!c.dead || c.recv_armed || c.send_armed) return;
  close(c.fd);
  spdlog::debug("connection {} closed", c.slot);
  const std::uint32_t slot = c.slot;
  const std::uint32_t gen = (c.gen + 1) & 0xffffffu;
  c = Conn{};
  c.slot = slot;
  c.gen = gen;
  free_slots_.push_back(slot);
  --open_conns_;
}

Conn* Server::lookup(std::uint32_t slot, std::uint32_t gen) {
  if (slot >= conns_.size() || !conns_[slot]) return nullptr;
  Conn* c = conns_[slot].get();
  return (c->gen == gen && !c->dead) ? c : nullptr;
}

}  // namespace ferry
