#include "load_engine.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <latch>
#include <thread>

#include "ferry/errors.h"
#include "ferry/wire.hpp"

namespace ferry::bench {
namespace {

namespace proto = ferry::proto;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kInBuf = 256 * 1024;
constexpr std::uint32_t kMaxReply = 1u << 30;

// One connection: its unparsed input and its calls in flight, by call_id - 1.
struct Conn {
  int fd = -1;
  std::vector<std::uint8_t> in;
  std::size_t have = 0;
  std::vector<Clock::time_point> sent_at;
  std::vector<std::uint8_t> busy;       // 1 while that id is in flight
  std::vector<std::uint64_t> free_ids;  // answered ids, reused first
  long share = 0, issued = 0;
};

// One thread's connections and where its latencies go.
struct Group {
  const LoadSpec* spec = nullptr;
  std::vector<Conn> conns;
  std::vector<std::uint8_t> batch;  // up to depth requests, written at once
  double* lat = nullptr;            // preallocated: one slot per call of this group
  std::size_t nlat = 0;
  long errors = 0, timeouts = 0;
  std::string failure;
  int ep = -1;
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= std::size_t(w);
  }
  return true;
}

// Connects and exchanges HELLOs (blocking); "" on success.
std::string open_conn(const LoadSpec& s, Conn& c) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, s.socket.c_str(), sizeof a.sun_path - 1);
  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c.fd < 0 || connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return errno_text(("connect " + s.socket).c_str());
  std::string hello;
  proto::encode_hello(hello, proto::Hello{});
  if (!write_all(c.fd, reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size())) return errno_text("hello");
  while (true) {
    proto::Frame f;
    std::size_t used = 0;
    if (proto::parse_frame({c.in.data(), c.have}, kMaxReply, &f, &used, nullptr) == proto::Parse::ok) {
      if (f.header.type != proto::Type::hello) return "the server refused the connection (no HELLO)";
      c.have -= used;
      std::memmove(c.in.data(), c.in.data() + used, c.have);
      return "";
    }
    const ssize_t r = read(c.fd, c.in.data() + c.have, c.in.size() - c.have);
    if (r <= 0) return "connection closed before the server's HELLO";
    c.have += std::size_t(r);
  }
}

// Writes up to k new requests on c in one write, reusing answered ids.
bool issue(Group& g, Conn& c, long k, Clock::time_point now) {
  const std::string& req = g.spec->request;
  k = std::min(k, c.share - c.issued);
  std::uint8_t* p = g.batch.data();
  for (long i = 0; i < k; ++i, p += req.size()) {
    const std::uint64_t id = c.free_ids.back();
    c.free_ids.pop_back();
    std::memcpy(p, req.data(), req.size());
    std::memcpy(p + 8, &id, 8);  // call_id, little-endian like the host
    c.sent_at[id - 1] = now;
    c.busy[id - 1] = 1;
  }
  c.issued += k;
  return k == 0 || write_all(c.fd, g.batch.data(), std::size_t(p - g.batch.data()));
}

// Takes one reply: checks its type and id, records its latency.
bool take(Group& g, Conn& c, const proto::Frame& f, Clock::time_point now) {
  const bool ok_type = g.spec->ping ? f.header.type == proto::Type::pong
                                    : f.header.type == proto::Type::result || f.header.type == proto::Type::error;
  const std::uint64_t id = f.header.call_id;
  if (!ok_type || id == 0 || id > c.busy.size() || !c.busy[id - 1]) {
    g.failure = "unexpected reply (type " + std::to_string(int(f.header.type)) + ", call_id " + std::to_string(id) + ")";
    return false;
  }
  if (f.header.type == proto::Type::error) {
    ++g.errors;
    if (f.body.size() >= 2 && (f.body[0] | f.body[1] << 8) == FERRY_E_TIMEOUT) ++g.timeouts;
  }
  c.busy[id - 1] = 0;
  c.free_ids.push_back(id);
  g.lat[g.nlat++] = std::chrono::duration<double, std::micro>(now - c.sent_at[id - 1]).count();
  return true;
}

// One wake-up of one connection: one read, every whole reply, one write. Returns replies taken, -1 on failure.
long serve(Group& g, Conn& c) {
  const ssize_t r = read(c.fd, c.in.data() + c.have, c.in.size() - c.have);
  if (r <= 0) return g.failure = r == 0 ? "the server closed a connection" : errno_text("read"), -1;
  c.have += std::size_t(r);
  const auto now = Clock::now();
  std::size_t pos = 0;
  long got = 0;
  while (true) {
    proto::Frame f;
    std::size_t used = 0;
    const auto p = proto::parse_frame({c.in.data() + pos, c.have - pos}, kMaxReply, &f, &used, nullptr);
    if (p == proto::Parse::need_more) break;
    if (p != proto::Parse::ok) return g.failure = "malformed reply", -1;
    if (!take(g, c, f, now)) return -1;
    pos += used;
    ++got;
  }
  c.have -= pos;
  if (c.have) std::memmove(c.in.data(), c.in.data() + pos, c.have);
  if (c.have == c.in.size()) c.in.resize(c.in.size() * 2);  // a reply larger than the buffer
  if (!issue(g, c, got, Clock::now())) return g.failure = errno_text("write"), -1;
  return got;
}

