// Receive buffers the kernel takes one of only when data arrives on a socket
// (a provided buffer ring, Linux 5.19+): a recv waiting on an idle
// connection holds no memory. Loop thread only, like Ring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/status.hpp"
#include "loop/ring.hpp"

namespace ferry::loop {

class BufferRing {
 public:
  // Maps `count` buffers (a power of two, at most 32768) of `size` bytes and
  // registers them with `ring` as buffer group `group`; says why not where
  // the kernel has no buffer rings. `ring` must outlive it.
  static Result<std::unique_ptr<BufferRing>> create(Ring& ring, std::uint16_t group, unsigned count,
                                                    std::uint32_t size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  std::uint16_t group() const { return group_; }
  std::uint32_t size() const { return size_; }
  unsigned count() const { return count_; }
  // The first `len` bytes of buffer `id`, which a completion handed over.
  std::span<const std::uint8_t> bytes(std::uint16_t id, std::size_t len) const {
    return {base_ + std::size_t(id) * size_, len};
  }
  // Gives buffer `id` back for the kernel to fill again: exactly once per
  // completion that named it (IORING_CQE_F_BUFFER).
  void give_back(std::uint16_t id) {  // inline: once per read on the hot path
    io_uring_buf_ring_add(br_, base_ + std::size_t(id) * size_, size_, id, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br_, 1);
  }

 private:
  BufferRing(Ring& ring, std::uint16_t group, unsigned count, std::uint32_t size)
      : ring_(ring), group_(group), count_(count), size_(size) {}

  Ring& ring_;
  const std::uint16_t group_;
  const unsigned count_;
  const std::uint32_t size_;
  void* map_ = nullptr;  // the ring's entries, then the buffers
  std::size_t map_len_ = 0;
  io_uring_buf_ring* br_ = nullptr;
  std::uint8_t* base_ = nullptr;
  bool registered_ = false;
};

}  // namespace ferry::loop
