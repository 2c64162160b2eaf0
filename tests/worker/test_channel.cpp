// The worker-channel codec (worker/channel.hpp, docs/worker-channel.md) over
// real SOCK_SEQPACKET socketpairs: inline and memfd bodies, limits, and what a
// hostile worker can send (short datagrams, foreign or unsealed descriptors).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "worker/channel.hpp"

namespace ch = ferry::channel;
using ch::Header;
using ch::kInlineMax;
using ch::Type;

namespace {

const std::string kMalformed = "bad_request: recv: malformed message";

// recv()'s outcome as text: "message", "eof", "none", or "<code>: <message>".
std::string outcome(const ferry::Result<ch::Received>& r) {
  if (!r.ok()) return std::string(ferry_code_name(r.status().code())) + ": " + r.status().message();
  return *r == ch::Received::message ? "message" : *r == ch::Received::eof ? "eof" : "none";
}

constexpr std::size_t kMaxBody = 1 << 20;

// Both ends of one channel, closed at scope exit.
struct Pair {
  int host = -1, worker = -1;
  Pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    host = sv[0];
    worker = sv[1];
  }
  ~Pair() {
    if (host >= 0) ::close(host);
    if (worker >= 0) ::close(worker);
  }
};

// A body whose every byte depends on its position, so a shifted or cut body shows.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char('a' + (i * 7 + i / 251) % 26);
  return s;
}

// Open descriptors of this process: a refused message must not leak one.
int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// One datagram as a hostile peer may shape it: any header, any inline bytes,
// any descriptors attached.
void raw_send(int fd, const Header& h, const std::string& inline_body, const std::vector<int>& fds = {}) {
  iovec iov[2] = {{const_cast<Header*>(&h), sizeof h}, {const_cast<char*>(inline_body.data()), inline_body.size()}};
  std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = inline_body.empty() ? 1 : 2;
  if (!fds.empty()) {
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(::sendmsg(fd, &msg, MSG_NOSIGNAL) == ssize_t(sizeof h + inline_body.size()));
}

// A memfd holding `body`, sealed with `seals` (0: none).
int memfd_with(const std::string& body, unsigned seals) {
  const int fd = ::memfd_create("test-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, body.data(), body.size(), 0) == ssize_t(body.size()));
  if (seals != 0) REQUIRE(::fcntl(fd, F_ADD_SEALS, seals) == 0);
  return fd;
}

Header memfd_header(std::size_t body_len) {
  Header h{Type::reply};
  h.flags = ch::kFlagMemfd;
  h.id = 9;
  h.body_len = std::uint32_t(body_len);
  return h;
}

// Sends `body` from the worker end and receives it at the host end.
std::string round_trip(Pair& p, const std::string& body, Header* got) {
  Header h{Type::call};
  h.id = 5;
  REQUIRE(ch::send(p.worker, h, body).ok());
  std::string out = "stale";
  REQUIRE(outcome(ch::recv(p.host, got, &out, kMaxBody)) == "message");
  return out;
}

// The next message is still read whole: a refused one left nothing behind.
void check_in_step(Pair& p) {
  Header h{};
  CHECK(round_trip(p, "after", &h) == "after");
  CHECK(h.id == 5u);
}

constexpr unsigned kAllSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;

}  // namespace

TEST_CASE("the header has the layout docs/worker-channel.md gives", "[channel]") {
  CHECK(offsetof(Header, type) == 0);
  CHECK(offsetof(Header, flags) == 4);
  CHECK(offsetof(Header, id) == 8);
  CHECK(offsetof(Header, deadline_ms) == 16);
  CHECK(offsetof(Header, code) == 24);
  CHECK(offsetof(Header, body_len) == 28);
  CHECK(kInlineMax == 48 * 1024);
}

TEST_CASE("headers of every type round-trip with their id, deadline and code", "[channel]") {
  Pair p;
  for (Type type : {Type::spec, Type::ready, Type::failed, Type::call, Type::reply, Type::violation, Type::fatal}) {
    Header h{type};
    h.id = 0xfedcba9876543210ull + std::uint64_t(type);
    h.deadline_ms = std::int64_t(type) == 4 ? -1 : 0x7fffffff00000000ll + std::int64_t(type);
    h.code = 0xffff0000u | std::uint32_t(type);
    const std::string body = type == Type::violation ? "" : "body of " + std::to_string(int(type));
    REQUIRE(ch::send(p.host, h, body).ok());
    Header got{};
    std::string out;
    REQUIRE(outcome(ch::recv(p.worker, &got, &out, kMaxBody)) == "message");
    INFO("type " << int(type));
    CHECK(got.type == type);
    CHECK(got.id == h.id);
    CHECK(got.deadline_ms == h.deadline_ms);
    CHECK(got.code == h.code);
    CHECK(got.body_len == body.size());
    CHECK(out == body);
  }
}

TEST_CASE("bodies up to kInlineMax travel inline, whatever flag the caller set", "[channel]") {
  Pair p;
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, kInlineMax - 1, kInlineMax}) {
    Header h{Type::reply};
    h.flags = ch::kFlagMemfd;  // a stale flag must not make recv look for a memfd
    REQUIRE(ch::send(p.worker, h, pattern(n)).ok());
    Header got{};
    std::string out = "stale";
    REQUIRE(outcome(ch::recv(p.host, &got, &out, kMaxBody)) == "message");
    INFO("body of " << n << " bytes");
    CHECK((got.flags & ch::kFlagMemfd) == 0);
    CHECK(got.body_len == n);
    CHECK(out == pattern(n));
  }
}

