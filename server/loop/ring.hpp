// A thin owner of one io_uring (liburing) and the few operations ferryd uses.
// Single-threaded: only the loop thread may touch it (IORING_SETUP_SINGLE_ISSUER).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.hpp"

namespace ferry::loop {

// An absolute time for timeout_at, from SystemClock's milliseconds.
inline __kernel_timespec at_ms(std::int64_t ms) { return __kernel_timespec{ms / 1000, (ms % 1000) * 1000000}; }

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Sets up the ring, or says why io_uring is unusable.
  Status init(unsigned entries);

  void accept_multishot(int fd, std::uint64_t ud);
  void recv(int fd, void* buf, std::size_t len, std::uint64_t ud);
  // A recv into a buffer the kernel takes from provided buffer group
  // `group` once data is there (IOSQE_BUFFER_SELECT); the completion's flags
  // name it (IORING_CQE_F_BUFFER), or it fails with -ENOBUFS when none is free.
  void recv_select(int fd, std::size_t max, std::uint16_t group, std::uint64_t ud);
  void send(int fd, const void* buf, std::size_t len, std::uint64_t ud);
  void poll_multishot(int fd, std::uint64_t ud);
  void poll_once(int fd, std::uint64_t ud);
  void cancel(std::uint64_t target_ud, std::uint64_t ud);
  // A timer firing at `when` (CLOCK_MONOTONIC); `when` must stay valid until submitted.
  void timeout_at(const __kernel_timespec* when, std::uint64_t ud);
  void timeout_remove(std::uint64_t target_ud, std::uint64_t ud);

  // Submits queued operations and waits for at least one completion.
  // Returns 0 or -errno (-EINTR is harmless).
  int submit_and_wait();

  // Calls f(cqe) for every ready completion, then marks them seen.
  template <class F>
  unsigned for_each_completion(F&& f) {
    unsigned head, n = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      f(*cqe);
      ++n;
    }
    io_uring_cq_advance(&ring_, n);
    return n;
  }

  const char* mode() const { return mode_; }

  // Registers (unregisters) a provided buffer ring as group `group`: 0 or -errno.
  int register_buf_ring(io_uring_buf_ring* br, unsigned entries, std::uint16_t group);
  int unregister_buf_ring(std::uint16_t group);

 private:
  io_uring_sqe* sqe();

  io_uring ring_{};
  bool ready_ = false;
  const char* mode_ = "";
};

}  // namespace ferry::loop
