#include "server.hpp"

#include "common/clock.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

namespace {
constexpr std::size_t kRecvChunk = 64 * 1024;
// A client that sends faster than it reads is not read from while this much
// of its replies is waiting to be sent.
constexpr std::size_t kMaxPendingOutput = 8u << 20;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

__kernel_timespec at_ms(std::int64_t ms) { return __kernel_timespec{ms / 1000, (ms % 1000) * 1000000}; }
}  // namespace

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

  std::uint64_t tag(Op op) const { return pack(Tag{op, gen, slot}); }
  bool idle_output() const { return out.empty() && sending.empty(); }
};

// A decoded frame handed from handle_frames to handle_frame.
struct FrameView {
  proto::Type type;
  std::uint64_t id;
  std::span<const std::uint8_t> body;
};

Server::Server(const config::ServerConfig& cfg, loop::Reactor& reactor, Router& router,
               loop::CompletionQueue& completions)
    : cfg_(cfg), router_(router), completions_(completions), reactor_(reactor), ring_(reactor.ring()) {
  conns_.emplace_back();  // slot 0 is never a connection
}

Server::~Server() {
  for (auto& c : conns_) {
    if (c && c->fd >= 0) close(c->fd);
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  if (signal_fd_ >= 0) close(signal_fd_);
}

std::string Server::start() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return errno_text("signalfd");
  if (std::string err = listen_socket(); !err.empty()) return err;
  ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
  ring_.poll_multishot(completions_.fd(), pack(Tag{Op::wake, 0, 0}));
  ring_.poll_multishot(signal_fd_, pack(Tag{Op::signal, 0, 0}));
  spdlog::info("listening on {} (io_uring: {})", cfg_.socket_path.string(), ring_.mode());
  return {};
}

// Binds the Unix socket, replacing a stale socket file but never a live server.
std::string Server::listen_socket() {
  const std::string path = cfg_.socket_path.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return "socket_path is too long: " + path;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return errno_text("socket");
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket";
    if (connect(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return "another server is already listening on " + path;
    }
    unlink(path.c_str());  // stale socket file of a server that is gone
  }
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_text(("bind " + path).c_str());
  }
  if (chmod(path.c_str(), cfg_.socket_mode) != 0) return errno_text("chmod");
  if (listen(listen_fd_, 1024) != 0) return errno_text("listen");
  return {};
}

void Server::run(int ready_fd) {
  if (ready_fd >= 0) {
    [[maybe_unused]] ssize_t n = write(ready_fd, "ready\n", 6);
    close(ready_fd);
  }
  while (!(draining_ && drained())) {
    flush_sends();
    const int rc = ring_.submit_and_wait();
    if (rc < 0 && rc != -EINTR && rc != -ETIME) {
      spdlog::critical("io_uring_submit_and_wait: {}", std::strerror(-rc));
      break;
    }
    ring_.for_each_completion([this](const io_uring_cqe& cqe) { on_completion(cqe); });
    completions_.drain(&done_);  // pick up finished calls without waiting for a wake-up
    deliver(done_);
  }
  for (auto& c : conns_) {
    if (c && c->fd >= 0) close_connection(*c);
  }
  spdlog::info("event loop stopped");
}

void Server::on_completion(const io_uring_cqe& cqe) {
  const Tag t = loop::unpack(cqe.user_data);
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  switch (t.op) {
    case Op::accept: return on_accept(cqe.res, more);
    case Op::wake:
      if (!more) ring_.poll_multishot(completions_.fd(), pack(Tag{Op::wake, 0, 0}));  // the kernel ended it
      return on_wake();
    case Op::signal:
      if (!more) ring_.poll_multishot(signal_fd_, pack(Tag{Op::signal, 0, 0}));
      return on_signal();
    case Op::cancel: return;
    case Op::deadline: return on_deadline();
    case Op::drain: return on_drain_timeout();
    case Op::accept_retry:
      if (!draining_) ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
      return;
    case Op::client: return reactor_.dispatch(t, cqe);
    case Op::recv:
    case Op::send: break;
  }
  Conn* c = t.slot < conns_.size() ? conns_[t.slot].get() : nullptr;
  if (c == nullptr || c->gen != t.gen) return;
  if (t.op == Op::recv) on_recv(*c, cqe.res);
  else on_send(*c, cqe.res);
}