TEST_CASE("a body over kInlineMax goes in a memfd sealed against every change", "[channel]") {
  Pair p;
  const std::string body = pattern(kInlineMax + 1);
  REQUIRE(ch::send(p.worker, Header{Type::reply}, body).ok());
  // Read the datagram by hand to see what was on the wire.
  Header h{};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&h, sizeof h};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  REQUIRE(::recvmsg(p.host, &msg, MSG_CMSG_CLOEXEC) == ssize_t(sizeof h));  // the header only
  CHECK((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0);
  CHECK((h.flags & ch::kFlagMemfd) != 0);
  CHECK(h.body_len == body.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  REQUIRE(c != nullptr);
  REQUIRE(c->cmsg_type == SCM_RIGHTS);
  int memfd = -1;
  std::memcpy(&memfd, CMSG_DATA(c), sizeof memfd);
  CHECK(::fcntl(memfd, F_GET_SEALS) == int(kAllSeals));
  std::string content(body.size(), '\0');
  CHECK(::pread(memfd, content.data(), content.size(), 0) == ssize_t(body.size()));
  CHECK(content == body);
  ::close(memfd);
}

TEST_CASE("bodies just over kInlineMax and large ones arrive whole through the memfd", "[channel]") {
  Pair p;
  const int fds_before = open_fds();
  for (std::size_t n : {kInlineMax + 1, kInlineMax + 4096, kMaxBody}) {
    Header got{};
    const std::string out = round_trip(p, pattern(n), &got);
    INFO("body of " << n << " bytes");
    CHECK((got.flags & ch::kFlagMemfd) != 0);
    CHECK(got.body_len == n);
    CHECK(out == pattern(n));
  }
  CHECK(open_fds() == fds_before);  // neither end keeps a memfd open
}

TEST_CASE("a body over max_body is refused, inline or in a memfd, and the channel goes on", "[channel]") {
  Pair p;
  for (std::size_t limit : {std::size_t{10}, kInlineMax + 100}) {
    Header got{};
    std::string out;
    REQUIRE(ch::send(p.worker, Header{Type::reply}, pattern(limit)).ok());
    CHECK(outcome(ch::recv(p.host, &got, &out, limit)) == "message");  // the limit itself is allowed
    CHECK(out == pattern(limit));
    const int fds_before = open_fds();
    REQUIRE(ch::send(p.worker, Header{Type::reply}, pattern(limit + 1)).ok());
    CHECK(outcome(ch::recv(p.host, &got, &out, limit)) == "bad_request: recv: message too large");
    CHECK(open_fds() == fds_before);  // a refused memfd is closed
  }
  check_in_step(p);
}

TEST_CASE("EOF reads as eof, an empty non-blocking channel as none, a closed peer as Broken pipe", "[channel]") {
  Pair p;
  Header h{};
  std::string body;
  const int flags = ::fcntl(p.host, F_GETFL);
  REQUIRE(::fcntl(p.host, F_SETFL, flags | O_NONBLOCK) == 0);
  CHECK(outcome(ch::recv(p.host, &h, &body, kMaxBody)) == "none");
  ::close(p.worker);
  p.worker = -1;
  CHECK(outcome(ch::recv(p.host, &h, &body, kMaxBody)) == "eof");
  CHECK(ch::send(p.host, Header{Type::call}, "x").message() == "send: Broken pipe");  // and no SIGPIPE
  CHECK(ch::send(p.host, Header{Type::call}, pattern(kInlineMax + 1)).message() == "send: Broken pipe");
}

TEST_CASE("short and inconsistent datagrams are malformed and never desynchronise", "[channel]") {
  Pair p;
  Header h{Type::reply};
  std::string body;
  SECTION("shorter than a header") {
    REQUIRE(::send(p.worker, "0123456789", 10, 0) == 10);
  }
  SECTION("a body_len larger than the inline body") {
    h.body_len = 100;
    raw_send(p.worker, h, pattern(50));
  }
  SECTION("inline bytes behind a body_len of 0") {
    raw_send(p.worker, h, pattern(50));
  }
  SECTION("a datagram larger than any valid one") {
    h.body_len = std::uint32_t(kInlineMax + 2);
    raw_send(p.worker, h, pattern(kInlineMax + 2));
  }
  SECTION("the memfd flag without a descriptor") {
    raw_send(p.worker, memfd_header(kInlineMax + 1), "");
  }
  CHECK(outcome(ch::recv(p.host, &h, &body, kMaxBody)) == kMalformed);
  check_in_step(p);
}

TEST_CASE("a memfd shorter than its body_len, even shrunk after sending, is refused", "[channel]") {
  Pair p;
  const std::string body = pattern(kInlineMax + 10);
  const int memfd = memfd_with(body, 0);  // unsealed: the worker may still shrink it
  raw_send(p.worker, memfd_header(body.size()), "", {memfd});
  REQUIRE(::ftruncate(memfd, 100) == 0);  // after sending, before the host reads
  ::close(memfd);
  Header h{};
  std::string out;
  CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == kMalformed);  // refused, and no SIGBUS
  check_in_step(p);
}

