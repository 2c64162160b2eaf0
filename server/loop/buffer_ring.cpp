#include "loop/buffer_ring.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace ferry::loop {

Result<std::unique_ptr<BufferRing>> BufferRing::create(Ring& ring, std::uint16_t group, unsigned count,
                                                       std::uint32_t size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return Status::Error("provided buffers: count must be a power of two up to 32768");
  }
  std::unique_ptr<BufferRing> b(new BufferRing(ring, group, count, size));
  const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
  const std::size_t entries = (count * sizeof(io_uring_buf) + page - 1) / page * page;
  b->map_len_ = entries + std::size_t(count) * size;
  // Pages are touched only once the kernel fills a buffer.
  b->map_ = mmap(nullptr, b->map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b->map_ == MAP_FAILED) {
    b->map_ = nullptr;
    return Status::Errno("provided buffers: mmap");
  }
  b->br_ = static_cast<io_uring_buf_ring*>(b->map_);
  b->base_ = static_cast<std::uint8_t*>(b->map_) + entries;
  io_uring_buf_ring_init(b->br_);
  if (const int rc = ring.register_buf_ring(b->br_, count, group); rc < 0) {
    return Status::Errno("io_uring_register_buf_ring", -rc);
  }
  b->registered_ = true;
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned id = 0; id < count; ++id) {
    io_uring_buf_ring_add(b->br_, b->base_ + std::size_t(id) * size, size, std::uint16_t(id), mask, int(id));
  }
  io_uring_buf_ring_advance(b->br_, int(count));
  return b;
}

BufferRing::~BufferRing() {
  if (registered_) ring_.unregister_buf_ring(group_);
  if (map_ != nullptr) munmap(map_, map_len_);
}

}  // namespace ferry::loop
