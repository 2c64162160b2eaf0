// What docs/protocol.md promises at its edges, against the real ferryd:
// the client's HELLO fields, PING ids, odd function names, built-in
// payloads, replies over max_frame_bytes, and how connections end without a
// frame (over max_connections, after a drain).
#include <catch2/catch.hpp>
#include <signal.h>

#include <cstring>
#include <string>

#include "ferry/client.hpp"
#include "ferry/wire.hpp"
#include "ferryd_process.hpp"
#include "stream_support.hpp"

using ferry::ReplyKind;
using ferry::test::connect;
using ferry::test::FerrydProcess;
using ferry::test::header;
using ferry::test::must_call;
using ferry::test::plugin_path;
using ferry::test::raw_exchange;

namespace {

// "08 00 ..." as bytes (spaces and newlines ignored).
std::string hex(std::string_view text) {
  std::string digits, out;
  for (char c : text)
    if (c != ' ' && c != '\n') digits += c;
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2) out += char(std::stoi(digits.substr(i, 2), nullptr, 16));
  return out;
}

std::string hello(std::uint16_t major, std::uint16_t minor, std::uint32_t max_frame) {
  std::string body(8, '\0');
  std::memcpy(body.data(), &major, 2);
  std::memcpy(body.data() + 2, &minor, 2);
  std::memcpy(body.data() + 4, &max_frame, 4);
  return header(8, 1, 0) + body;
}

}  // namespace

TEST_CASE("protocol: a client HELLO with a higher minor and a frame limit gets the server's own HELLO",
          "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")}, "", "max_frame_bytes = 65536\n");
  const auto a = raw_exchange(d, hello(1, 9, 12345), false);
  REQUIRE(a.type == 1);
  ferry::proto::Hello h;
  REQUIRE(ferry::proto::decode_hello(ferry::proto::as_bytes(a.body), &h, nullptr));
  CHECK(h.major == 1);
  CHECK(h.minor == ferry::proto::kVersionMinor);  // the server's minor, not the client's
  CHECK(h.max_frame_bytes == 65536);              // the client's 12345 changes nothing
}

TEST_CASE("protocol: a PING may carry any id, even 0 or a call's in flight; PONG echoes it",
          "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")}, "[plugins.demo]\nworkers = 1\n");
  auto c = connect(d);
  const std::uint64_t id = c->send_call("demo.sleep_ms", "[200]");
  REQUIRE(c->send_raw(header(1, 5, id) + "x"));  // a PING with the id of the call in flight
  REQUIRE(c->send_raw(header(0, 5, 0)));         // and one with id 0
  auto first = c->read_reply();
  REQUIRE(first.has_value());
  CHECK(first->kind == ReplyKind::pong);  // the loop answers PINGs at once
  CHECK(first->call_id == id);
  CHECK(first->data == "x");
  auto second = c->read_reply();
  REQUIRE(second.has_value());
  CHECK(second->kind == ReplyKind::pong);
  CHECK(second->call_id == 0);
  auto result = c->read_reply();  // the call's own reply: same id, other type
  REQUIRE(result.has_value());
  CHECK(result->kind == ReplyKind::result);
  CHECK(result->call_id == id);
  CHECK(result->data == "200");
}

TEST_CASE("protocol: a name without a dot or with bytes over 0x7f is only unknown; the connection stays",
          "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")});
  auto c = connect(d);
  for (const std::string name : {"nodot", "demo.\xc3\xa9", "\xff"}) {
    INFO(name);
    const auto r = must_call(*c, name, "[]");
    CHECK(r.kind == ReplyKind::error);
    CHECK(r.code == FERRY_E_UNKNOWN_FUNCTION);
  }
  CHECK(must_call(*c, "demo.echo", "[1]").data == "1");
}

TEST_CASE("protocol: built-ins ignore their payload", "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")});
  auto c = connect(d);
  for (const char* payload : {"[]", "", "[1]", "not json"}) {
    INFO(payload);
    const auto r = must_call(*c, "ferry.status", payload);
    CHECK(r.kind == ReplyKind::result);
    CHECK(r.data.find("\"plugins\"") != std::string::npos);
  }
}

