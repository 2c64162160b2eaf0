#include "ferry/client.hpp"

#include "ferry/wire.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>

namespace ferry {
namespace {

static_assert(static_cast<int>(Priority::normal) == static_cast<int>(proto::Priority::normal) &&
              static_cast<int>(Priority::high) == static_cast<int>(proto::Priority::high) &&
              static_cast<int>(Priority::low) == static_cast<int>(proto::Priority::low),
              "ferry::Priority must keep the wire's values");

constexpr std::size_t kMinFree = 16 << 10;          // never recv() into less room than this
constexpr std::size_t kReadChunk = 64 << 10;        // initial read buffer
constexpr std::size_t kShrinkAbove = 1 << 20;       // drop a buffer grown by one huge reply
constexpr std::uint32_t kHandshakeTimeoutMs = 10000;  // a peer that never answers HELLO
// The client trusts the server it connected to: any body length is accepted.
constexpr std::uint32_t kAcceptAnyBody = std::numeric_limits<std::uint32_t>::max();

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool fill_address(const std::string& path, sockaddr_un* addr, std::string* error) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) {
    *error = "socket path must be 1.." + std::to_string(sizeof addr->sun_path - 1) + " bytes";
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// connect() interrupted by a signal keeps going in the background: wait for it.
bool connect_fd(int fd, const sockaddr_un& addr) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return true;
  if (errno != EINTR) return false;
  pollfd p{fd, POLLOUT, 0};
  while (::poll(&p, 1, -1) < 0)
    if (errno != EINTR) return false;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return false;
  errno = err;
  return err == 0;
}

int open_socket(const std::string& path, std::string* error) {
  sockaddr_un addr;
  if (!fill_address(path, &addr, error)) return -1;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = errno_text("socket");
    return -1;
  }
  if (!connect_fd(fd, addr)) {
    *error = "cannot connect to " + path + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::uint32_t peek_length(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

}  // namespace

std::unique_ptr<Client> Client::connect(const std::string& socket_path, std::string* error) {
  return connect(socket_path, error, nullptr);
}

std::unique_ptr<Client> Client::connect(const std::string& socket_path, std::string* error,
                                        ferry_code* refused) {
  std::string ignored;
  if (!error) error = &ignored;
  if (refused) *refused = FERRY_OK;
  int fd = open_socket(socket_path, error);
  if (fd < 0) return nullptr;
  std::unique_ptr<Client> c(new Client(fd));
  if (!c->handshake(refused)) {
    *error = "handshake with " + socket_path + " failed: " + c->last_error_;
    return nullptr;
  }
  return c;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

bool Client::handshake(ferry_code* refused) {
  set_timeout(kHandshakeTimeoutMs);
  proto::encode_hello(out_, proto::Hello{});
  flush();  // on failure the server may still have said why: read it
  proto::Frame f{};
  std::size_t size = 0;
  if (!wait_frame(&f, &size)) return false;
  bool ok = accept_hello(f, refused);
  consume(size);
  set_timeout(0);
  return ok;
}

bool Client::accept_hello(const proto::Frame& f, ferry_code* refused) {
  std::string why;
  if (f.header.type == proto::Type::error) {
    proto::Error e{};
    if (!proto::decode_error(f.body, &e, &why)) return lose("protocol error: " + why);
    if (refused) *refused = e.code;
    return lose(std::string("server refused: ") + ferry_code_name(e.code) + ": " + std::string(e.message));
  }
  if (f.header.type != proto::Type::hello)
    return lose(std::string("protocol error: expected hello, got ") + proto::type_name(f.header.type));
  proto::Hello h;
  if (!proto::decode_hello(f.body, &h, &why)) return lose("protocol error: " + why);
  if (h.major != proto::kVersionMajor)
    return lose("server speaks protocol v" + std::to_string(h.major) + ", this client v" +
                std::to_string(proto::kVersionMajor));
  server_max_ = h.max_frame_bytes;
  server_minor_ = h.minor;
  return true;
}

bool Client::set_timeout(std::uint32_t ms) {
  timeout_ms_ = ms;
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000) * 1000};
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0) return true;
  last_error_ = errno_text("setsockopt(SO_RCVTIMEO)");
  return false;
}

