// Server: connections and their buffers. Accepting, reading (into provided
// buffers the kernel picks when data arrives, or a connection's own growing
// buffer), one batched send per turn with short sends continued, and closing
// once nothing of the kernel's is pending.
#include "server.hpp"

#include <poll.h>
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
// A connection's own input buffer grows by this much at least.
constexpr std::size_t kRecvChunk = 64 * 1024;
}  // namespace

bool peer_gone(int fd) {
  pollfd p{fd, 0, 0};  // no events asked: only a hang-up or an error is reported
  const int n = poll(&p, 1, 0);
  return n < 0 || (n == 1 && (p.revents & (POLLHUP | POLLERR)) != 0);
}

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
    conns_.emplace_back();
    next_gen_.push_back(0);
  }
  conns_[slot] = std::make_unique<Conn>(&call_nodes_);
  Conn& c = *conns_[slot];
  c.fd = fd;
  c.slot = slot;
  c.gen = next_gen_[slot];
  c.peer = peer_of(fd);
  c.opened_ms = c.active_ms = clock_.now_ms();
  ++open_conns_;
  if (timeouts_on()) arm_sweep();
  return c;
}

// Reads into a provided buffer the kernel picks once data is there, so a
// connection waiting for its client holds none; but the rest of a frame
// larger than a provided buffer goes straight into the connection's own
// buffer. That grows (doubling) only as bytes arrive, so a header announcing
// a large frame costs nothing until its body is really sent. Paused while
// the client does not read.
void Server::arm_recv(Conn& c) {
  if (c.output_full()) {
    c.recv_paused = true;
    return;
  }
  c.recv_paused = false;
  c.recv_armed = true;
  if (buffers_ != nullptr && !large_frame_pending(c)) {
    return ring_.recv_select(c.fd, buffers_->size(), buffers_->group(), c.tag(Op::recv));
  }
  const std::size_t cap = proto::kHeaderSize + cfg_.max_frame_bytes + kRecvChunk;
  if (c.in.size() - c.in_len < kRecvChunk / 4) {
    c.in.resize(std::min(cap, std::max(c.in.size() * 2, c.in_len + kRecvChunk)));
  }
  ring_.recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, c.tag(Op::recv));
}

// Whether the rest of the frame begun in `in` is more than a provided buffer holds.
bool Server::large_frame_pending(const Conn& c) const {
  return c.in_len >= proto::kHeaderSize && rest_of_frame(c, {}) > buffers_->size();
}