TEST_CASE("protocol: replies are not bounded by max_frame_bytes, which bounds what clients send",
          "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo"), plugin_path("primes")}, "[plugins.demo]\nexecutor = \"process\"\nworkers = 8\n",
                  "max_frame_bytes = 1024\n");
  auto c = connect(d);
  const auto r = must_call(*c, "ferry.status", "[]");  // one object per worker: well over 1 KiB
  REQUIRE(r.kind == ReplyKind::result);
  CHECK(r.data.size() > 1024);
  CHECK(c->send_call("demo.echo_raw", std::string(2000, 'x')) == 0);  // refused locally: over the limit
}

TEST_CASE("protocol: a connection over max_connections gets ERROR busy, then is closed", "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")}, "", "max_connections = 1\n");
  auto first = connect(d);
  std::string error;
  auto second = ferry::Client::connect(d.socket(), &error);
  CHECK(second == nullptr);
  CHECK_THAT(error, Catch::Contains("server refused: busy: too many connections"));
  CHECK(must_call(*first, "demo.echo", "[2]").data == "2");  // the first is unaffected
}

TEST_CASE("protocol: after a drain, connections are closed without a frame", "[integration][protocol]") {
  FerrydProcess d({plugin_path("demo")});
  auto c = connect(d);
  REQUIRE(must_call(*c, "demo.echo", "[3]").data == "3");
  REQUIRE(kill(d.pid(), SIGTERM) == 0);
  CHECK_FALSE(c->read_reply().has_value());  // EOF, no ERROR frame
  CHECK_THAT(c->last_error(), Catch::Contains("closed by server"));
  CHECK(d.wait() == 0);
}

TEST_CASE("protocol: the streamed call of §9, byte for byte", "[integration][protocol][stream]") {
  FerrydProcess d({plugin_path("demo")});
  ferry::test::RawConn raw(d);
  raw.send(hex("08 00 00 00  01  00  00 00  00 00 00 00 00 00 00 00  01 00  02 00  00 00 00 00"
               "17 00 00 00  02  00  00 00  03 00 00 00 00 00 00 00  00 00 00 00  00  01  0a 00"
               "64 65 6d 6f 2e 63 6f 75 6e 74  5b 33 2c 30 5d"));
  std::string got;
  for (int i = 0; i < 5; ++i) {
    const auto f = raw.read();
    REQUIRE(f.type != -1);
    got += header(std::uint32_t(f.body.size()), std::uint8_t(f.type), f.id) + f.body;
  }
  CHECK(got == hex("08 00 00 00  01  00  00 00  00 00 00 00 00 00 00 00  01 00  02 00  00 00 00 01"
                   "01 00 00 00  08  00  00 00  03 00 00 00 00 00 00 00  31"
                   "01 00 00 00  08  00  00 00  03 00 00 00 00 00 00 00  32"
                   "01 00 00 00  08  00  00 00  03 00 00 00 00 00 00 00  33"
                   "01 00 00 00  03  00  00 00  03 00 00 00 00 00 00 00  33"));
}

TEST_CASE("protocol: a CALL flag other than bit 0, or a PARTIAL from a client, is malformed",
          "[integration][protocol][stream]") {
  FerrydProcess d({plugin_path("demo")});
  for (const std::string& bad : {ferry::test::call_frame(1, "demo.echo", "[1]", 2),
                                 ferry::test::call_frame(1, "demo.echo", "[1]", 0x81),
                                 header(1, 8, 1) + "x"}) {
    ferry::test::RawConn raw(d);
    raw.send(hello(1, 2, 0) + bad);
    CHECK(raw.read().type == 1);
    const auto f = raw.read();
    CHECK(f.type == 4);
    CHECK(f.id == 0);
    CHECK(f.body.substr(0, 2) == std::string("\x02\x00", 2));  // bad_request
    CHECK(raw.read().type == -1);                                // closed
  }
}
