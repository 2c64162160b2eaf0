// Server: set-up, the loop, and the dispatch of each io_uring completion to
// its handler (server_conn.cpp, server_frames.cpp, server_drain.cpp).
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

#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

Server::Server(const config::ServerConfig& cfg, loop::Reactor& reactor, Router& router,
               loop::CompletionQueue& completions, const Clock& clock, Metrics& metrics)
    : cfg_(cfg),
      router_(router),
      completions_(completions),
      clock_(clock),
      metrics_(metrics),
      reactor_(reactor),
      ring_(reactor.ring()) {
  conns_.emplace_back();  // slot 0 is never a connection
  next_gen_.push_back(0);
}

Server::~Server() {
  for (auto& c : conns_) {
    if (c && c->fd >= 0) close(c->fd);
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  if (signal_fd_ >= 0) close(signal_fd_);
}

Status Server::start() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);
  signal_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return Status::Errno("signalfd");
  FERRY_RETURN_IF_ERROR(listen_socket());
  ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
  ring_.poll_multishot(completions_.fd(), pack(Tag{Op::wake, 0, 0}));
  ring_.poll_multishot(signal_fd_, pack(Tag{Op::signal, 0, 0}));
  spdlog::info("listening on {} (io_uring: {}; {})", cfg_.socket_path.string(), ring_.mode(), receive_buffers());
  return Status::Ok();
}

// Provided receive buffers, or why connections read into their own.
std::string Server::receive_buffers() {
  auto buffers = loop::BufferRing::create(ring_, 0, kRecvBuffers, kRecvBufferSize);
  if (!buffers.ok()) {
    spdlog::warn("{}: each connection keeps a receive buffer of its own (64 KiB, more while reading a large frame)",
                 buffers.status().message());
    return "a receive buffer per connection";
  }
  buffers_ = std::move(buffers).value();
  return std::to_string(kRecvBuffers) + " provided receive buffers of " + std::to_string(kRecvBufferSize / 1024) +
         " KiB";
}

// Binds the Unix socket, replacing a stale socket file but never a live server.
Status Server::listen_socket() {
  const std::string path = cfg_.socket_path.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Status::Error("socket_path is too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Status::Errno("socket");
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::Error(path + " exists and is not a socket");
    if (connect(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return Status::Error("another server is already listening on " + path);
    }
    unlink(path.c_str());  // stale socket file of a server that is gone
  }
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Errno("bind " + path);
  }
  if (chmod(path.c_str(), cfg_.socket_mode) != 0) return Status::Errno("chmod");
  if (listen(listen_fd_, 1024) != 0) return Status::Errno("listen");
  return Status::Ok();
}

void Server::run(int ready_fd) {
  if (ready_fd >= 0) {
    [[maybe_unused]] ssize_t n = write(ready_fd, "ready\n", 6);
    close(ready_fd);
  }
  while (!(draining_ && drained())) {
    router_.flush();
    flush_sends();
    if (!starved_.empty()) rearm_starved();
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
  events_.flush_all(clock_.now_ms());  // the counts of a flood the stop cut short
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
    case Op::event_summary: return on_event_summary();
    case Op::trim: return on_trim();
    case Op::sweep: return on_sweep();
    case Op::accept_retry:
      if (!draining_) ring_.accept_multishot(listen_fd_, pack(Tag{Op::accept, 0, 0}));
      return;
    case Op::client: return reactor_.dispatch(t, cqe);
    case Op::recv:
    case Op::send: break;
  }
  Conn* c = t.slot < conns_.size() ? conns_[t.slot].get() : nullptr;
  if (c != nullptr && c->gen != t.gen) c = nullptr;
  if (t.op == Op::recv) return on_recv(c, cqe);  // gives back a provided buffer, even with c gone
  if (c != nullptr) on_send(*c, cqe.res);
}

void Server::on_wake() {
  completions_.ack();
  completions_.drain(&done_);
  deliver(done_);
  std::vector<std::function<void()>> tasks;
  completions_.drain_tasks(&tasks);
  for (auto& task : tasks) task();
}

void Server::reconfigure(const config::ServerConfig& cfg) {
  if (cfg.socket_path != cfg_.socket_path || cfg.socket_mode != cfg_.socket_mode ||
      cfg.plugin_dir != cfg_.plugin_dir || cfg.max_frame_bytes != cfg_.max_frame_bytes ||
      cfg.metrics_listen != cfg_.metrics_listen) {
    spdlog::warn(
        "config reload: socket_path, socket_mode, plugin_dir, max_frame_bytes and metrics_listen apply after a restart");
  }
  if (cfg.log_format != cfg_.log_format || cfg.log_file != cfg_.log_file) {
    spdlog::warn("config reload: log_format and log_file apply after a restart");
  }
  cfg_.log_level = cfg.log_level;
  cfg_.max_connections = cfg.max_connections;
  cfg_.drain_timeout_ms = cfg.drain_timeout_ms;
  cfg_.max_call_depth = cfg.max_call_depth;
  cfg_.handshake_timeout_ms = cfg.handshake_timeout_ms;
  cfg_.idle_timeout_ms = cfg.idle_timeout_ms;
  if (open_conns_ > 0 && timeouts_on()) arm_sweep();
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
}

}  // namespace ferry
