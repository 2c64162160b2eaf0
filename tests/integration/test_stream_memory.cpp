// Back-pressure of partial results: clients that never read their partials
// cannot make ferryd's memory grow past a bound (measured: VmRSS), other
// clients are served meanwhile, and a function blocked in emit() returns as
// soon as its call is cancelled or passes its deadline. Both executors.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ferry/client.hpp"
#include "ferryd_process.hpp"
#include "stream_support.hpp"

using ferry::ReplyKind;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::fixture_path;
using ferry::test::plugin_path;
using ferry::test::RawConn;
using ferry::test::rss_kb;
using ferry::test::status_until;
using json = nlohmann::json;

namespace {

constexpr int kSilent = 4;  // clients that never read
// Each asks for 1,000,000 partials of 64 KiB: 61 GiB, if nothing held it back.
const std::string kFlood = "[1000000,65536]";

// A streamed demo.count on its own connection gets every partial, in order.
void served_meanwhile(const FerrydProcess& d) {
  auto c = connect(d);
  int next = 1;
  auto r = c->stream("demo.count", "[2000,0]", [&](std::string_view p) { CHECK(p == std::to_string(next++)); });
  REQUIRE(r.has_value());
  CHECK(r->data == "2000");
  CHECK(next == 2001);
}

}  // namespace

TEST_CASE("stream: clients that never read their partials cannot grow ferryd's memory past a bound",
          "[integration][stream][memory]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({plugin_path("demo"), fixture_path("fixture_stream")},
                  ferry::test::stream_config(executor, kSilent));
  auto c = connect(d);
  // Warm up every path a stream takes (and the allocator's arenas) first.
  REQUIRE(c->stream("stream.blobs", "[64,65536]", [](std::string_view) {}).has_value());
  served_meanwhile(d);
  const long before = rss_kb(d.pid());

  std::vector<std::unique_ptr<RawConn>> silent;
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(std::make_unique<RawConn>(d, 4096));
    silent.back()->send(ferry::test::hello_frame(2) + ferry::test::call_frame(1, "stream.blobs", kFlood, 1));
  }
  status_until(*c, "stream", [](const json& s) { return s["running"] == kSilent; }, "every flood running");
  served_meanwhile(d);  // other clients are unaffected
  long peak = 0;
  for (int i = 0; i < 200; ++i) {  // each sample a round trip: the floods keep pushing meanwhile
    const auto st = ferry::test::plugin_status(*c, "stream");
    INFO(st.dump());
    REQUIRE(st["running"] == kSilent);  // held back, not done
    peak = std::max(peak, rss_kb(d.pid()));
  }
  std::printf("[%s] ferryd VmRSS with %d clients not reading 61 GiB floods each: %ld KiB before, peak %ld KiB "
              "(+%ld KiB)\n", executor.c_str(), kSilent, before, peak, peak - before);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)  // their allocators keep freed memory
  // Per silent client: its 8 MiB output bound plus one 1 MiB window, and room
  // for the allocator; expected about 10 MiB each.
  CHECK(peak - before < kSilent * 24 * 1024 + 32 * 1024);
#endif

  for (auto& s : silent) s->close();  // their calls are cancelled: every blocked emit() returns
  auto st = status_until(*c, "stream", [](const json& s) { return s["running"] == 0; }, "the floods stop");
  CHECK(st["stuck"] == 0);
  CHECK(st["restarts"] == 0);  // process mode: each worker returned within its grace, none was killed
}

TEST_CASE("stream: a function blocked in emit() by a client that does not read returns at its deadline",
          "[integration][stream][memory]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d({plugin_path("demo"), fixture_path("fixture_stream")}, ferry::test::stream_config(executor, 1));
  auto c = connect(d);
  status_until(*c, "stream", [](const json& s) { return s["executor"] == "thread" || s["processes"][0]["state"] == "idle"; },
               "the worker is up");
  RawConn silent(d, 4096);
  silent.send(ferry::test::hello_frame(2) + ferry::test::call_frame(1, "stream.blobs", kFlood, 1, 300));
  status_until(*c, "stream", [](const json& s) { return s["running"] == 1; }, "the flood runs");
  // It cannot finish (61 GiB, nobody reads): only its deadline ends it,
  // through emit() returning timeout while the client still does not read.
  auto st = status_until(*c, "stream", [](const json& s) { return s["running"] == 0; }, "the flood stops");
  CHECK(st["stuck"] == 0);
  CHECK(st["restarts"] == 0);
  CHECK(st["completed"] == 1);
  // The pool is free again.
  REQUIRE(c->stream("stream.blobs", "[3,1]", [](std::string_view p) { CHECK(p == "x"); }).has_value());
}