void setup(Group& g) {
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  const int depth = g.spec->depth;
  g.batch.resize(g.spec->request.size() * std::size_t(depth));
  for (std::size_t i = 0; i < g.conns.size(); ++i) {
    Conn& c = g.conns[i];
    c.in.resize(kInBuf);
    c.sent_at.resize(std::size_t(depth));
    c.busy.assign(std::size_t(depth), 0);
    for (int id = depth; id >= 1; --id) c.free_ids.push_back(std::uint64_t(id));
    if (g.failure.empty()) g.failure = open_conn(*g.spec, c);
    epoll_event ev{EPOLLIN, {.u64 = i}};
    if (g.failure.empty()) epoll_ctl(g.ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
}

void drive(Group& g) {
  long left = 0;
  for (Conn& c : g.conns) {
    left += c.share;
    if (!issue(g, c, g.spec->depth, Clock::now())) return void(g.failure = errno_text("write"));
  }
  epoll_event events[64];
  while (left > 0) {
    const int n = epoll_wait(g.ep, events, 64, g.spec->idle_limit_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return void(g.failure = "no reply for " + std::to_string(g.spec->idle_limit_ms) + " ms");
    for (int e = 0; e < n; ++e) {
      const long got = serve(g, g.conns[events[e].data.u64]);
      if (got < 0) return;
      left -= got;
    }
  }
}

void teardown(Group& g) {
  for (Conn& c : g.conns)
    if (c.fd >= 0) close(c.fd);
  if (g.ep >= 0) close(g.ep);
}

// Deals the connections to threads round-robin; each group's latencies get
// their own stretch of res.latencies_us.
std::vector<Group> plan(const LoadSpec& spec, PhaseResult& res) {
  const int threads = std::clamp(spec.threads, 1, spec.connections);
  const long share = spec.calls / spec.connections;
  std::vector<Group> groups(static_cast<std::size_t>(threads));
  res.latencies_us.resize(std::size_t(share) * std::size_t(spec.connections));
  std::size_t offset = 0;
  for (int t = 0; t < threads; ++t) {
    Group& g = groups[std::size_t(t)];
    g.spec = &spec;
    g.conns.resize(std::size_t((spec.connections - t + threads - 1) / threads));
    for (Conn& c : g.conns) c.share = share;
    g.lat = res.latencies_us.data() + offset;
    offset += g.conns.size() * std::size_t(share);
  }
  return groups;
}

// Sums the groups up; a failed group's unused latency slots are squeezed out.
void collect(const std::vector<Group>& groups, PhaseResult& res) {
  std::size_t kept = 0;
  for (const Group& g : groups) {
    if (!g.failure.empty()) res.failure = g.failure;
    res.errors += g.errors;
    res.timeouts += g.timeouts;
    std::copy_n(g.lat, g.nlat, res.latencies_us.data() + kept);  // moves down, never up
    kept += g.nlat;
  }
  res.latencies_us.resize(kept);
  std::sort(res.latencies_us.begin(), res.latencies_us.end());
}

}  // namespace

std::string call_request(std::string_view function, std::string_view payload, std::uint32_t timeout_ms) {
  std::string out;
  proto::encode_call(out, 0, function, payload, timeout_ms, proto::Priority::normal);
  return out;
}

std::string ping_request(std::string_view payload) {
  std::string out;
  proto::encode_ping(out, 0, payload);
  return out;
}

// Every thread connects its own connections, then all start together, so
// the clock covers only the load.
PhaseResult run_load(const LoadSpec& spec) {
  PhaseResult res;
  std::vector<Group> groups = plan(spec, res);
  std::latch ready(std::ptrdiff_t(groups.size()) + 1), go(1);
  std::vector<std::thread> pool;
  for (Group& g : groups) {
    pool.emplace_back([&g, &ready, &go] {
      setup(g);
      ready.count_down();
      go.wait();
      if (g.failure.empty()) drive(g);
      teardown(g);
    });
  }
  ready.arrive_and_wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& t : pool) t.join();
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  collect(groups, res);
  return res;
}

}  // namespace ferry::bench
