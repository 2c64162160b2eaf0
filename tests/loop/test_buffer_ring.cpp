// BufferRing on a real io_uring: a recv takes a provided buffer only with
// data, a recv that finds none fails -ENOBUFS, and a buffer given back is
// used again. Skips where io_uring or buffer rings are refused.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "loop/buffer_ring.hpp"
#include "loop/ring.hpp"

using ferry::loop::BufferRing;
using ferry::loop::Ring;

namespace {

struct Done {
  std::uint64_t ud;
  int res;
  int buffer;  // -1: none
};

// Waits for `n` completions.
std::vector<Done> wait_for(Ring& ring, std::size_t n) {
  std::vector<Done> done;
  while (done.size() < n) {
    const int rc = ring.submit_and_wait();
    REQUIRE((rc >= 0 || rc == -EINTR));
    ring.for_each_completion([&](const io_uring_cqe& c) {
      const int id = (c.flags & IORING_CQE_F_BUFFER) != 0 ? int(c.flags >> IORING_CQE_BUFFER_SHIFT) : -1;
      done.push_back({c.user_data, c.res, id});
    });
  }
  return done;
}

struct Pair {
  int fd[2] = {-1, -1};
  Pair() { REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~Pair() {
    close(fd[0]);
    close(fd[1]);
  }
  void send(const std::string& s) { REQUIRE(write(fd[1], s.data(), s.size()) == ssize_t(s.size())); }
};

std::unique_ptr<BufferRing> make(Ring& ring, unsigned count) {
  if (const auto st = ring.init(8); !st.ok()) {
    std::fprintf(stderr, "SKIP test_buffer_ring: %s\n", st.message().c_str());
    std::exit(77);
  }
  auto b = BufferRing::create(ring, 3, count, 64);
  if (!b.ok()) {
    std::fprintf(stderr, "SKIP test_buffer_ring: %s\n", b.status().message().c_str());
    std::exit(77);
  }
  return std::move(b).value();
}

}  // namespace

TEST_CASE("buffer ring: reads take buffers only with data; none left is -ENOBUFS; a buffer given back serves again",
          "[loop]") {
  Ring ring;
  auto buffers = make(ring, 2);
  Pair idle, a, b, c;
  ring.recv_select(idle.fd[0], 64, buffers->group(), 100);  // no data: takes no buffer
  a.send("a");
  b.send("bb");
  ring.recv_select(a.fd[0], 64, buffers->group(), 1);
  ring.recv_select(b.fd[0], 64, buffers->group(), 2);
  auto done = wait_for(ring, 2);
  for (const Done& d : done) {
    REQUIRE(d.buffer >= 0);
    const auto bytes = buffers->bytes(std::uint16_t(d.buffer), std::size_t(d.res));
    CHECK(std::string(bytes.begin(), bytes.end()) == (d.ud == 1 ? "a" : "bb"));
  }
  CHECK(done[0].buffer != done[1].buffer);

  c.send("ccc");  // both buffers are out
  ring.recv_select(c.fd[0], 64, buffers->group(), 3);
  done = wait_for(ring, 1);
  CHECK(done[0].ud == 3);
  CHECK(done[0].res == -ENOBUFS);
  CHECK(done[0].buffer == -1);

  buffers->give_back(0);
  ring.recv_select(c.fd[0], 64, buffers->group(), 3);
  done = wait_for(ring, 1);
  REQUIRE(done[0].ud == 3);
  REQUIRE(done[0].buffer == 0);
  const auto bytes = buffers->bytes(0, std::size_t(done[0].res));
  CHECK(std::string(bytes.begin(), bytes.end()) == "ccc");

  buffers->give_back(1);
  idle.send("late");  // the read waiting since the start takes a buffer only now
  done = wait_for(ring, 1);
  CHECK(done[0].ud == 100);
  CHECK(done[0].res == 4);
  CHECK(done[0].buffer >= 0);
}

TEST_CASE("buffer ring: the count must be a power of two", "[loop]") {
  Ring ring;
  REQUIRE(ring.init(8).ok());
  CHECK_FALSE(BufferRing::create(ring, 0, 3, 64).ok());
  CHECK(BufferRing::create(ring, 0, 4, 64).ok());
}
