// ferryd's event loop: accepts clients on a Unix socket, reads frames, routes
// calls, writes replies, and drains on SIGINT/SIGTERM. Everything here runs on
// one thread and never blocks; plugin code runs only on executor threads.
// Implemented by concern in server.cpp, server_conn.cpp (connections and
// buffers), server_frames.cpp (frames and replies), server_drain.cpp (stop),
// server_events.cpp (protocol errors and refused connections, in the log),
// server_memory.cpp (what idle connections hold).
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "calls.hpp"
#include "common/clock.hpp"
#include "common/event_limit.hpp"
#include "common/status.hpp"
#include "config/config.hpp"
#include "conn_events.hpp"
#include "loop/buffer_ring.hpp"
#include "loop/completion_queue.hpp"
#include "loop/reactor.hpp"
#include "loop/user_data.hpp"
#include "router.hpp"

namespace ferry {

struct Conn;

class Server {
 public:
  // Everything given must outlive the server; `clock` times deadlines and
  // the drain; calls' outcomes and durations are counted in `metrics`.
  Server(const config::ServerConfig& cfg, loop::Reactor& reactor, Router& router,
         loop::CompletionQueue& completions, const Clock& clock, Metrics& metrics);
  ~Server();

  // Sets up the signalfd and the listening socket (the reactor is ready),
  // or says what failed.
  Status start();
  // Serves until a stop signal and the drain that follows; then closes the
  // socket file and every connection. ready_fd (if >= 0) gets "ready\n" once
  // the socket accepts connections.
  void run(int ready_fd);
  // A reloaded [server] section: settings that can change live take effect
  // (log_level, max_connections, drain_timeout_ms, max_call_depth,
  // handshake_timeout_ms, idle_timeout_ms); the
  // others are logged as needing a restart.
  void reconfigure(const config::ServerConfig& cfg);
  // What SIGHUP does (a reload).
  void on_hangup(std::function<void()> f) { on_hangup_ = std::move(f); }
  // What SIGUSR1 does (reopen the log file, for logrotate).
  void on_reopen_logs(std::function<void()> f) { on_reopen_logs_ = std::move(f); }
  // Starts the drain (as SIGTERM does).
  void begin_drain();
  // Client connections open now.
  std::size_t connections() const { return open_conns_; }
  // Connections failed for a protocol error, by ProtocolError; refused, by ConnRefusal.
  const std::array<std::uint64_t, kProtocolErrorCount>& protocol_errors() const { return protocol_errors_; }
  const std::array<std::uint64_t, kConnRefusalCount>& refused() const { return refused_; }

 private:
  // server.cpp: set-up and the dispatch of completions
  Status listen_socket();
  std::string receive_buffers();
  void on_completion(const io_uring_cqe& cqe);
  void on_wake();

  // server_conn.cpp: connections and their buffers
  void on_accept(int res, bool more);
  Conn& open_conn(int fd);
  void arm_recv(Conn& c);
  bool large_frame_pending(const Conn& c) const;
  void on_recv(Conn* c, const io_uring_cqe& cqe);
  void on_read(Conn& c, int res, const std::uint8_t* provided);
  void take_input(Conn& c, std::span<const std::uint8_t> got);
  std::size_t rest_of_frame(const Conn& c, std::span<const std::uint8_t> got) const;
  void keep_input(Conn& c, std::span<const std::uint8_t> bytes);
  void consume_input(Conn& c, std::size_t used);
  void rearm_starved();
  void queue_send(Conn& c);
  void flush_sends();
  void on_send(Conn& c, int res);
  void fail_connection(Conn& c, ProtocolError kind, const std::string& why);
  void half_close(Conn& c);
  void check_half_closed();  // from on_sweep
  void check_timeouts();     // from on_sweep: handshake_timeout_ms, idle_timeout_ms
  bool timeouts_on() const { return cfg_.handshake_timeout_ms != 0 || cfg_.idle_timeout_ms != 0; }
  void close_connection(Conn& c);
  void maybe_release(Conn& c);
  void deliver_partial(Completion& d);
  void give_back_credit(Conn& c);
  Conn* lookup(std::uint32_t slot, std::uint32_t gen);