// A read finished, into a provided buffer (given back here, whatever became
// of its connection: the kernel picked it once) or a connection's own.
void Server::on_recv(Conn* c, const io_uring_cqe& cqe) {
  if ((cqe.flags & IORING_CQE_F_BUFFER) == 0) {
    if (c != nullptr) on_read(*c, cqe.res, nullptr);
    return;
  }
  const auto id = std::uint16_t(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
  if (c != nullptr) on_read(*c, cqe.res, buffers_->bytes(id, 0).data());
  buffers_->give_back(id);
}

// `res` bytes arrived at `provided`, or (null) at the free end of c.in.
void Server::on_read(Conn& c, int res, const std::uint8_t* provided) {
  c.recv_armed = false;
  if (c.dead) return maybe_release(c);
  if (res == -ENOBUFS) {  // every provided buffer is taken: read again next turn
    starved_.push_back({c.slot, c.gen});
    return;
  }
  if (res == 0 && !peer_gone(c.fd)) return half_close(c);
  if (res <= 0) {  // peer closed or failed: nobody left to answer
    if (res < 0 && res != -ECONNRESET) spdlog::debug("recv: {}", std::strerror(-res));
    return close_connection(c);
  }
  c.busy = true;
  c.active_ms = clock_.now_ms();
  if (provided != nullptr) {
    take_input(c, {provided, std::size_t(res)});
  } else {
    c.in_len += std::size_t(res);
    consume_input(c, handle_frames(c, {c.in.data(), c.in_len}));
  }
  if (!c.closing) arm_recv(c);
}

// Bytes read into a provided buffer: whole frames are handled where they
// lie. Only the start of an unfinished frame is copied to the connection,
// and then only the bytes it lacks, up to its end.
void Server::take_input(Conn& c, std::span<const std::uint8_t> got) {
  if (c.in_len > 0) {
    const std::size_t n = std::min(got.size(), rest_of_frame(c, got));
    keep_input(c, got.first(n));
    got = got.subspan(n);
    consume_input(c, handle_frames(c, {c.in.data(), c.in_len}));
    if (c.closing || c.in_len > 0) return;  // got is empty unless failed
  }
  const std::size_t used = handle_frames(c, got);
  if (!c.closing) keep_input(c, got.subspan(used));
}

// How many bytes the frame begun in c.in lacks (as many as `got` has while
// its header is not whole).
std::size_t Server::rest_of_frame(const Conn& c, std::span<const std::uint8_t> got) const {
  if (c.in_len + got.size() < proto::kHeaderSize) return got.size();
  std::uint8_t length[4];  // the header's first field, the body's length (little-endian, as this host)
  for (std::size_t i = 0; i < sizeof length; ++i) length[i] = i < c.in_len ? c.in[i] : got[i - c.in_len];
  std::uint32_t body;
  std::memcpy(&body, length, sizeof body);
  return proto::kHeaderSize + body - c.in_len;
}

void Server::keep_input(Conn& c, std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  if (c.in.size() < c.in_len + bytes.size()) c.in.resize(c.in_len + bytes.size());
  std::memcpy(c.in.data() + c.in_len, bytes.data(), bytes.size());
  c.in_len += bytes.size();
}

// Drops the `used` bytes handled. An emptied buffer stays while the
// connection is busy (hold).
void Server::consume_input(Conn& c, std::size_t used) {
  std::memmove(c.in.data(), c.in.data() + used, c.in_len - used);
  c.in_len -= used;
  if (c.in_len == 0) hold(c);
}

// Reads again for connections whose read found every provided buffer
// taken: as many per turn as there are buffers, which are back by now.
void Server::rearm_starved() {
  const std::size_t n = std::min<std::size_t>(starved_.size(), buffers_->count());
  for (std::size_t i = 0; i < n; ++i) {
    Conn* c = lookup(starved_.front().first, starved_.front().second);
    starved_.pop_front();
    if (c != nullptr && !c->closing && !c->recv_armed) arm_recv(*c);
  }
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
  c.busy = true;
  c.active_ms = clock_.now_ms();
  if (c.out.empty()) hold(c);
  if (!c.out.empty()) queue_send(c);
  else if (c.closing && (!c.half_closed || c.calls.empty())) return close_connection(c);
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

// The client shut down its sending side but may still read (shutdown(SHUT_WR)
// after its last CALL): every call it sent is answered, then the connection
// closes. Whether it left altogether meanwhile is checked by the sweep (a
// Unix socket then hangs up): its calls are cancelled then, as for any
// client that leaves, or at once when a send to it fails.
void Server::half_close(Conn& c) {
  c.closing = true;
  c.half_closed = true;
  if (c.in_len > 0) {
    spdlog::debug("connection {}: the client shut down its sending side in the middle of a frame ({} bytes dropped)",
                  c.slot, c.in_len);
  }
  if (c.calls.empty() && c.idle_output()) return close_connection(c);
  spdlog::debug("connection {}: the client shut down its sending side; answering its {} calls, then closing",
                c.slot, c.calls.size());
  half_closed_.push_back({c.slot, c.gen});
  arm_sweep();
}

// Half-closed connections whose client has left altogether since: their
// calls are cancelled, as for any client that leaves. Each sweep (1 s).
void Server::check_half_closed() {
  std::erase_if(half_closed_, [&](const std::pair<std::uint32_t, std::uint32_t>& h) {
    Conn* c = lookup(h.first, h.second);
    if (c == nullptr) return true;
    if (!peer_gone(c->fd)) return false;
    close_connection(*c);
    return true;
  });
}

// Connections past their time: a HELLO not finished within
// handshake_timeout_ms (a client too slow, or one that sends its handshake a
// byte at a time to hold a slot) gets ERROR bad_request and is closed; and,
// when idle_timeout_ms is set, a connection with no call in flight that
// neither sent nor was sent anything for that long is closed. (A client that
// does not read its replies keeps output pending: it is not idle; that is
// the output bound's concern.) Each sweep (1 s).
void Server::check_timeouts() {
  if (!timeouts_on()) return;
  const std::int64_t now = clock_.now_ms();
  for (auto& slot : conns_) {
    if (!slot || slot->dead || slot->closing) continue;
    Conn& c = *slot;
    if (!c.hello && cfg_.handshake_timeout_ms != 0 && now - c.opened_ms >= cfg_.handshake_timeout_ms) {
      // An ERROR, then the close once it is sent (nothing else was sent yet: it fits).
      fail_connection(c, ProtocolError::handshake_timeout,
                      "no whole HELLO within handshake_timeout_ms (" + std::to_string(cfg_.handshake_timeout_ms) + " ms)");
    } else if (cfg_.idle_timeout_ms != 0 && c.calls.empty() && c.idle_output() &&
               now - c.active_ms >= cfg_.idle_timeout_ms) {
      spdlog::debug("connection {} closed: idle for idle_timeout_ms ({} ms)", c.slot, cfg_.idle_timeout_ms);
      close_connection(c);  // c is gone
    }
  }
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
  if (c.dirty) std::erase(dirty_, &c);
  const std::uint32_t slot = c.slot;
  next_gen_[slot] = (c.gen + 1) & 0xffffffu;
  conns_[slot].reset();  // c is gone
  free_slots_.push_back(slot);
  --open_conns_;
  note_release();
}

Conn* Server::lookup(std::uint32_t slot, std::uint32_t gen) {
  if (slot >= conns_.size() || !conns_[slot]) return nullptr;
  Conn* c = conns_[slot].get();
  return (c->gen == gen && !c->dead) ? c : nullptr;
}

}  // namespace ferry
