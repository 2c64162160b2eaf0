#include "worker/channel.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ferry::channel {
namespace {

constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;

// A sealed memfd holding `body`, or -errno.
int make_memfd(std::string_view body) {
  const int fd = memfd_create("ferry-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  std::size_t off = 0;
  while (off < body.size()) {
    const ssize_t n = pwrite(fd, body.data() + off, body.size() - off, off_t(off));
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      close(fd);
      return -err;
    }
    off += std::size_t(n);
  }
  if (fcntl(fd, F_ADD_SEALS, kSeals) != 0) {
    const int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

int send_with_fd(int fd, const Header& h, int body_fd) {
  iovec iov{const_cast<Header*>(&h), sizeof h};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &body_fd, sizeof(int));
  const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  return n == ssize_t(sizeof h) ? 0 : (n < 0 ? -errno : -EMSGSIZE);
}

// A body descriptor the host may read: a memfd sealed against shrinking,
// growing and writing (DESIGN.md), exactly len bytes long; else -EBADMSG.
int check_memfd(int memfd, std::size_t len) {
  constexpr int kNeeded = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  const int seals = fcntl(memfd, F_GET_SEALS);
  struct stat st {};
  if (seals < 0 || (seals & kNeeded) != kNeeded || fstat(memfd, &st) != 0) return -EBADMSG;
  return std::uint64_t(st.st_size) == len ? 1 : -EBADMSG;
}

// Reads exactly h.body_len bytes from the memfd; never maps it.
int read_memfd(int memfd, std::size_t len, std::string* body) {
  if (const int rc = check_memfd(memfd, len); rc < 0) return rc;
  body->resize(len);
  std::size_t off = 0;
  while (off < len) {
    const ssize_t n = pread(memfd, body->data() + off, len - off, off_t(off));
    if (n <= 0) return n < 0 ? -errno : -EBADMSG;
    off += std::size_t(n);
  }
  return 1;
}

// The one descriptor a message may carry, or -1. Any others are closed at
// once (a hostile worker must not fill the host's fd table) and *extra is set.
int received_fd(msghdr& msg, bool* extra) {
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (fd < 0) {
        fd = got;
      } else {
        close(got);
        *extra = true;
      }
    }
  }
  return fd;
}

// One datagram: the header, then the body (at most kInlineMax bytes).
int send_inline(int fd, Header h, std::string_view body, int flags) {
  h.body_len = std::uint32_t(body.size());
  h.flags &= ~kFlagMemfd;
  iovec iov[2] = {{&h, sizeof h}, {const_cast<char*>(body.data()), body.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = body.empty() ? 1 : 2;
  const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
  if (n < 0) return -errno;
  return std::size_t(n) == sizeof h + body.size() ? 0 : -EMSGSIZE;
}

int send_rc(int fd, const Header& h_in, std::string_view body) {
  Header h = h_in;
  h.body_len = std::uint32_t(body.size());
  if (body.size() > kInlineMax) {
    h.flags |= kFlagMemfd;
    const int memfd = make_memfd(body);
    if (memfd < 0) return memfd;
    const int rc = send_with_fd(fd, h, memfd);
    close(memfd);
    return rc;
  }
  return send_inline(fd, h, body, 0);
}

int recv_rc(int fd, Header* h, std::string* body, std::size_t max_body, int flags) {
  thread_local std::string buf(sizeof(Header) + kInlineMax + 1, '\0');
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  const ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | flags);
  if (n < 0) return -errno;
  if (n == 0) return 0;
  bool extra = false;
  const int memfd = received_fd(msg, &extra);
  int rc = 1;
  if (std::size_t(n) < sizeof(Header) || extra || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    rc = -EBADMSG;
  } else {
    std::memcpy(h, buf.data(), sizeof *h);  // copy out before validating
    const std::size_t inline_len = std::size_t(n) - sizeof(Header);
    if (h->body_len > max_body) rc = -EMSGSIZE;
    else if ((h->flags & kFlagMemfd) != 0) rc = memfd < 0 ? -EBADMSG : read_memfd(memfd, h->body_len, body);
    else if (inline_len != h->body_len) rc = -EBADMSG;
    else body->assign(buf.data() + sizeof(Header), inline_len);
  }
  if (memfd >= 0) close(memfd);
  return rc;
}

// Sends msgs[0..n), all inline, in one sendmmsg() (the kernel may take
// fewer: the rest go in the next). *done counts the messages that went,
// also when it fails.
int send_inline_many(int fd, const Outgoing* msgs, std::size_t n, std::size_t* done) {
  constexpr std::size_t kMax = 64;
  Header headers[kMax];
  iovec iov[kMax][2];
  mmsghdr mm[kMax] = {};
  while (n > 0) {
    const std::size_t k = std::min(n, kMax);
    for (std::size_t i = 0; i < k; ++i) {
      headers[i] = msgs[i].header;
      headers[i].body_len = std::uint32_t(msgs[i].body.size());
      headers[i].flags &= ~kFlagMemfd;
      iov[i][0] = {&headers[i], sizeof(Header)};
      iov[i][1] = {const_cast<char*>(msgs[i].body.data()), msgs[i].body.size()};
      mm[i].msg_hdr = msghdr{};
      mm[i].msg_hdr.msg_iov = iov[i];
      mm[i].msg_hdr.msg_iovlen = msgs[i].body.empty() ? 1 : 2;
    }
    const int sent = sendmmsg(fd, mm, unsigned(k), MSG_NOSIGNAL);
    if (sent <= 0) return sent < 0 ? -errno : -EIO;
    msgs += sent;
    n -= std::size_t(sent);
    *done += std::size_t(sent);
  }
  return 0;
}

// The helpers above speak -errno, as the syscalls do; callers get a Status.
Status status_of(int rc, const char* what) {
  if (rc == -EBADMSG) return Status(FERRY_E_BAD_REQUEST, std::string(what) + ": malformed message");
  if (rc == -EMSGSIZE) return Status(FERRY_E_BAD_REQUEST, std::string(what) + ": message too large");
  return Status::Errno(what, -rc);
}

}  // namespace

Status send(int fd, const Header& h, std::string_view body) {
  const int rc = send_rc(fd, h, body);
  return rc == 0 ? Status::Ok() : status_of(rc, "send");
}

Status send_nowait(int fd, const Header& h, std::string_view body) {
  if (body.size() > kInlineMax) return status_of(-EMSGSIZE, "send");
  const int rc = send_inline(fd, h, body, MSG_DONTWAIT);
  return rc == 0 ? Status::Ok() : status_of(rc, "send");
}

Result<std::size_t> send_many(int fd, const Outgoing* msgs, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    std::size_t run = 0;  // inline messages from `done` on
    while (done + run < n && msgs[done + run].body.size() <= kInlineMax) ++run;
    const int rc = run > 0 ? send_inline_many(fd, msgs + done, run, &done) : send_rc(fd, msgs[done].header, msgs[done].body);
    if (rc == -EAGAIN) return done;  // full: the rest wait for the peer to read
    if (rc != 0) return status_of(rc, "send");
    if (run == 0) ++done;
  }
  return done;
}

Result<Received> recv(int fd, Header* h, std::string* body, std::size_t max_body, bool wait) {
  const int rc = recv_rc(fd, h, body, max_body, wait ? 0 : MSG_DONTWAIT);
  if (rc == 1) return Received::message;
  if (rc == 0) return Received::eof;
  if (rc == -EAGAIN) return Received::none;
  return status_of(rc, "recv");
}

}  // namespace ferry::channel
