// Blocking client for one connection to ferryd over its Unix socket (protocol:
// docs/protocol.md). NOT thread-safe: use one Client per thread, or lock.
//
// Writes are batched: send_call()/send_ping() only append a frame to an
// outgoing buffer; flush() writes the buffer in as few syscalls as the socket
// allows. read_reply(), call() and ping() flush first. To pipeline N calls:
//   for (...) ids.push_back(c->send_call("primes.is_prime", "[7]"));
//   for (...) auto r = c->read_reply();   // replies arrive in any order
// Reads go through a buffer too: one recv() usually yields many replies.
// While flushing, incoming bytes are drained into the read buffer, so a large
// pipeline can never deadlock against a server that is writing replies.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/errors.h"

namespace ferry {

namespace proto {
struct Frame;  // <ferry/wire.hpp>: the client's parser, not part of this API
}

// Where a call waits in its plugin's queue: every queued high call runs before
// any normal one, and every normal one before any low one (docs/protocol.md §3.2).
enum class Priority : std::uint8_t { normal = 0, high = 1, low = 2 };

// partial: one partial result of a streamed call (protocol 1.2); more may
// follow, and the call's own result or error always comes last.
enum class ReplyKind { result, error, pong, partial };

// One frame from the server. error: data = message, code = its code (an ERROR
// with call_id 0 is about the connection, which the server then closes).
struct Reply {
  std::uint64_t call_id = 0;
  ReplyKind kind = ReplyKind::result;
  ferry_code code = FERRY_OK;
  std::string data;
};

class Client {
 public:
  // Connects and exchanges HELLO. On failure returns null and sets *error.
  // refused (optional): the server's code when it answered the HELLO with an
  // ERROR (e.g. FERRY_E_UNSUPPORTED_VERSION), else FERRY_OK.
  static std::unique_ptr<Client> connect(const std::string& socket_path, std::string* error);
  static std::unique_ptr<Client> connect(const std::string& socket_path, std::string* error,
                                         ferry_code* refused);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Round trips: send, flush, read until the matching reply. Replies to other
  // calls that arrive meanwhile are kept for read_reply(). A connection-level
  // ERROR (call_id 0) is returned as the reply. nullopt = connection lost or
  // nothing sent (see last_error()).
  std::optional<Reply> call(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms = 0);
  std::optional<Reply> ping(std::string_view body = {});

  // A streamed call (protocol 1.2): calls on_partial(data) for each partial
  // result as it arrives, in the order the function emitted them, then
  // returns the call's one final reply (result or error), as call() does.
  // nullopt, with nothing sent, when the server speaks 1.0 or 1.1 (no
  // partial results; see last_error()). on_partial must not use this client.
  std::optional<Reply> stream(std::string_view fn, std::string_view payload,
                              const std::function<void(std::string_view)>& on_partial,
                              std::uint32_t timeout_ms = 0);

  // Pipelined: buffer one frame, return its call id (1, 2, 3, ...), or 0 when
  // the connection is lost or the frame is invalid (name not 1..255 bytes, body
  // over server_max_frame()). Nothing is written before flush().
  std::uint64_t send_call(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms = 0,
                          Priority prio = Priority::normal);
  // As send_call(), asking for partial results: read_reply() then returns
  // ReplyKind::partial frames of this call before its final reply. 0 also
  // when the server is older than protocol 1.2 (see last_error()).
  std::uint64_t send_stream(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms = 0,
                            Priority prio = Priority::normal);
  std::uint64_t send_ping(std::string_view body = {});
  // Buffers a CANCEL for call `id`: the server answers it `cancelled` at once
  // (unless its reply is already on the way). False when disconnected or
  // when the server speaks protocol 1.0 (no CANCEL; see last_error()).
  bool send_cancel(std::uint64_t id);
  // Writes everything buffered. false = connection lost.
  bool flush();
  // For tests: appends arbitrary bytes to the outgoing buffer and flushes.
  bool send_raw(std::string_view bytes);

  // Next frame from the server in arrival order (kept replies first). Frames
  // already received are still returned after the connection broke; then
  // nullopt, with last_error() "connection closed by server" on EOF.
  std::optional<Reply> read_reply();

  // Limits each wait for the server (a reply, or room to write) to ms; 0 =
  // wait forever (the default). A wait that times out returns nullopt/false
  // with last_error() "timed out waiting for the server"; the connection stays
  // usable (connected() is still true) and the reply may still be read later.
  bool set_timeout(std::uint32_t ms);

  // False once the connection is lost (EOF, I/O error, protocol error).
  bool connected() const { return !read_dead_ && !write_dead_; }
  const std::string& last_error() const { return last_error_; }
  int fd() const { return fd_; }
  // The largest body the server accepts, from its HELLO.
  std::uint32_t server_max_frame() const { return server_max_; }
  // The protocol minor version of the server, from its HELLO (2: partial results).
  std::uint16_t server_minor() const { return server_minor_; }
  // Bytes buffered by send_* and not yet written.
  std::size_t pending_bytes() const { return out_.size() - out_sent_; }

 private:
  explicit Client(int fd) : fd_(fd) {}
  bool handshake(ferry_code* refused);
  bool accept_hello(const proto::Frame& f, ferry_code* refused);
  std::uint64_t send_call_frame(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms,
                                Priority prio, std::uint8_t flags);
  bool may_send(std::size_t body_size);
  bool wait_writable();
  bool receive_some(bool block);
  bool timed_out();
  void make_room();
  void consume(std::size_t size);
  bool wait_frame(proto::Frame* f, std::size_t* size);
  bool protocol_error(const std::string& why);
  std::optional<Reply> read_wire();
  std::optional<Reply> to_reply(const proto::Frame& f);
  std::optional<Reply> to_error_reply(const proto::Frame& f, Reply r);
  std::optional<Reply> await(std::uint64_t id);
  bool lose(std::string message);
  bool lose_errno(const char* what);

  int fd_ = -1;
  bool read_dead_ = false;   // EOF or recv error: nothing more will arrive
  bool write_dead_ = false;  // send error: nothing more can be sent
  std::uint32_t server_max_ = 0;
  std::uint16_t server_minor_ = 0;
  std::uint32_t timeout_ms_ = 0;
  std::uint64_t next_id_ = 1;
  std::string out_;
  std::size_t out_sent_ = 0;      // out_[0, out_sent_) is already written
  std::vector<std::uint8_t> in_;  // in_[in_begin_, in_end_) holds unparsed bytes
  std::size_t in_begin_ = 0, in_end_ = 0;
  std::deque<Reply> kept_;  // replies read by call()/ping() for other ids
  std::string last_error_;
};

}  // namespace ferry
