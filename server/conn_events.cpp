#include "conn_events.hpp"

#include <sys/socket.h>

namespace ferry {

static_assert(int(ProtocolError::handshake_timeout) + 1 == kProtocolErrorCount, "a name for every kind");

const char* name(ProtocolError kind) {
  static const char* const names[kProtocolErrorCount] = {
      "bad_header", "too_large", "bad_hello", "unsupported_version", "unexpected_frame", "bad_call",
      "duplicate_call", "handshake_timeout"};
  return names[int(kind)];
}

const char* name(ConnRefusal reason) {
  static const char* const names[kConnRefusalCount] = {"max_connections", "shutting_down"};
  return names[int(reason)];
}

// One getsockopt per connection: the credentials the kernel recorded at connect().
Peer peer_of(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return Peer{};
  return Peer{cred.pid, cred.uid};
}

}  // namespace ferry
