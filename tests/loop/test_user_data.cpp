// The io_uring user_data packing (loop/user_data.hpp): op | generation | slot
// round-trips at every field's limits without bleeding, and the 24-bit
// generation wraps; Reactor::tag routes a client's (sub, index) back to it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "loop/reactor.hpp"
#include "loop/user_data.hpp"

using ferry::loop::Op;
using ferry::loop::pack;
using ferry::loop::Tag;
using ferry::loop::unpack;

namespace {

constexpr std::uint32_t kGenMax = 0xffffff;  // the generation has 24 bits

const std::vector<Op> kOps = {Op::accept, Op::recv,         Op::send,     Op::wake,  Op::signal,
                              Op::cancel, Op::client, Op::accept_retry, Op::deadline, Op::drain};

void check_round_trip(Tag in) {
  INFO("op " << int(in.op) << " gen " << in.gen << " slot " << in.slot);
  const Tag out = unpack(pack(in));
  CHECK(out.op == in.op);
  CHECK(out.gen == in.gen);
  CHECK(out.slot == in.slot);
}

}  // namespace

TEST_CASE("every op round-trips with the extreme generations and slots", "[user_data]") {
  for (Op op : kOps) {
    for (std::uint32_t gen : {0u, 1u, 0x800000u, kGenMax}) {
      for (std::uint32_t slot : {0u, 1u, 0x80000000u, 0xffffffffu}) check_round_trip(Tag{op, gen, slot});
    }
  }
}

TEST_CASE("all 256 op values survive, whatever the other fields hold", "[user_data]") {
  for (int v = 0; v < 256; ++v) {
    check_round_trip(Tag{Op(v), kGenMax, 0xffffffffu});
    check_round_trip(Tag{Op(v), 0, 0});
  }
}

TEST_CASE("each field lands in its own bits and nowhere else", "[user_data]") {
  // One field at its maximum, the others zero: the packed value is exactly
  // that field's mask, so no field can spill into a neighbour.
  CHECK(pack(Tag{Op(0xff), 0, 0}) == 0xff00000000000000ull);
  CHECK(pack(Tag{Op(0), kGenMax, 0}) == 0x00ffffff00000000ull);
  CHECK(pack(Tag{Op(0), 0, 0xffffffffu}) == 0x00000000ffffffffull);
  CHECK(pack(Tag{Op(0xff), kGenMax, 0xffffffffu}) == ~0ull);
  CHECK(pack(Tag{Op::accept, 0, 0}) == 0x0100000000000000ull);
}

TEST_CASE("distinct tags pack to distinct values", "[user_data]") {
  // Neighbours in each field: an off-by-one shift or mask would collide them.
  const Tag base{Op::recv, 0x123456, 0x89abcdef};
  const std::uint64_t v = pack(base);
  CHECK(pack(Tag{Op::send, base.gen, base.slot}) != v);
  CHECK(pack(Tag{base.op, base.gen + 1, base.slot}) != v);
  CHECK(pack(Tag{base.op, base.gen, base.slot + 1}) != v);
  CHECK(pack(Tag{base.op, base.gen, base.slot ^ 0x80000000u}) != v);
  CHECK(pack(Tag{base.op, base.gen ^ 0x800000u, base.slot}) != v);
}

TEST_CASE("a generation past 24 bits wraps and never reaches the op", "[user_data]") {
  // The header keeps only the low 24 bits: gen 2^24 is gen 0 again, so the
  // server must count generations modulo 2^24 (server.cpp does).
  CHECK(pack(Tag{Op::recv, kGenMax + 1, 7}) == pack(Tag{Op::recv, 0, 7}));
  CHECK(pack(Tag{Op::recv, 0xffffffffu, 7}) == pack(Tag{Op::recv, kGenMax, 7}));
  const Tag t = unpack(pack(Tag{Op::send, 0xffffffffu, 0}));
  CHECK(t.op == Op::send);
  CHECK(t.gen == kGenMax);
  CHECK(t.slot == 0u);
}

namespace {

struct Recorder : ferry::loop::IoClient {
  int calls = 0;
  std::uint8_t sub = 0;
  std::uint16_t index = 0;
  std::int32_t res = 0;
  void on_io(std::uint8_t s, std::uint16_t i, const io_uring_cqe& cqe) override {
    ++calls;
    sub = s;
    index = i;
    res = cqe.res;
  }
};

}  // namespace

TEST_CASE("Reactor::tag carries a client's sub and index back to that client", "[user_data]") {
  ferry::loop::Reactor reactor;  // never initialised: dispatch needs no ring
  Recorder first, second;
  const std::uint32_t a = reactor.add(&first);
  const std::uint32_t b = reactor.add(&second);
  for (auto [sub, index] : {std::pair<int, int>{0, 0}, {0xff, 0xffff}, {0x80, 1}, {1, 0x8000}}) {
    const std::uint64_t ud = ferry::loop::Reactor::tag(b, std::uint8_t(sub), std::uint16_t(index));
    const Tag t = unpack(ud);
    REQUIRE(t.op == Op::client);
    io_uring_cqe cqe{};
    cqe.user_data = ud;
    cqe.res = sub + index;
    reactor.dispatch(t, cqe);
    CHECK(second.sub == sub);
    CHECK(second.index == index);
    CHECK(second.res == sub + index);
  }
  CHECK(second.calls == 4);
  CHECK(first.calls == 0);
  reactor.remove(a);  // a removed or unknown client's completion goes nowhere
  reactor.dispatch(unpack(ferry::loop::Reactor::tag(a, 1, 1)), io_uring_cqe{});
  reactor.dispatch(unpack(ferry::loop::Reactor::tag(99, 1, 1)), io_uring_cqe{});
  CHECK(first.calls == 0);
  CHECK(second.calls == 4);
}
