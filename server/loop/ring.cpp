#include "loop/ring.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>

namespace ferry::loop {

Ring::~Ring() {
  if (ready_) io_uring_queue_exit(&ring_);
}

Status Ring::init(unsigned entries) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.flags |= IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  int rc = io_uring_queue_init_params(entries, &ring_, &p);
  mode_ = "single-issuer, deferred task work";
  if (rc == -EINVAL) {  // older kernel: no SINGLE_ISSUER / DEFER_TASKRUN
    p = io_uring_params{};
    rc = io_uring_queue_init_params(entries, &ring_, &p);
    mode_ = "basic";
  }
  if (rc < 0) {
    return Status::Errno("io_uring_queue_init", -rc).with_context(
        rc == -EPERM || rc == -ENOSYS ? "io_uring is disabled here (a container seccomp profile or the "
                                        "kernel.io_uring_disabled sysctl blocks it)"
                                      : "io_uring");
  }
  ready_ = true;
  return Status::Ok();
}

io_uring_sqe* Ring::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  for (int attempt = 0; s == nullptr && attempt < 100; ++attempt) {
    io_uring_submit(&ring_);  // submission queue full: hand what we have to the kernel
    s = io_uring_get_sqe(&ring_);
  }
  if (s == nullptr) {  // the kernel takes nothing: no way to go on without losing work
    std::fprintf(stderr, "ferryd: io_uring submission queue stays full; aborting\n");
    std::abort();
  }
  return s;
}

void Ring::accept_multishot(int fd, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::recv(int fd, void* buf, std::size_t len, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv(s, fd, buf, len, 0);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::recv_select(int fd, std::size_t max, std::uint16_t group, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv(s, fd, nullptr, max, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = group;
  io_uring_sqe_set_data64(s, ud);
}

void Ring::send(int fd, const void* buf, std::size_t len, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::poll_multishot(int fd, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_multishot(s, fd, POLLIN);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::poll_once(int fd, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, POLLIN);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::timeout_at(const __kernel_timespec* when, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout(s, const_cast<__kernel_timespec*>(when), 0, IORING_TIMEOUT_ABS);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::timeout_remove(std::uint64_t target_ud, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout_remove(s, target_ud, 0);
  io_uring_sqe_set_data64(s, ud);
}

void Ring::cancel(std::uint64_t target_ud, std::uint64_t ud) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel64(s, target_ud, 0);
  io_uring_sqe_set_data64(s, ud);
}

int Ring::register_buf_ring(io_uring_buf_ring* br, unsigned entries, std::uint16_t group) {
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br);
  reg.ring_entries = entries;
  reg.bgid = group;
  return io_uring_register_buf_ring(&ring_, &reg, 0);
}

int Ring::unregister_buf_ring(std::uint16_t group) { return io_uring_unregister_buf_ring(&ring_, group); }

int Ring::submit_and_wait() { return io_uring_submit_and_wait(&ring_, 1); }

}  // namespace ferry::loop