  // server_memory.cpp: buffers of idle connections, memory back to the system
  bool holds_buffers(const Conn& c) const;
  void hold(Conn& c);
  void on_sweep();
  void arm_sweep();
  std::size_t free_buffers(Conn& c);
  void note_release();
  void on_trim();
  bool trim();

  // server_frames.cpp: frames in, replies out, deadlines
  std::size_t handle_frames(Conn& c, std::span<const std::uint8_t> in);
  bool handle_frame(Conn& c, const struct FrameView& f);
  bool handle_hello(Conn& c, const FrameView& f);
  bool handle_call(Conn& c, std::uint64_t id, std::span<const std::uint8_t> body);
  void handle_cancel(Conn& c, std::uint64_t id);
  void reply(Conn& c, std::uint64_t id, ferry_code code, std::string_view data);
  // Answers a call whose executor has not finished it, and tells the executor.
  void abandon(std::uint64_t token, CallTable::Entry& e, ferry_code why, std::string_view message);
  void arm_deadline_timer();
  void on_deadline();
  void deliver(std::vector<Completion>& done);

  // server_events.cpp: failures of clients, told once each, bounded per kind
  void refuse(int fd, ConnRefusal reason);
  void note_protocol_error(const Conn& c, ProtocolError kind, const std::string& why);
  void note_refused(const Peer& peer, ConnRefusal reason);
  void arm_event_summary();
  void on_event_summary();

  // server_drain.cpp: signals and the graceful stop
  void on_signal();
  void on_drain_timeout();
  bool drained() const;

  config::ServerConfig cfg_;
  std::function<void()> on_hangup_;
  std::function<void()> on_reopen_logs_;
  Router& router_;
  loop::CompletionQueue& completions_;
  const Clock& clock_;
  Metrics& metrics_;
  loop::Reactor& reactor_;
  loop::Ring& ring_;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  bool draining_ = false;
  bool drain_expired_ = false;  // past drain_timeout_ms: every call answered
  bool drain_final_ = false;    // a second later: stop waiting for slow readers
  CallTable calls_;
  std::int64_t deadline_timer_ms_ = 0;  // when the armed deadline timer fires (0: none)
  __kernel_timespec deadline_ts_{};
  __kernel_timespec drain_ts_{};
  // Receive buffers shared by every connection; null where the kernel has
  // no buffer rings: then each connection reads into its own buffer.
  std::unique_ptr<loop::BufferRing> buffers_;
  std::pmr::unsynchronized_pool_resource call_nodes_;  // of Conn::calls; before conns_, which use it
  std::vector<std::unique_ptr<Conn>> conns_;  // by slot, null while free; slot 0 unused
  std::vector<std::uint32_t> next_gen_;        // by slot: the generation of its next connection
  std::vector<std::uint32_t> free_slots_;
  std::deque<std::pair<std::uint32_t, std::uint32_t>> starved_;  // {slot, gen} to read again (-ENOBUFS)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> holding_;  // {slot, gen} with buffers to sweep
  std::vector<std::pair<std::uint32_t, std::uint32_t>> half_closed_;  // {slot, gen}: is the client gone now?
  bool sweep_armed_ = false;
  __kernel_timespec sweep_ts_{};
  std::size_t released_since_trim_ = 0;  // connections released since the last malloc_trim
  bool trim_armed_ = false;
  std::int64_t last_trim_ms_ = 0;  // when malloc_trim last ran; 0: never
  __kernel_timespec trim_ts_{};
  std::vector<Conn*> dirty_;  // connections with replies to send
  std::vector<Completion> done_;
  std::size_t open_conns_ = 0;
  __kernel_timespec accept_retry_at_{};  // when accepting resumes after EMFILE/ENFILE
  EventLog events_;  // protocol errors and refusals, bounded per kind
  std::array<std::uint64_t, kProtocolErrorCount> protocol_errors_{};  // by ProtocolError, for metrics
  std::array<std::uint64_t, kConnRefusalCount> refused_{};            // by ConnRefusal, for metrics
  __kernel_timespec events_ts_{};
  bool events_armed_ = false;  // a timer for events_' next summary is pending
};

}  // namespace ferry
