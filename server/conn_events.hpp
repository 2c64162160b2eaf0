// What can go wrong with a client connection, as fixed sets of names that
// the log and the metrics (ferry_protocol_errors_total{kind},
// ferry_connections_refused_total{reason}) share. Thread-safe.
#pragma once

#include <sys/types.h>

namespace ferry {

// Why a connection was failed with ERROR call_id 0 (docs/protocol.md §5).
enum class ProtocolError {
  bad_header,           // a frame header that cannot be (type, flags, reserved)
  too_large,            // a frame over max_frame_bytes
  bad_hello,            // the first frame is no HELLO, or a malformed one
  unsupported_version,  // a HELLO with a major version ferryd does not speak
  unexpected_frame,     // a frame a client may not send (a second HELLO, RESULT, ...)
  bad_call,             // a malformed CALL: body, call id 0, flags its version lacks
  duplicate_call,       // a CALL whose id is already in flight
  handshake_timeout,    // no whole HELLO within [server] handshake_timeout_ms
};
inline constexpr int kProtocolErrorCount = 8;
const char* name(ProtocolError kind);

// Why an accepted connection was closed at once.
enum class ConnRefusal {
  max_connections,  // [server] max_connections are open: answered ERROR busy
  shutting_down,    // ferryd drains
};
inline constexpr int kConnRefusalCount = 2;
const char* name(ConnRefusal reason);

// Who is at the other end of a Unix socket (SO_PEERCRED at accept); -1
// when the kernel did not say.
struct Peer {
  pid_t pid = -1;
  uid_t uid = uid_t(-1);
};
Peer peer_of(int fd);

}  // namespace ferry
