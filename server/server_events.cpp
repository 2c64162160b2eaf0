// Server: what clients get wrong, told in the log once each, with who they
// are (the peer's pid and uid from SO_PEERCRED), and bounded per kind
// (EventLog): a flood of bad or refused clients writes a few lines and a
// count per window. A timer writes the summary after the flood stopped.
#include "server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/log_output.hpp"
#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

// A client over max_connections learns why: one small ERROR frame (busy,
// call_id 0), sent without blocking: a fresh socket's buffer takes it
// whole, and a client that does not read holds nothing. Then it is closed.
// A drain closes without a frame (docs/protocol.md §5).
void Server::refuse(int fd, ConnRefusal reason) {
  note_refused(peer_of(fd), reason);
  if (reason == ConnRefusal::max_connections) {
    std::string frame;
    proto::encode_error(frame, 0, FERRY_E_BUSY, "too many connections");
    (void)send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  close(fd);
}

// The one log line of a refused connection, and its count.
void Server::note_refused(const Peer& peer, ConnRefusal reason) {
  ++refused_[std::size_t(reason)];
  const LogFields with({{"reason", name(reason)}, {"peer_pid", peer.pid}, {"peer_uid", peer.uid}});
  const std::string kind = std::string("connection refused (") + name(reason) + ")";
  events_.note(kind, spdlog::level::warn, clock_.now_ms(),
               kind + ": client pid " + std::to_string(peer.pid) + " uid " + std::to_string(peer.uid) +
                   (reason == ConnRefusal::max_connections
                        ? ", " + std::to_string(open_conns_) + " connections open; answered busy"
                        : ", ferryd is stopping"));
  arm_event_summary();
}

// The one log line of a client's protocol error, and its count.
void Server::note_protocol_error(const Conn& c, ProtocolError kind, const std::string& why) {
  ++protocol_errors_[std::size_t(kind)];
  const LogFields with({{"kind", name(kind)}, {"peer_pid", c.peer.pid}, {"peer_uid", c.peer.uid}});
  const std::string what = std::string("protocol error (") + name(kind) + ")";
  events_.note(what, spdlog::level::warn, clock_.now_ms(),
               what + " from client pid " + std::to_string(c.peer.pid) + " uid " + std::to_string(c.peer.uid) +
                   " (connection " + std::to_string(c.slot) + "): " + why + "; connection closed");
  arm_event_summary();
}

void Server::arm_event_summary() {
  const std::int64_t due = events_.next_due_ms();
  if (due == 0 || events_armed_) return;
  events_armed_ = true;
  events_ts_ = loop::at_ms(due);
  ring_.timeout_at(&events_ts_, pack(Tag{Op::event_summary, 0, 0}));
}

void Server::on_event_summary() {
  events_armed_ = false;
  events_.flush(clock_.now_ms());
  arm_event_summary();
}

}  // namespace ferry
