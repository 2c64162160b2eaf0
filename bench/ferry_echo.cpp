// ferry-echo: the limit every benchmark figure is reported against. A server
// that speaks Ferry's frames (docs/protocol.md) on a Unix socket and answers
// everything inline on one thread: HELLO with its own HELLO, PING with PONG,
// and every CALL with a RESULT carrying the CALL's payload. No queue, no
// hand-off, no plugin: what ferryd would cost if it did nothing but frame I/O.
//
//   ferry-echo [--socket /tmp/ferry-echo.sock]
//
// One thread, one epoll (level-triggered); per connection one read and one
// write per wake-up, replies built in place in a buffer that only grows.
// SIGINT or SIGTERM closes every connection and removes the socket.
// Single-threaded by design; not a test of anything but the client and kernel.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

enum : std::uint8_t { kHello = 1, kCall = 2, kResult = 3, kError = 4, kPing = 5, kPong = 6, kCancel = 7 };
constexpr std::size_t kHeader = 16;
constexpr std::uint32_t kMaxBody = 16u << 20;      // what our HELLO announces
constexpr std::size_t kOutBound = 8u << 20;        // stop reading a client that does not read

std::uint32_t get32(const std::uint8_t* p) { std::uint32_t v; std::memcpy(&v, p, 4); return v; }  // LE host
std::uint16_t get16(const std::uint8_t* p) { std::uint16_t v; std::memcpy(&v, p, 2); return v; }

// One client: its unparsed input and its unsent output. Buffers only grow.
struct Conn {
  int fd = -1;
  std::vector<std::uint8_t> in = std::vector<std::uint8_t>(256 * 1024);
  std::size_t have = 0;
  std::vector<std::uint8_t> out = std::vector<std::uint8_t>(256 * 1024);
  std::size_t out_begin = 0, out_end = 0;
  bool greeted = false;
  std::uint32_t interest = EPOLLIN;  // what epoll watches for
};

// Appends one frame (header + body) to c.out, growing it only when needed.
void put_frame(Conn& c, std::uint8_t type, const std::uint8_t* id, const std::uint8_t* body, std::size_t n) {
  if (c.out_end + kHeader + n > c.out.size()) c.out.resize(std::max(c.out.size() * 2, c.out_end + kHeader + n));
  std::uint8_t* p = c.out.data() + c.out_end;
  const std::uint32_t len = std::uint32_t(n);
  std::memcpy(p, &len, 4);
  p[4] = type;
  p[5] = p[6] = p[7] = 0;
  std::memcpy(p + 8, id, 8);
  if (n) std::memcpy(p + kHeader, body, n);
  c.out_end += kHeader + n;
}

// Answers one whole frame; false means the client broke the protocol.
bool answer(Conn& c, const std::uint8_t* f) {
  const std::uint32_t n = get32(f);
  const std::uint8_t type = f[4];
  const std::uint8_t* body = f + kHeader;
  if (f[5] != 0 || f[6] != 0 || f[7] != 0) return false;
  if (!c.greeted) {
    if (type != kHello || n < 8 || get16(body) != 1) return false;
    const std::uint8_t hello[8] = {1, 0, 2, 0, 0, 0, 0, 1};  // 1.2, 16 MiB
    c.greeted = true;
    put_frame(c, kHello, f + 8, hello, sizeof hello);
    return true;
  }
  switch (type) {
    case kCall: {
      if (n < 8) return false;
      const std::uint16_t name_len = get16(body + 6);
      if (name_len == 0 || 8u + name_len > n) return false;
      put_frame(c, kResult, f + 8, body + 8 + name_len, n - 8 - name_len);
      return true;
    }
    case kPing: put_frame(c, kPong, f + 8, body, n); return true;
    case kCancel: return true;  // every call is already answered
    default: return false;
  }
}