std::optional<Reply> Client::call(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms) {
  std::uint64_t id = send_call(fn, payload, timeout_ms);
  if (id == 0) return std::nullopt;
  return await(id);
}

std::optional<Reply> Client::ping(std::string_view body) {
  std::uint64_t id = send_ping(body);
  if (id == 0) return std::nullopt;
  return await(id);
}

std::uint64_t Client::send_call(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms,
                                Priority prio) {
  return send_call_frame(fn, payload, timeout_ms, prio, 0);
}

std::uint64_t Client::send_stream(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms,
                                  Priority prio) {
  if (connected() && server_minor_ < 2) {  // a 1.1 server would close the connection
    last_error_ = "the server speaks protocol 1." + std::to_string(server_minor_) + ", which has no partial results";
    return 0;
  }
  return send_call_frame(fn, payload, timeout_ms, prio, proto::kCallPartials);
}

std::uint64_t Client::send_call_frame(std::string_view fn, std::string_view payload, std::uint32_t timeout_ms,
                                      Priority prio, std::uint8_t flags) {
  if (fn.empty() || fn.size() > proto::kMaxNameLength) {
    last_error_ = "function name must be 1..255 bytes";
    return 0;
  }
  if (!may_send(proto::call_body_size(fn, payload.size()))) return 0;
  proto::encode_call(out_, next_id_, fn, payload, timeout_ms, static_cast<proto::Priority>(prio), flags);
  return next_id_++;
}

std::optional<Reply> Client::stream(std::string_view fn, std::string_view payload,
                                    const std::function<void(std::string_view)>& on_partial,
                                    std::uint32_t timeout_ms) {
  const std::uint64_t id = send_stream(fn, payload, timeout_ms);
  if (id == 0) return std::nullopt;
  while (true) {
    std::optional<Reply> r = await(id);
    if (!r || r->kind != ReplyKind::partial || r->call_id != id) return r;
    on_partial(r->data);
  }
}

std::uint64_t Client::send_ping(std::string_view body) {
  if (!may_send(body.size())) return 0;
  proto::encode_ping(out_, next_id_, body);
  return next_id_++;
}

bool Client::send_cancel(std::uint64_t id) {
  if (!connected()) return false;
  if (server_minor_ < 1) {  // a 1.0 server would close the connection
    last_error_ = "the server speaks protocol 1." + std::to_string(server_minor_) + ", which has no CANCEL";
    return false;
  }
  proto::encode_cancel(out_, id);
  return true;
}

// Refuses frames the server would answer by closing the connection.
bool Client::may_send(std::size_t body_size) {
  if (!connected()) return false;  // last_error_ already says why
  if (body_size <= server_max_) return true;
  last_error_ = "frame body of " + std::to_string(body_size) + " bytes exceeds the server's limit of " +
                std::to_string(server_max_);
  return false;
}

bool Client::send_raw(std::string_view bytes) {
  out_.append(bytes);
  return flush();
}

bool Client::flush() {
  if (write_dead_) return false;
  while (out_sent_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      out_sent_ += static_cast<std::size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_writable()) return false;
    } else if (errno != EINTR) {
      write_dead_ = true;
      return lose_errno("send");
    }
  }
  out_.clear();
  out_sent_ = 0;
  return true;
}

// Waits for room in the socket, draining replies meanwhile: a server blocked
// on writing to us may not be reading from us.
bool Client::wait_writable() {
  pollfd p{fd_, POLLOUT, 0};
  if (!read_dead_) p.events |= POLLIN;
  int n;
  while ((n = ::poll(&p, 1, timeout_ms_ ? static_cast<int>(timeout_ms_) : -1)) < 0)
    if (errno != EINTR) return lose_errno("poll");
  if (n == 0) {
    last_error_ = "timed out waiting for the server";
    return false;
  }
  if (p.revents & POLLIN) receive_some(false);
  return true;  // send() reports POLLERR/POLLHUP itself
}

