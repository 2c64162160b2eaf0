// ferry-load: a lean closed-loop load generator, written to be much faster
// than what it measures. One thread, one epoll, C connections each keeping
// D calls in flight; replies are read in 256 KiB gulps, parsed in place,
// and answered with new calls in one write per connection per wake-up. It
// checks ferry-bench (the client must never be the bottleneck) and gives
// figures where a client's cost would hide the server's.
//
//   ferry-load --socket S [--connections 4] [--depth 16] [--calls N]
//              [--function demo.noop | --ping] [--payload BYTES] [--runs 3]
//
// Prints calls/s per run and min/median/max.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/wire.hpp"

namespace {

namespace proto = ferry::proto;

struct Options {
  std::string socket = "/tmp/ferry.sock";
  int connections = 4;
  int depth = 16;
  long calls = 400000;
  std::string function = "demo.noop";
  std::string payload;
  bool ping = false;
  int runs = 3;
};

struct Conn {
  int fd = -1;
  std::vector<std::uint8_t> in = std::vector<std::uint8_t>(256 * 1024);
  std::size_t have = 0;
  std::string out;
  std::uint64_t next_id = 1;
  long issued = 0;
};

int connect_unix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror(("connect " + path).c_str());
    std::exit(3);
  }
  return fd;
}

bool write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n <= 0) return false;
    done += std::size_t(n);
  }
  return true;
}

// Blocks for one whole frame (the HELLO answer); the connection is still blocking then.
bool read_hello(Conn& c) {
  while (true) {
    proto::Frame f;
    std::size_t used = 0;
    const auto p = proto::parse_frame({c.in.data(), c.have}, 1u << 30, &f, &used, nullptr);
    if (p == proto::Parse::ok) {
      c.have -= used;
      std::memmove(c.in.data(), c.in.data() + used, c.have);
      return f.header.type == proto::Type::hello;
    }
    if (p != proto::Parse::need_more) return false;
    const ssize_t n = read(c.fd, c.in.data() + c.have, c.in.size() - c.have);
    if (n <= 0) return false;
    c.have += std::size_t(n);
  }
}

void issue(const Options& o, Conn& c) {
  const std::uint64_t id = c.next_id++;
  if (o.ping) proto::encode_ping(c.out, id, o.payload);
  else proto::encode_call(c.out, id, o.function, o.payload, 0, proto::Priority::normal);
  ++c.issued;
}

// Parses every whole reply in c.in; returns how many, or -1 on an error reply.
long take_replies(Conn& c) {
  std::size_t pos = 0;
  long got = 0;
  while (true) {
    proto::Frame f;
    std::size_t used = 0;
    const auto p = proto::parse_frame({c.in.data() + pos, c.have - pos}, 1u << 30, &f, &used, nullptr);
    if (p != proto::Parse::ok) break;
    if (f.header.type == proto::Type::error) {
      std::fprintf(stderr, "ferry-load: an ERROR reply: %.*s\n", int(f.body.size() > 2 ? f.body.size() - 2 : 0),
                   reinterpret_cast<const char*>(f.body.data()) + 2);
      return -1;
    }
    pos += used;
    ++got;
  }
  c.have -= pos;
  std::memmove(c.in.data(), c.in.data() + pos, c.have);
  return got;
}

// One run: every connection sends D calls, then one more per reply until
// each has issued its share. Returns calls/s, or a negative value on failure.
double run(const Options& o) {
  const long share = o.calls / o.connections;
  std::vector<Conn> conns(std::size_t(o.connections));
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < conns.size(); ++i) {
    Conn& c = conns[i];
    c.fd = connect_unix(o.socket);
    std::string hello;
    proto::encode_hello(hello, proto::Hello{proto::kVersionMajor, proto::kVersionMinor, 0});
    if (!write_all(c.fd, hello) || !read_hello(c)) return -1;
    epoll_event ev{EPOLLIN, {.u64 = i}};
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  const auto start = std::chrono::steady_clock::now();
  for (Conn& c : conns) {
    for (int k = 0; k < o.depth && c.issued < share; ++k) issue(o, c);
    if (!write_all(c.fd, c.out)) return -1;
    c.out.clear();
  }
  long left = share * o.connections;
  epoll_event events[64];
  while (left > 0) {
    const int n = epoll_wait(ep, events, 64, 10000);
    if (n <= 0) return std::fprintf(stderr, "ferry-load: no reply for 10 s\n"), -1;
    for (int e = 0; e < n; ++e) {
      Conn& c = conns[events[e].data.u64];
      const ssize_t r = read(c.fd, c.in.data() + c.have, c.in.size() - c.have);
      if (r <= 0) return std::fprintf(stderr, "ferry-load: connection lost\n"), -1;
      c.have += std::size_t(r);
      const long got = take_replies(c);
      if (got < 0) return -1;
      left -= got;
      for (long k = 0; k < got && c.issued < share; ++k) issue(o, c);
      if (!c.out.empty() && !write_all(c.fd, c.out)) return -1;
      c.out.clear();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (Conn& c : conns) close(c.fd);
  close(ep);
  return double(share * o.connections) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ferry-load: a lean load generator for ferryd (one thread, epoll, pipelined calls)"};
  app.add_option("--socket,-s", o.socket, "ferryd's socket");
  app.add_option("--connections,-c", o.connections)->check(CLI::Range(1, 4096));
  app.add_option("--depth,-d", o.depth, "calls in flight per connection")->check(CLI::Range(1, 4096));
  app.add_option("--calls,-n", o.calls, "calls per run")->check(CLI::Range(1L, 1L << 40));
  app.add_option("--function,-f", o.function);
  app.add_option("--payload", o.payload, "the CALL payload (or PING body), as is");
  app.add_flag("--ping", o.ping, "send PING instead of CALL");
  app.add_option("--runs", o.runs)->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  std::vector<double> rates;
  for (int i = 0; i < o.runs; ++i) {
    const double r = run(o);
    if (r < 0) return 1;
    rates.push_back(r);
    std::printf("run %d: %.0f calls/s\n", i + 1, r);
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%s %dx%d: min/median/max = %.0f/%.0f/%.0f calls/s\n", o.ping ? "PING" : o.function.c_str(),
              o.connections, o.depth, rates.front(), rates[rates.size() / 2], rates.back());
  return 0;
}
