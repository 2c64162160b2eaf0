#include "server.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

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
  std::unordered_set<std::uint64_t> calls;  // ids in flight

  std::uint64_t tag(Op op) const { return pack(Tag{op, gen, slot}); }
  bool idle_output() const { return out.empty() && sending.empty(); }
};

// A decoded frame handed from handle_frames to handle_frame.
struct FrameView {
  proto::Type type;
  std::uint64_t id;
  std::span<const std::uint8_t> body;
};

Server::Server(const config::Config& cfg, loop::Reactor& reactor, Router& router,
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
  signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return errno_text("signalfd");
  if (std::string err = listen_socket(); !err.empty()) return err;
  ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
  ring_.poll_multishot(completions_.fd(), pack(Tag{Op::wake, 0, 0}));
  ring_.poll_multishot(signal_fd_, pack(Tag{Op::signal, 0, 0}));
  spdlog::info("listening on {} (io_uring: {})", cfg_.server.socket_path.string(), ring_.mode());
  return {};
}

// Binds the Unix socket, replacing a stale socket file but never a live server.
std::string Server::listen_socket() {
  const std::string path = cfg_.server.socket_path.string();
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
  if (chmod(path.c_str(), cfg_.server.socket_mode) != 0) return errno_text("chmod");
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
      const std::int64_t at = monotonic_ms() + 100;
      accept_retry_at_ = __kernel_timespec{at / 1000, (at % 1000) * 1000000};
      ring_.timeout_at(&accept_retry_at_, pack(Tag{Op::accept_retry, 0, 0}));
    } else {
      ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
    }
  }
  if (res < 0) {
    if (res != -ECANCELED) spdlog::warn("accept: {}", std::strerror(-res));
    return;
  }
  if (draining_ || open_conns_ >= cfg_.server.max_connections) {
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
  const std::size_t cap = proto::kHeaderSize + cfg_.server.max_frame_bytes + kRecvChunk;
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
    const proto::Parse p = proto::parse_frame(avail, cfg_.server.max_frame_bytes, &f, &used, &why);
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
                                            cfg_.server.max_frame_bytes});
    c.hello = true;
    queue_send(c);
    return true;
  }
  switch (f.type) {
    case proto::Type::call: return handle_call(c, f.id, f.body);
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
  if (!c.calls.insert(id).second) {
    fail_connection(c, FERRY_E_BAD_REQUEST, "call id " + std::to_string(id) + " is already in flight");
    return false;
  }
  auto now = router_.dispatch(CallRef{c.slot, c.gen, id}, call);
  if (!now) {
    ++inflight_;
    return true;
  }
  c.calls.erase(id);
  if (now->code == FERRY_OK) proto::encode_result(c.out, id, now->data);
  else proto::encode_error(c.out, id, now->code, now->data);
  queue_send(c);
  return true;
}

void Server::deliver(std::vector<Completion>& done) {
  for (Completion& d : done) {
    --inflight_;
    Conn* c = lookup(d.ref.slot, d.ref.gen);
    if (c == nullptr) continue;  // the client left; nobody to tell
    c->calls.erase(d.ref.call_id);
    if (d.code == FERRY_OK) proto::encode_result(c->out, d.ref.call_id, d.data);
    else proto::encode_error(c->out, d.ref.call_id, d.code, d.data);
    queue_send(*c);
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
  shutdown(c.fd, SHUT_RDWR);  // completes any pending recv/send
  maybe_release(c);
}

void Server::maybe_release(Conn& c) {
  if (!c.dead || c.recv_armed || c.send_armed) return;
  close(c.fd);
  spdlog::debug("connection {} closed ({} calls abandoned)", c.slot, c.calls.size());
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
}

void Server::on_signal() {
  signalfd_siginfo si;
  while (read(signal_fd_, &si, sizeof si) == ssize_t(sizeof si)) {
    if (draining_) {
      spdlog::warn("second signal ({}): exiting now with {} calls in flight", strsignal(int(si.ssi_signo)), inflight_);
      std::_Exit(1);
    }
    spdlog::info("{}: stopping, draining {} calls in flight", strsignal(int(si.ssi_signo)), inflight_);
    begin_drain();
  }
}

void Server::begin_drain() {
  draining_ = true;
  router_.begin_shutdown();
  ring_.cancel(pack(Tag{Op::accept, 0, 0}), pack(Tag{Op::cancel, 0, 0}));
  close(listen_fd_);
  listen_fd_ = -1;
  unlink(cfg_.server.socket_path.c_str());
}

bool Server::drained() const {
  if (inflight_ != 0) return false;
  for (const auto& c : conns_) {
    if (c && c->fd >= 0 && !c->dead && !c->idle_output()) return false;
  }
  return dirty_.empty();
}

}  // namespace ferry
