// What the streaming tests share: raw connections that speak the wire by
// hand (a 1.1 client, a client that never reads) and the plugins' config.
// Header-only; one test case uses each object from one thread.
#pragma once

#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "ferryd_process.hpp"

namespace ferry::test {

// "[plugins.demo]" and "[plugins.stream]" (the fixture) in one executor.
inline std::string stream_config(const std::string& executor, int stream_workers = 2) {
  return "[plugins.demo]\nexecutor = \"" + executor + "\"\nworkers = 2\n" + "[plugins.stream]\nexecutor = \"" +
         executor + "\"\nworkers = " + std::to_string(stream_workers) + "\n";
}

// A HELLO frame of this major and minor (max_frame_bytes 0).
inline std::string hello_frame(std::uint16_t minor) {
  std::string body(8, '\0');
  const std::uint16_t major = 1;
  std::memcpy(body.data(), &major, 2);
  std::memcpy(body.data() + 2, &minor, 2);
  return header(8, 1, 0) + body;
}

// A CALL frame with the given flags byte (docs/protocol.md §3.2).
inline std::string call_frame(std::uint64_t id, const std::string& fn, const std::string& payload,
                              std::uint8_t flags, std::uint32_t timeout_ms = 0) {
  std::string fixed(8, '\0');
  std::memcpy(fixed.data(), &timeout_ms, 4);
  fixed[5] = char(flags);
  const auto len = std::uint16_t(fn.size());
  std::memcpy(fixed.data() + 6, &len, 2);
  return header(std::uint32_t(8 + fn.size() + payload.size()), 2, id) + fixed + fn + payload;
}

// One connection driven byte by byte. A small receive buffer (for a client
// that never reads) keeps the kernel from absorbing much of what ferryd sends.
class RawConn {
 public:
  struct Frame {
    int type = -1;  // -1: the connection ended
    std::uint64_t id = 0;
    std::string body;
  };

  explicit RawConn(const FerrydProcess& d, int rcvbuf = 0) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const timeval cap{20, 0};  // a read that waits longer fails the test rather than hanging it
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &cap, sizeof cap);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, d.socket().c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~RawConn() { close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  void send(const std::string& bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
  }
  Frame read() {
    Frame f;
    unsigned char h[16];
    if (!recv_all(h, sizeof h)) return f;
    std::uint32_t len;
    std::memcpy(&len, h, 4);
    std::memcpy(&f.id, h + 8, 8);
    f.body.assign(len, '\0');
    if (len > 0 && !recv_all(f.body.data(), len)) return f;
    f.type = h[4];
    return f;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Sends nothing more, but still reads (a half-close).
  void shutdown_sending() { REQUIRE(::shutdown(fd_, SHUT_WR) == 0); }

 private:
  // Exactly n bytes; false at the end of the connection. Waiting past the
  // receive timeout fails the test.
  bool recv_all(void* to, std::size_t n) {
    const ssize_t got = recv(fd_, to, n, MSG_WAITALL);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) FAIL("no frame from ferryd within 20 s");
    return got == ssize_t(n);
  }
  int fd_ = -1;
};

}  // namespace ferry::test