TEST_CASE("a descriptor on an inline message is closed, the message read", "[channel]") {
  Pair p;
  const int memfd = memfd_with("junk", kAllSeals);
  Header h{Type::reply};
  h.body_len = 2;
  raw_send(p.worker, h, "ok", {memfd});
  ::close(memfd);
  const int fds_before = open_fds();
  std::string out;
  CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == "message");
  CHECK(out == "ok");
  CHECK(open_fds() == fds_before);
}

// A message carries at most one descriptor. Two fit recv's control buffer
// (CMSG_SPACE(4) == CMSG_LEN(8) on 64-bit), three are cut (MSG_CTRUNC) after
// the kernel installed two: either way every one must be closed.
TEST_CASE("more descriptors than one are refused and none of them leaks", "[channel][hostile]") {
  for (std::size_t n : {std::size_t{2}, std::size_t{3}, std::size_t{8}}) {
    Pair p;
    std::vector<int> fds;
    for (std::size_t i = 0; i < n; ++i) fds.push_back(memfd_with("x", kAllSeals));
    raw_send(p.worker, memfd_header(1), "", fds);
    for (int fd : fds) ::close(fd);
    const int fds_before = open_fds();
    Header h{};
    std::string out;
    INFO(n << " descriptors");
    CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == kMalformed);
    CHECK(open_fds() == fds_before);
    check_in_step(p);
  }
}

TEST_CASE("a descriptor that cannot be read at an offset is refused", "[channel]") {
  Pair p;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  REQUIRE(::write(pipe_fds[1], "xxxx", 4) == 4);
  raw_send(p.worker, memfd_header(4), "", {pipe_fds[0]});
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  Header h{};
  std::string out;
  CHECK_FALSE(ch::recv(p.host, &h, &out, kMaxBody).ok());
  check_in_step(p);
}

// DESIGN.md: a memfd shared with an untrusted worker must be sealed. These
// three are what a hostile worker can send instead; each must be refused.

TEST_CASE("an unsealed memfd is refused", "[channel][hostile]") {
  Pair p;
  const std::string body = pattern(kInlineMax + 10);
  const int memfd = memfd_with(body, 0);
  raw_send(p.worker, memfd_header(body.size()), "", {memfd});
  ::close(memfd);
  Header h{};
  std::string out;
  CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == kMalformed);
  check_in_step(p);
}

TEST_CASE("a descriptor that is not a memfd is refused", "[channel][hostile]") {
  Pair p;
  const int zero = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);  // reads as any size at all
  REQUIRE(zero >= 0);
  raw_send(p.worker, memfd_header(kInlineMax + 10), "", {zero});
  ::close(zero);
  Header h{};
  std::string out;
  CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == kMalformed);
  check_in_step(p);
}

TEST_CASE("a sealed memfd longer than its body_len is refused, not cut", "[channel][hostile]") {
  Pair p;
  const std::string body = pattern(kInlineMax + 10);
  const int memfd = memfd_with(body, kAllSeals);
  raw_send(p.worker, memfd_header(body.size() - 1), "", {memfd});  // a size lie
  ::close(memfd);
  Header h{};
  std::string out;
  CHECK(outcome(ch::recv(p.host, &h, &out, kMaxBody)) == kMalformed);
  check_in_step(p);
}

TEST_CASE("send_many on a full non-blocking channel says how many went: the first ones, whole", "[channel]") {
  Pair p;
  REQUIRE(::fcntl(p.host, F_SETFL, ::fcntl(p.host, F_GETFL) | O_NONBLOCK) == 0);
  const std::string body = pattern(kInlineMax);
  std::vector<ch::Outgoing> burst;
  for (std::uint64_t id = 1; id <= 1000; ++id) burst.push_back(ch::Outgoing{Header{Type::call, 0, id}, body});
  const ferry::Result<std::size_t> sent = ch::send_many(p.host, burst.data(), burst.size());
  REQUIRE(sent.ok());
  REQUIRE(*sent > 0);
  REQUIRE(*sent < burst.size());  // a socket buffer holds far less than 1000 full bodies
  Header h{};
  std::string got;
  for (std::uint64_t id = 1; id <= *sent; ++id) {
    REQUIRE(outcome(ch::recv(p.worker, &h, &got, kMaxBody, false)) == "message");
    CHECK(h.id == id);
    CHECK(got == body);
  }
  CHECK(outcome(ch::recv(p.worker, &h, &got, kMaxBody, false)) == "none");
  const ferry::Result<std::size_t> rest = ch::send_many(p.host, burst.data() + *sent, 1);  // room again
  REQUIRE(rest.ok());
  CHECK(*rest == 1);
}