bool Client::receive_some(bool block) {
  if (read_dead_) return false;
  make_room();
  while (true) {
    ssize_t n = ::recv(fd_, in_.data() + in_end_, in_.size() - in_end_, block ? 0 : MSG_DONTWAIT);
    if (n > 0) {
      in_end_ += static_cast<std::size_t>(n);
      return true;
    }
    if (n == 0) {
      read_dead_ = true;
      return lose("connection closed by server");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return !block || timed_out();
    read_dead_ = true;
    return lose_errno("recv");
  }
}

bool Client::timed_out() {
  last_error_ = "timed out waiting for the server";
  return false;
}

// Ensures room for the rest of a partly received first frame, and at least kMinFree bytes.
void Client::make_room() {
  const std::size_t have = in_end_ - in_begin_;
  std::size_t want = kMinFree;
  if (have >= proto::kHeaderSize) {  // the first frame may be complete already
    const std::size_t first = proto::kHeaderSize + peek_length(in_.data() + in_begin_);
    if (first > have) want = std::max(want, first - have);
  }
  if (in_.size() - in_end_ >= want) return;
  if (in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, have);
    in_begin_ = 0;
    in_end_ = have;
  }
  if (in_.size() - in_end_ < want) in_.resize(std::max(in_end_ + want, kReadChunk));
}

void Client::consume(std::size_t size) {
  in_begin_ += size;
  if (in_begin_ != in_end_) return;
  in_begin_ = in_end_ = 0;
  if (in_.size() > kShrinkAbove) std::vector<std::uint8_t>().swap(in_);
}

// Blocks until a whole frame is buffered; *f views in_ until consume(*size).
bool Client::wait_frame(proto::Frame* f, std::size_t* size) {
  while (true) {
    std::span<const std::uint8_t> buffered(in_.data() + in_begin_, in_end_ - in_begin_);
    std::string why;
    switch (proto::parse_frame(buffered, kAcceptAnyBody, f, size, &why)) {
      case proto::Parse::ok: return true;
      case proto::Parse::need_more: break;
      default: return protocol_error(why);
    }
    if (!receive_some(true)) return false;
  }
}

bool Client::protocol_error(const std::string& why) {
  read_dead_ = write_dead_ = true;
  return lose("protocol error from server: " + why);
}

std::optional<Reply> Client::read_reply() {
  if (!kept_.empty()) {
    Reply r = std::move(kept_.front());
    kept_.pop_front();
    return r;
  }
  return read_wire();
}

std::optional<Reply> Client::read_wire() {
  flush();  // on failure, frames already sent to us are still delivered
  proto::Frame f{};
  std::size_t size = 0;
  if (!wait_frame(&f, &size)) return std::nullopt;
  std::optional<Reply> r = to_reply(f);
  consume(size);
  return r;
}

std::optional<Reply> Client::to_reply(const proto::Frame& f) {
  Reply r;
  r.call_id = f.header.call_id;
  switch (f.header.type) {
    case proto::Type::result: r.kind = ReplyKind::result; break;
    case proto::Type::pong: r.kind = ReplyKind::pong; break;
    case proto::Type::partial: r.kind = ReplyKind::partial; break;
    case proto::Type::error: return to_error_reply(f, std::move(r));
    default:
      protocol_error(std::string("unexpected ") + proto::type_name(f.header.type) + " frame");
      return std::nullopt;
  }
  r.data.assign(proto::as_chars(f.body));
  return r;
}

std::optional<Reply> Client::to_error_reply(const proto::Frame& f, Reply r) {
  proto::Error e{};
  std::string why;
  if (!proto::decode_error(f.body, &e, &why)) {
    protocol_error(why);
    return std::nullopt;
  }
  r.kind = ReplyKind::error;
  r.code = e.code;
  r.data.assign(e.message);
  return r;
}

// Reads until the reply to id (or a connection-level error); keeps the rest.
std::optional<Reply> Client::await(std::uint64_t id) {
  while (true) {
    std::optional<Reply> r = read_wire();
    if (!r || r->call_id == id || r->call_id == 0) return r;
    kept_.push_back(std::move(*r));
  }
}

bool Client::lose(std::string message) {
  last_error_ = std::move(message);
  return false;
}

// On a Unix socket, EPIPE and ECONNRESET only mean the server closed its end.
bool Client::lose_errno(const char* what) {
  if (errno == EPIPE || errno == ECONNRESET) return lose("connection closed by server");
  return lose(errno_text(what));
}

}  // namespace ferry