void Server::on_accept(int res, bool more) {
  if (!more && !draining_) {
    if (res == -EMFILE || res == -ENFILE) {  // out of fds: retry later, do not spin
      accept_retry_at_ = at_ms(monotonic_ms() + 100);
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
    spdlog::warn("connection refused: {}", draining_ ? "shutting down" : "max_connections reached");
    close(res);
    return;
  }
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = std::uint32_t(conns_.size());
    conns_.push_back(std::make_unique<Conn>());
  }
  Conn& c = *conns_[slot];
  c.fd = res;
  c.slot = slot;
  c.in.resize(kRecvChunk);
  ++open_conns_;
  spdlog::debug("connection {} opened", slot);
  arm_recv(c);
}

// Reads into the free end of the input buffer. The buffer grows (doubling)
// only as bytes arrive, so a header announcing a large frame costs nothing
// until its body is really sent. Paused while the client does not read.
void Server::arm_recv(Conn& c) {
  if (c.out.size() + c.sending.size() > kMaxPendingOutput) {
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

// Handles every whole frame in the buffer; false once the connection is failed.
bool Server::handle_frames(Conn& c) {
  std::size_t pos = 0;
  while (!c.closing) {
    proto::Frame f;
    std::size_t used = 0;
    std::string why;
    const auto avail = std::span<const std::uint8_t>(c.in.data() + pos, c.in_len - pos);
    const proto::Parse p = proto::parse_frame(avail, cfg_.max_frame_bytes, &f, &used, &why);
    if (p == proto::Parse::need_more) break;
    if (p != proto::Parse::ok) {
      fail_connection(c, FERRY_E_BAD_REQUEST, why);
      return false;
    }
    if (!handle_frame(c, FrameView{f.header.type, f.header.call_id, f.body})) return false;
    pos += used;
  }
  std::memmove(c.in.data(), c.in.data() + pos, c.in_len - pos);
  c.in_len -= pos;
  return !c.closing;
}

bool Server::handle_frame(Conn& c, const FrameView& f) {
  if (!c.hello) {
    proto::Hello h;
    std::string why;
    if (f.type != proto::Type::hello) return fail_connection(c, FERRY_E_BAD_REQUEST, "expected HELLO first"), false;
    if (!proto::decode_hello(f.body, &h, &why)) return fail_connection(c, FERRY_E_BAD_REQUEST, why), false;
    if (f.id != 0) return fail_connection(c, FERRY_E_BAD_REQUEST, "HELLO must have call id 0"), false;
    if (h.major != proto::kVersionMajor) {
      fail_connection(c, FERRY_E_UNSUPPORTED_VERSION,
                      "protocol " + std::to_string(h.major) + "." + std::to_string(h.minor) +
                          " is not supported; this server speaks 1." +
                          std::to_string(proto::kVersionMinor));
      return false;
    }
    proto::encode_hello(c.out, proto::Hello{proto::kVersionMajor, proto::kVersionMinor,
                                            cfg_.max_frame_bytes});
    c.hello = true;
    queue_send(c);
    return true;
  }
  switch (f.type) {
    case proto::Type::call: return handle_call(c, f.id, f.body);
    case proto::Type::cancel: return handle_cancel(c, f.id), true;
    case proto::Type::ping:
      proto::encode_pong(c.out, f.id, {reinterpret_cast<const char*>(f.body.data()), f.body.size()});
      queue_send(c);
      return true;
    default:
      fail_connection(c, FERRY_E_BAD_REQUEST,
                      "unexpected frame type " + std::to_string(int(f.type)) + " from a client");
      return false;
  }
}

bool Server::handle_call(Conn& c, std::uint64_t id, std::span<const std::uint8_t> body) {
  proto::Call call;
  std::string why;
  if (!proto::decode_call(body, &call, &why)) return fail_connection(c, FERRY_E_BAD_REQUEST, why), false;
  if (id == 0) return fail_connection(c, FERRY_E_BAD_REQUEST, "call id 0 is reserved"), false;
  if (c.calls.count(id) != 0) {
    fail_connection(c, FERRY_E_BAD_REQUEST, "call id " + std::to_string(id) + " is already in flight");
    return false;
  }
  const std::uint64_t token = calls_.add(c.slot, c.gen, id);
  Route route;
  auto now = router_.dispatch(CallRef{c.slot, c.gen, id, token}, call, &route);
  if (now) {
    calls_.release(token);
    reply(c, id, now->code, now->data);
    return true;
  }
  c.calls.emplace(id, token);
  calls_.arm(token, route.deadline_ms, route.lane);
  if (route.deadline_ms != 0 && (deadline_timer_ms_ == 0 || route.deadline_ms < deadline_timer_ms_)) {
    arm_deadline_timer();
  }
  return true;
}

// CANCEL: the call is answered `cancelled` now; a queued call never starts,
// a running one is flagged (thread) or its worker killed (process). A CANCEL
// for a call already answered is ignored: the reply crossed it.
void Server::handle_cancel(Conn& c, std::uint64_t id) {
  auto it = c.calls.find(id);
  if (it == c.calls.end()) return;
  const std::uint64_t token = it->second;
  if (CallTable::Entry* e = calls_.find(token)) abandon(token, *e, FERRY_E_CANCELLED, "cancelled by the client");
}

void Server::reply(Conn& c, std::uint64_t id, ferry_code code, std::string_view data) {
  if (code == FERRY_OK) proto::encode_result(c.out, id, data);
  else proto::encode_error(c.out, id, code, data);
  queue_send(c);
}

void Server::abandon(std::uint64_t token, CallTable::Entry& e, ferry_code why, std::string_view message) {
  if (e.answered) return;
  calls_.answer(e);
  if (Conn* c = lookup(e.slot, e.conn_gen)) {
    c->calls.erase(e.call_id);
    reply(*c, e.call_id, why, message);
  }
  router_.cancel(e.lane, CallRef{e.slot, e.conn_gen, e.call_id, token}, why);
}

// One timer, for the earliest deadline of a call still waiting for its reply.
void Server::arm_deadline_timer() {
  const std::int64_t next = calls_.next_deadline();
  if (next == 0 || (deadline_timer_ms_ != 0 && deadline_timer_ms_ <= next)) return;
  deadline_timer_ms_ = next;
  deadline_ts_ = at_ms(next);
  ring_.timeout_at(&deadline_ts_, pack(Tag{Op::deadline, 0, 0}));
}

void Server::on_deadline() {
  const std::int64_t now = monotonic_ms();
  if (deadline_timer_ms_ <= now) deadline_timer_ms_ = 0;  // else an older, later timer fired
  while (const std::uint64_t token = calls_.expired(now)) {
    CallTable::Entry* e = calls_.find(token);
    const std::int64_t late = now - e->deadline_ms;
    abandon(token, *e, FERRY_E_TIMEOUT, "deadline passed" + (late > 0 ? " (" + std::to_string(late) + " ms ago)" : std::string()));
  }
  arm_deadline_timer();
}

void Server::deliver(std::vector<Completion>& done) {
  for (Completion& d : done) {
    CallTable::Entry* e = calls_.find(d.ref.token);
    if (e == nullptr) continue;
    void* lane = e->lane;
    if (!e->answered) {
      if (Conn* c = lookup(d.ref.slot, d.ref.gen)) {
        c->calls.erase(d.ref.call_id);
        reply(*c, d.ref.call_id, d.code, d.data);
      }
    }
    calls_.release(d.ref.token);
    router_.finished(lane);
  }
  done.clear();
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
    return;
  }
  c.sending.clear();
  if (!c.out.empty()) queue_send(c);
  else if (c.closing) return close_connection(c);
  if (c.recv_paused && !c.recv_armed && !c.closing) arm_recv(c);
}

// Sends a connection-level ERROR, then closes once it is flushed.
void Server::fail_connection(Conn& c, ferry_code code, const std::string& why) {
  spdlog::warn("connection {}: {}: {}", c.slot, ferry_code_name(code), why);
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

void Server::on_wake() {
  completions_.ack();
  completions_.drain(&done_);
  deliver(done_);
  std::vector<std::function<void()>> tasks;
  completions_.drain_tasks(&tasks);
  for (auto& task : tasks) task();
}

void Server::on_signal() {
  signalfd_siginfo si;
  while (read(signal_fd_, &si, sizeof si) == ssize_t(sizeof si)) {
    if (si.ssi_signo == SIGHUP) {
      spdlog::info("SIGHUP: reloading the config and plugin_dir");
      if (on_hangup_) on_hangup_();
      continue;
    }
    if (draining_) {
      spdlog::warn("second signal ({}): exiting now with {} calls in flight", strsignal(int(si.ssi_signo)), calls_.live());
      std::_Exit(1);
    }
    spdlog::info("{}: stopping, draining {} calls in flight (at most {} ms)", strsignal(int(si.ssi_signo)),
                 calls_.unanswered(), cfg_.drain_timeout_ms);
    begin_drain();
  }
}

void Server::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_ts_ = at_ms(monotonic_ms() + cfg_.drain_timeout_ms);
  ring_.timeout_at(&drain_ts_, pack(Tag{Op::drain, 0, 0}));
  router_.begin_shutdown();
  ring_.cancel(pack(Tag{Op::accept, 0, 0}), pack(Tag{Op::cancel, 0, 0}));
  close(listen_fd_);
  listen_fd_ = -1;
  unlink(cfg_.socket_path.c_str());
}

// Past the drain timeout, every call still waiting is answered
// shutting_down and cancelled; one second later, connections that do not
// read their replies are no longer waited for.
void Server::on_drain_timeout() {
  if (drain_expired_) {  // the replies had their last second: give up on slow readers
    drain_final_ = true;
    return;
  }
  drain_expired_ = true;
  drain_ts_ = at_ms(monotonic_ms() + 1000);
  ring_.timeout_at(&drain_ts_, pack(Tag{Op::drain, 0, 0}));
  if (calls_.unanswered() != 0) {
    spdlog::warn("drain timeout ({} ms): answering {} unfinished calls shutting_down", cfg_.drain_timeout_ms,
                 calls_.unanswered());
  }
  std::vector<std::uint64_t> tokens;
  calls_.for_each_unanswered([&](std::uint64_t token, CallTable::Entry&) { tokens.push_back(token); });
  for (std::uint64_t token : tokens) {
    if (CallTable::Entry* e = calls_.find(token)) {
      abandon(token, *e, FERRY_E_SHUTTING_DOWN, "ferryd stopped before the call finished (drain timeout)");
    }
  }
}

bool Server::drained() const {
  if (drain_final_) return true;
  if (calls_.unanswered() != 0) return false;
  for (const auto& c : conns_) {
    if (c && c->fd >= 0 && !c->dead && !c->idle_output()) return false;
  }
  return dirty_.empty();
}

void Server::reconfigure(const config::ServerConfig& cfg) {
  if (cfg.socket_path != cfg_.socket_path || cfg.socket_mode != cfg_.socket_mode ||
      cfg.plugin_dir != cfg_.plugin_dir || cfg.max_frame_bytes != cfg_.max_frame_bytes) {
    spdlog::warn("config reload: socket_path, socket_mode, plugin_dir and max_frame_bytes apply after a restart");
  }
  cfg_.log_level = cfg.log_level;
  cfg_.max_connections = cfg.max_connections;
  cfg_.drain_timeout_ms = cfg.drain_timeout_ms;
  cfg_.max_call_depth = cfg.max_call_depth;
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
}

}  // namespace ferry
