// Fixture "logs": a plugin that logs, prints and floods, for the tests of
// where its lines end up (tests/integration/test_logs.cpp):
//   hello(tag)          -> tag, after ctx.info("hello <tag>")
//   quiet()             -> true, logging nothing
//   background(tag)     -> true, after a std::thread of the plugin logged
//                          "background <tag>" through plugin.logger()
//   flood(n)            -> CLOCK_MONOTONIC microseconds when it finished
//                          ctx.info() of n lines "flood <i>"
//   print(long_len)     -> true, after printing "printf line" (printf),
//                          "cout line" (std::cout), "cerr line" (std::cerr),
//                          a line of long_len 'x' on stdout and
//                          "unfinished line" on stderr without a newline
//   print_flood(mib)    -> bytes written: mib MiB of numbered lines on stdout
//   raw_line(level, n)  -> true, after writing one LOG message straight to
//                          the channel (fd 3), bypassing the SDK: level
//                          `level`, text "raw <ESC>[31mred<LF>forged" and n 'y'
//   raw_flood()         -> LOG messages written to fd 3 until cancelled
// The raw_* functions refuse to run anywhere but in a ferry-worker.
#include <errno.h>
#include <sys/socket.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include <ferry/plugin.hpp>

namespace {

// The worker channel's header (docs/worker-channel.md), as a plugin that
// ignores the SDK would write it.
struct RawHeader {
  std::uint32_t type = 8;  // LOG
  std::uint32_t flags = 0;
  std::uint64_t id = 0;
  std::int64_t deadline_ms = 0;
  std::uint32_t code = 0;
  std::uint32_t body_len = 0;
};
static_assert(sizeof(RawHeader) == 32);

// fd 3 is the channel only in a ferry-worker; in ferryd it is anything.
void require_worker() {
  int type = 0;
  socklen_t len = sizeof type;
  if (std::string(program_invocation_short_name) != "ferry-worker" ||
      getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
    throw ferry::Error(FERRY_E_BAD_REQUEST, "raw_* runs only in a ferry-worker");
  }
}

bool send_raw(std::uint32_t level, const std::string& text) {
  RawHeader h;
  h.code = level;
  h.body_len = std::uint32_t(text.size());
  std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
  msg += text;
  return send(3, msg.data(), msg.size(), MSG_NOSIGNAL) == ssize_t(msg.size());
}

std::int64_t monotonic_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::int64_t print_flood(std::int64_t mib) {
  const std::int64_t total = mib << 20;
  std::int64_t written = 0;
  char line[128];
  for (std::int64_t i = 0; written < total; ++i) {
    const int n = std::snprintf(line, sizeof line, "spam %lld %s\n", static_cast<long long>(i),
                                "................................................................");
    if (std::fwrite(line, 1, std::size_t(n), stdout) != std::size_t(n)) break;
    written += n;
  }
  std::fflush(stdout);
  return written;
}

}  // namespace

FERRY_PLUGIN("logs", "1.0.0") {
  const ferry::Logger logger = plugin.logger();
  plugin.def("hello", [](ferry::Context& ctx, std::string tag) {
    ctx.info("hello " + tag);
    return tag;
  });
  plugin.def("quiet", [] { return true; });
  plugin.def("background", [logger](std::string tag) {
    std::thread([logger, tag] { logger.info("background " + tag); }).join();
    return true;
  });
  plugin.def("flood", [](ferry::Context& ctx, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) ctx.info("flood " + std::to_string(i));
    return monotonic_us();
  });
  plugin.def("print", [](std::int64_t long_len) {
    std::printf("printf line\n");
    std::cout << "cout line" << std::endl;
    std::cerr << "cerr line" << std::endl;
    std::printf("%s\n", std::string(std::size_t(long_len), 'x').c_str());
    std::fflush(stdout);
    std::fputs("unfinished line", stderr);
    return true;
  });
  plugin.def("print_flood", [](std::int64_t mib) { return print_flood(mib); });
  plugin.def("raw_line", [](std::int64_t level, std::int64_t n) {
    require_worker();
    return send_raw(std::uint32_t(level), "raw \x1b[31mred\nforged" + std::string(std::size_t(n), 'y'));
  });
  plugin.def("raw_flood", [](ferry::Context& ctx) {
    require_worker();
    std::int64_t sent = 0;
    while (!ctx.cancelled() && send_raw(FERRY_LOG_INFO, "raw flood " + std::to_string(sent))) ++sent;
    return sent;
  });
}