// Answers every whole frame in c.in and keeps a partial one for the next read.
bool answer_all(Conn& c) {
  std::size_t pos = 0;
  while (c.have - pos >= kHeader) {
    const std::uint32_t n = get32(c.in.data() + pos);
    if (n > kMaxBody) return false;
    if (c.have - pos < kHeader + n) {
      if (kHeader + n > c.in.size()) c.in.resize(kHeader + n);
      break;
    }
    if (!answer(c, c.in.data() + pos)) return false;
    pos += kHeader + n;
  }
  c.have -= pos;
  if (c.have) std::memmove(c.in.data(), c.in.data() + pos, c.have);
  return true;
}

// One write of everything pending; false when the connection is gone.
bool flush(Conn& c) {
  while (c.out_begin < c.out_end) {
    const ssize_t w = write(c.fd, c.out.data() + c.out_begin, c.out_end - c.out_begin);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) break;
    if (w <= 0) return false;
    c.out_begin += std::size_t(w);
    break;  // one write per wake-up; EPOLLOUT brings us back for the rest
  }
  if (c.out_begin == c.out_end) c.out_begin = c.out_end = 0;
  return true;
}

class Server {
 public:
  explicit Server(std::string path) : path_(std::move(path)) {}
  ~Server();
  bool open();
  int run();

 private:
  void accept_all();
  void serve(int fd, std::uint32_t events);
  void update_interest(Conn& c);
  void drop(int fd);

  std::string path_;
  int listen_fd_ = -1, ep_ = -1, sig_fd_ = -1;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
};

bool Server::open() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sig_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path_.size() >= sizeof a.sun_path) return std::fprintf(stderr, "ferry-echo: socket path too long\n"), false;
  std::memcpy(a.sun_path, path_.c_str(), path_.size() + 1);
  unlink(path_.c_str());
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listen_fd_, 4096) != 0) {
    std::fprintf(stderr, "ferry-echo: listen on %s: %s\n", path_.c_str(), std::strerror(errno));
    return false;
  }
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{EPOLLIN, {.fd = listen_fd_}};
  epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = sig_fd_;
  epoll_ctl(ep_, EPOLL_CTL_ADD, sig_fd_, &ev);
  return true;
}

Server::~Server() {
  for (auto& [fd, c] : conns_) close(fd);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
  if (ep_ >= 0) close(ep_);
  if (sig_fd_ >= 0) close(sig_fd_);
}

void Server::accept_all() {
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    epoll_event ev{EPOLLIN, {.fd = fd}};
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    conns_[fd] = std::move(c);
  }
}

void Server::drop(int fd) {
  epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_.erase(fd);
}

// Reads only while the client's unsent output is under the bound; asks for
// EPOLLOUT only while output is pending.
void Server::update_interest(Conn& c) {
  const std::size_t pending = c.out_end - c.out_begin;
  const std::uint32_t want = (pending < kOutBound ? EPOLLIN : 0u) | (pending ? EPOLLOUT : 0u);
  if (want == c.interest) return;
  c.interest = want;
  epoll_event ev{want, {.fd = c.fd}};
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Server::serve(int fd, std::uint32_t events) {
  Conn& c = *conns_.at(fd);
  if (events & EPOLLIN) {
    const ssize_t r = read(fd, c.in.data() + c.have, c.in.size() - c.have);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return drop(fd);
    if (r > 0) c.have += std::size_t(r);
    if (!answer_all(c)) return drop(fd);
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    return drop(fd);
  }
  if (!flush(c)) return drop(fd);
  update_interest(c);
}

int Server::run() {
  std::fprintf(stderr, "ferry-echo: listening on %s\n", path_.c_str());
  epoll_event events[256];
  while (true) {
    const int n = epoll_wait(ep_, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::perror("ferry-echo: epoll_wait"), 1;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == sig_fd_) return 0;
      if (fd == listen_fd_) accept_all();
      else if (conns_.count(fd)) serve(fd, events[i].events);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-echo: an inline echo server speaking Ferry's frames (the benchmark's limit)"};
  std::string socket_path = "/tmp/ferry-echo.sock";
  app.add_option("--socket,-s", socket_path, "Unix socket to listen on")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  Server s(socket_path);
  if (!s.open()) return 1;
  return s.run();
}
