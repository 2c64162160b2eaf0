// The loop's io_uring plus a table of components (process pools) that own
// operations on it. Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "loop/ring.hpp"
#include "loop/user_data.hpp"

namespace ferry::loop {

// A component that receives completions of the operations it submitted with
// a tag from Reactor::tag(). `sub` and `index` are its own (8 and 16 bits).
class IoClient {
 public:
  virtual ~IoClient() = default;
  virtual void on_io(std::uint8_t sub, std::uint16_t index, const io_uring_cqe& cqe) = 0;
};

class Reactor {
 public:
  // Sets up the ring, or says why io_uring is unusable.
  Status init(unsigned entries) { return ring_.init(entries); }
  Ring& ring() { return ring_; }

  // Registers a client; returns its id for tag(). Clients outlive the loop.
  std::uint32_t add(IoClient* c) {
    clients_.push_back(c);
    return std::uint32_t(clients_.size() - 1);
  }
  void remove(std::uint32_t id) { clients_[id] = nullptr; }
  static std::uint64_t tag(std::uint32_t client, std::uint8_t sub, std::uint16_t index) {
    return pack(Tag{Op::client, (std::uint32_t(sub) << 16) | index, client});
  }
  // Routes a completion tagged Op::client.
  void dispatch(const Tag& t, const io_uring_cqe& cqe) {
    if (t.slot < clients_.size() && clients_[t.slot] != nullptr) {
      clients_[t.slot]->on_io(std::uint8_t(t.gen >> 16), std::uint16_t(t.gen & 0xffff), cqe);
    }
  }

 private:
  Ring ring_;
  std::vector<IoClient*> clients_;
};

}  // namespace ferry::loop
