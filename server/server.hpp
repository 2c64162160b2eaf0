// ferryd's event loop: accepts clients on a Unix socket, reads frames, routes
// calls, writes replies, and drains on SIGINT/SIGTERM. Everything here runs on
// one thread and never blocks; plugin code runs only on executor threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "loop/completion_queue.hpp"
#include "loop/reactor.hpp"
#include "loop/user_data.hpp"
#include "router.hpp"

namespace ferry {

struct Conn;

class Server {
 public:
  Server(const config::Config& cfg, loop::Reactor& reactor, Router& router,
         loop::CompletionQueue& completions);
  ~Server();

  // Sets up the signalfd and the listening socket (the reactor is ready).
  // Returns "" or a message saying what failed.
  std::string start();
  // Serves until a stop signal and the drain that follows; then closes the
  // socket file and every connection. ready_fd (if >= 0) gets "ready\n" once
  // the socket accepts connections.
  void run(int ready_fd);

 private:
  std::string listen_socket();
  void on_completion(const io_uring_cqe& cqe);
  void on_accept(int res, bool more);
  void on_recv(Conn& c, int res);
  void on_send(Conn& c, int res);
  void on_signal();
  void on_wake();
  void deliver(std::vector<Completion>& done);
  bool handle_frames(Conn& c);
  bool handle_frame(Conn& c, const struct FrameView& f);
  bool handle_call(Conn& c, std::uint64_t id, std::span<const std::uint8_t> body);
  void arm_recv(Conn& c);
  void queue_send(Conn& c);
  void flush_sends();
  void fail_connection(Conn& c, ferry_code code, const std::string& why);
  void close_connection(Conn& c);
  void maybe_release(Conn& c);
  void begin_drain();
  bool drained() const;
  Conn* lookup(std::uint32_t slot, std::uint32_t gen);

  const config::Config& cfg_;
  Router& router_;
  loop::CompletionQueue& completions_;
  loop::Reactor& reactor_;
  loop::Ring& ring_;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  bool draining_ = false;
  std::uint64_t inflight_ = 0;  // admitted calls not yet completed
  std::vector<std::unique_ptr<Conn>> conns_;  // by slot; slot 0 unused
  std::vector<std::uint32_t> free_slots_;
  std::vector<Conn*> dirty_;  // connections with replies to send
  std::vector<Completion> done_;
  std::size_t open_conns_ = 0;
  __kernel_timespec accept_retry_at_{};  // when accepting resumes after EMFILE/ENFILE
};

}  // namespace ferry
