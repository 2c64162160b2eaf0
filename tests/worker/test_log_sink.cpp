// The worker's log sink (worker/log_sink.hpp) over a real SOCK_SEQPACKET
// socketpair: one LOG message per line, cut, never a memfd, never blocking
// on a full channel, and every line it could not send counted on the next.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "ferry/plugin.h"
#include "worker/channel.hpp"
#include "worker/log_sink.hpp"

namespace ch = ferry::channel;
using ferry::worker::ChannelLogSink;

namespace {

// The two ends of a channel as a worker has them (blocking), closed at scope exit.
struct Pair {
  int host = -1, worker = -1;
  Pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    host = sv[0];
    worker = sv[1];
  }
  ~Pair() {
    ::close(host);
    ::close(worker);
  }
};

struct Got {
  ch::Header h{};
  std::string body;
};

// The next message on the host end, if one waits.
bool next(int fd, Got* got) {
  const auto r = ch::recv(fd, &got->h, &got->body, 1 << 20);
  REQUIRE(r.ok());
  return *r == ch::Received::message;
}

}  // namespace

TEST_CASE("each line is one LOG message with the call's channel id, its level and its text, cut", "[log_sink]") {
  Pair p;
  ::fcntl(p.host, F_SETFL, O_NONBLOCK);
  ChannelLogSink sink(p.worker);
  sink.write(FERRY_LOG_INFO, "ignored", 7, "hello");
  sink.write(99, "ignored", 0, "no level above error");
  sink.write(FERRY_LOG_DEBUG, "ignored", 0, "");  // nothing to send
  sink.write(FERRY_LOG_WARN, "ignored", 0, std::string(100000, 'x'));
  sink.dropped("ignored", 12);
  Got g;
  REQUIRE(next(p.host, &g));
  CHECK(g.h.type == ch::Type::log);
  CHECK(g.h.id == 7);
  CHECK(g.h.code == FERRY_LOG_INFO);
  CHECK(g.h.deadline_ms == 0);
  CHECK(g.body == "hello");
  REQUIRE(next(p.host, &g));
  CHECK(g.h.code == FERRY_LOG_ERROR);
  REQUIRE(next(p.host, &g));
  CHECK(g.h.flags == 0);  // inline, never a memfd
  CHECK(g.body == std::string(ch::kMaxLogLine, 'x') + " [cut]");
  REQUIRE(next(p.host, &g));  // the plugin's bound dropped 12: a count, no text
  CHECK(g.body.empty());
  CHECK(g.h.deadline_ms == 12);
  CHECK_FALSE(next(p.host, &g));
}

TEST_CASE("a full channel drops lines instead of blocking, and the next line that fits counts them",
          "[log_sink]") {
  Pair p;
  ::fcntl(p.host, F_SETFL, O_NONBLOCK);
  ChannelLogSink sink(p.worker);
  // Nobody reads: the channel fills up. Were a send to block, this would hang.
  int sent = 0;
  for (; sent < 1000000 && sink.pending() < 10; ++sent) sink.write(FERRY_LOG_INFO, "", 0, std::string(1000, 'l'));
  REQUIRE(sink.pending() == 10);
  Got g;
  int received = 0;
  while (next(p.host, &g)) ++received;
  CHECK(received + 10 == sent);
  sink.write(FERRY_LOG_INFO, "", 0, "room again");
  REQUIRE(next(p.host, &g));
  CHECK(g.body == "room again");
  CHECK(g.h.deadline_ms == 10);
  CHECK(sink.pending() == 0);
}

TEST_CASE("lines from many threads arrive whole, and every one is sent or counted", "[log_sink][tsan]") {
  Pair p;
  ChannelLogSink sink(p.worker);
  constexpr int kThreads = 4, kLines = 5000;
  std::atomic<bool> done{false};
  std::uint64_t received = 0, counted = 0;
  bool whole = true;
  std::thread reader([&] {
    ::fcntl(p.host, F_SETFL, O_NONBLOCK);
    Got g;
    while (true) {
      const bool finishing = done.load();  // before the read: what was sent by then is there
      const bool got = next(p.host, &g);
      if (!got && finishing) break;
      if (!got) continue;
      counted += std::uint64_t(g.h.deadline_ms);
      if (g.body.empty()) continue;
      ++received;
      whole = whole && g.body.size() == 600 && g.body.find_first_not_of(g.body[0]) == std::string::npos;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i) sink.write(FERRY_LOG_INFO, "", 0, std::string(600, char('a' + t)));
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  CHECK(whole);
  INFO(received << " received, " << counted << " counted on later lines, " << sink.pending() << " pending");
  CHECK(received + counted + sink.pending() == std::uint64_t(kThreads * kLines));
}
