// Wire protocol v1 encode/decode (sdk/include/ferry/wire.hpp, docs/protocol.md).
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ferry/wire.hpp"

using namespace ferry::proto;

namespace {

constexpr std::uint32_t kMax = 1u << 20;

std::vector<std::uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  std::string digits;
  for (char c : hex)
    if (c != ' ' && c != '\n') digits += c;
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

// Parses exactly one whole frame that fills buf.
Frame parse_one(const std::vector<std::uint8_t>& buf, std::uint32_t max = kMax) {
  Frame f{};
  std::size_t used = 0;
  std::string why;
  REQUIRE(parse_frame(buf, max, &f, &used, &why) == Parse::ok);
  REQUIRE(used == buf.size());
  REQUIRE(f.header.length == buf.size() - kHeaderSize);
  REQUIRE(f.header.flags == 0);
  return f;
}

Parse parse_verdict(const std::vector<std::uint8_t>& buf, std::string* why = nullptr,
                    std::uint32_t max = kMax) {
  Frame f{};
  std::size_t used = 0;
  return parse_frame(buf, max, &f, &used, why);
}

std::vector<std::uint8_t> call_body(std::uint32_t timeout, std::uint8_t prio, std::uint8_t flags,
                                    std::uint16_t name_len, std::string_view rest) {
  std::vector<std::uint8_t> b;
  b.reserve(kCallFixedSize + rest.size());
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(timeout >> (8 * i)));
  b.push_back(prio);
  b.push_back(flags);
  b.push_back(static_cast<std::uint8_t>(name_len));
  b.push_back(static_cast<std::uint8_t>(name_len >> 8));
  for (char ch : rest) b.push_back(static_cast<std::uint8_t>(ch));
  return b;
}

}  // namespace

TEST_CASE("header layout is byte-exact little-endian") {
  std::string out;
  encode_result(out, 0x0102030405060708ull, "abc");
  CHECK(bytes_of(out) == from_hex("03000000 03 00 0000 0807060504030201 616263"));
}

TEST_CASE("encoders append to existing content") {
  std::string out = "xy";
  encode_ping(out, 9, "");
  REQUIRE(out.size() == 2 + kHeaderSize);
  CHECK(out.substr(0, 2) == "xy");
  CHECK(bytes_of(out.substr(2)) == from_hex("00000000 05 00 0000 0900000000000000"));
}

TEST_CASE("HELLO round trip and hex example from docs/protocol.md") {
  std::string out;
  encode_hello(out, Hello{});
  CHECK(bytes_of(out) == from_hex("08000000 01 00 0000 0000000000000000  0100 0200 00000000"));
  out.clear();
  encode_hello(out, Hello{1, 0, 16u << 20});
  CHECK(bytes_of(out) == from_hex("08000000 01 00 0000 0000000000000000  0100 0000 00000001"));

  out.clear();
  encode_hello(out, Hello{7, 65535, 0xdeadbeef});
  auto buf = bytes_of(out);
  Frame f = parse_one(buf);
  CHECK(f.header.type == Type::hello);
  CHECK(f.header.call_id == 0);
  Hello h;
  REQUIRE(decode_hello(f.body, &h, nullptr));
  CHECK(h.major == 7);
  CHECK(h.minor == 65535);
  CHECK(h.max_frame_bytes == 0xdeadbeef);
}

TEST_CASE("CALL round trip and hex example from docs/protocol.md") {
  std::string out;
  encode_call(out, 1, "primes.is_prime", "[7]");
  CHECK(bytes_of(out) == from_hex("1a000000 02 00 0000 0100000000000000"
                                  "00000000 00 00 0f00"
                                  "7072696d65732e69735f7072696d65"
                                  "5b375d"));
  auto prio = GENERATE(Priority::normal, Priority::high, Priority::low);
  auto payload = GENERATE(std::string(), std::string("[1,\"x\"]"), std::string(70000, '\0'));
  out.clear();
  encode_call(out, 0xffffffffffffffffull, "p.f", payload, 123456, prio);
  auto buf = bytes_of(out);
  Frame f = parse_one(buf);
  CHECK(f.header.type == Type::call);
  CHECK(f.header.call_id == 0xffffffffffffffffull);
  Call c;
  std::string why;
  REQUIRE(decode_call(f.body, &c, &why));
  CHECK(c.timeout_ms == 123456);
  CHECK(c.priority == prio);
  CHECK(c.name == "p.f");
  CHECK(as_chars(c.payload) == payload);
}

TEST_CASE("CALL name of 255 bytes is accepted") {
  std::string name(255, 'n');
  std::string out;
  encode_call(out, 5, name, "[]");
  auto buf = bytes_of(out);
  Call c;
  REQUIRE(decode_call(parse_one(buf).body, &c, nullptr));
  CHECK(c.name == name);
  CHECK(as_chars(c.payload) == "[]");
}

TEST_CASE("RESULT, PING and PONG round trip") {
  auto body = GENERATE(std::string(), std::string("{\"ok\":true}"), std::string("\0\1\2", 3));
  struct Case { Type type; void (*enc)(std::string&, std::uint64_t, std::string_view); };
  auto c = GENERATE(Case{Type::result, encode_result}, Case{Type::ping, encode_ping},
                    Case{Type::pong, encode_pong});
  std::string out;
  c.enc(out, 42, body);
  auto buf = bytes_of(out);
  Frame f = parse_one(buf);
  CHECK(f.header.type == c.type);
  CHECK(f.header.call_id == 42);
  CHECK(as_chars(f.body) == body);
}

TEST_CASE("ERROR round trip") {
  auto code = GENERATE(FERRY_E_UNKNOWN_FUNCTION, FERRY_E_BUSY, FERRY_E_INTERNAL);
  auto msg = GENERATE(std::string(), std::string("no such function: a.b"), std::string("\xc3\xa9t\xc3\xa9"));
  std::string out;
  encode_error(out, 3, code, msg);
  auto buf = bytes_of(out);
  Frame f = parse_one(buf);
  CHECK(f.header.type == Type::error);
  Error e{};
  REQUIRE(decode_error(f.body, &e, nullptr));
  CHECK(e.code == code);
  CHECK(e.raw_code == code);
  CHECK(e.message == msg);
}

TEST_CASE("RESULT and ERROR hex examples from docs/protocol.md") {
  std::string out;
  encode_result(out, 1, "true");
  CHECK(bytes_of(out) == from_hex("04000000 03 00 0000 0100000000000000 74727565"));
  out.clear();
  encode_error(out, 1, FERRY_E_UNKNOWN_FUNCTION, "no such function");
  CHECK(bytes_of(out) == from_hex("12000000 04 00 0000 0100000000000000 0100"
                                  "6e6f2073756368 2066756e6374696f6e"));
}

TEST_CASE("ERROR byte layout") {
  std::string out;
  encode_error(out, 0, FERRY_E_UNSUPPORTED_VERSION, "v");
  CHECK(bytes_of(out) == from_hex("03000000 04 00 0000 0000000000000000 0d00 76"));
}

TEST_CASE("every proper prefix of a frame needs more") {
  std::string out;
  encode_call(out, 77, "primes.factorize", "[1234567]", 50, Priority::high);
  const auto whole = bytes_of(out);
  for (std::size_t n = 0; n < whole.size(); ++n) {
    std::vector<std::uint8_t> prefix(whole.begin(), whole.begin() + n);  // exact size for ASan
    INFO("prefix length " << n);
    CHECK(parse_verdict(prefix) == Parse::need_more);
  }
  CHECK(parse_verdict(whole) == Parse::ok);
}

TEST_CASE("body length limit") {
  std::string out;
  encode_result(out, 1, std::string(100, 'x'));
  auto buf = bytes_of(out);
  CHECK(parse_verdict(buf, nullptr, 100) == Parse::ok);
  std::string why;
  CHECK(parse_verdict(buf, &why, 99) == Parse::too_large);
  CHECK(why == "frame too large");
  // Reported as soon as the header is complete.
  std::vector<std::uint8_t> header(buf.begin(), buf.begin() + kHeaderSize);
  CHECK(parse_verdict(header, nullptr, 99) == Parse::too_large);
  auto huge = from_hex("ffffffff 03 00 0000 0100000000000000");
  CHECK(parse_verdict(huge, nullptr, 0xfffffffe) == Parse::too_large);
  CHECK(parse_verdict(huge, nullptr, 0xffffffff) == Parse::need_more);
}

TEST_CASE("CANCEL frames: type 7, empty body, the call id to give up on") {
  std::string out;
  encode_cancel(out, 42);
  CHECK(bytes_of(out) == from_hex("00 00 00 00  07  00  00 00  2a 00 00 00 00 00 00 00"));  // §3.6
  Frame f{};
  std::size_t used = 0;
  REQUIRE(parse_frame(as_bytes(out), 1024, &f, &used, nullptr) == Parse::ok);
  CHECK(f.header.type == Type::cancel);
  CHECK(f.header.call_id == 42);
  CHECK(used == kHeaderSize);
  CHECK(std::string(type_name(Type::cancel)) == "cancel");
}

TEST_CASE("CALL flags (1.2): bit 0 asks for partials; the byte is where 1.1 had a reserved 0") {
  std::string out;
  encode_call(out, 3, "demo.count", "[3,0]", 0, Priority::normal, kCallPartials);  // §9's streamed call
  CHECK(bytes_of(out) == from_hex("17000000 02 00 0000 0300000000000000"
                                  "00000000 00 01 0a00"
                                  "64656d6f2e636f756e74"
                                  "5b332c305d"));
  Call c;
  const auto streamed = bytes_of(out);  // c views it
  REQUIRE(decode_call(parse_one(streamed).body, &c, nullptr));
  CHECK(c.flags == kCallPartials);
  CHECK(c.name == "demo.count");
  out.clear();
  encode_call(out, 3, "demo.count", "[3,0]");  // a 1.1 CALL: flags 0
  const auto plain = bytes_of(out);
  REQUIRE(decode_call(parse_one(plain).body, &c, nullptr));
  CHECK(c.flags == 0);
}

TEST_CASE("PARTIAL frames (1.2): type 8, the call's id, one partial result as the body") {
  std::string out;
  encode_partial(out, 3, "1");
  CHECK(bytes_of(out) == from_hex("01000000 08 00 0000 0300000000000000 31"));  // §9
  const auto buf = bytes_of(out);  // f views it
  Frame f = parse_one(buf);
  CHECK(f.header.type == Type::partial);
  CHECK(f.header.call_id == 3);
  CHECK(as_chars(f.body) == "1");
  out.clear();
  encode_partial(out, 9, "");  // an empty partial is a frame too
  CHECK(bytes_of(out) == from_hex("00000000 08 00 0000 0900000000000000"));
}

TEST_CASE("malformed headers are reported from the header alone") {
  auto hex = GENERATE(as<std::string>{},
                      "00000000 00 00 0000 0100000000000000",   // type 0
                      "00000000 09 00 0000 0100000000000000",   // type 9
                      "00000000 ff 00 0000 0100000000000000",   // type 255
                      "00000000 03 01 0000 0100000000000000",   // flags
                      "00000000 03 80 0000 0100000000000000",   // flags high bit
                      "00000000 03 00 0100 0100000000000000",   // reserved low byte
                      "00000000 03 00 0001 0100000000000000",   // reserved high byte
                      "ffffffff 09 00 0000 0100000000000000");  // malformed wins over too large
  auto buf = from_hex(hex);
  INFO(hex);
  std::string why;
  CHECK(parse_verdict(buf, &why) == Parse::malformed);
  CHECK(!why.empty());
  buf.push_back(0);  // still malformed with trailing bytes
  CHECK(parse_verdict(buf) == Parse::malformed);
}

TEST_CASE("several frames in one buffer parse in order") {
  std::string out;
  encode_hello(out, Hello{});
  encode_call(out, 1, "a.b", "[1]");
  encode_ping(out, 2, "");
  encode_error(out, 3, FERRY_E_TIMEOUT, "late");
  encode_result(out, 4, "true");
  encode_pong(out, 5, "p");
  encode_call(out, 6, "a.c", "");  // incomplete tail follows
  out.resize(out.size() - 1);
  const auto buf = bytes_of(out);
  std::span<const std::uint8_t> rest(buf);
  std::vector<std::pair<Type, std::uint64_t>> seen;
  Frame f{};
  std::size_t used = 0;
  while (parse_frame(rest, kMax, &f, &used, nullptr) == Parse::ok) {
    seen.emplace_back(f.header.type, f.header.call_id);
    rest = rest.subspan(used);
  }
  const std::vector<std::pair<Type, std::uint64_t>> want = {
      {Type::hello, 0}, {Type::call, 1}, {Type::ping, 2},
      {Type::error, 3}, {Type::result, 4}, {Type::pong, 5}};
  CHECK(seen == want);
  CHECK(rest.size() == kHeaderSize + kCallFixedSize + 3 - 1);
  CHECK(parse_frame(rest, kMax, &f, &used, nullptr) == Parse::need_more);
}

TEST_CASE("HELLO bodies shorter than 8 bytes are malformed; longer ones are accepted") {
  std::vector<std::uint8_t> body = {1, 0, 2, 0, 0, 1, 0, 0};
  Hello h;
  for (std::size_t n = 0; n < body.size(); ++n) {
    std::vector<std::uint8_t> prefix(body.begin(), body.begin() + n);
    std::string why;
    CHECK_FALSE(decode_hello(prefix, &h, &why));
    CHECK(!why.empty());
  }
  body.push_back(0xaa);  // a later minor version's extra field
  REQUIRE(decode_hello(body, &h, nullptr));
  CHECK(h.major == 1);
  CHECK(h.minor == 2);
  CHECK(h.max_frame_bytes == 256);
}

TEST_CASE("malformed CALL bodies are rejected") {
  Call c;
  std::string why;
  SECTION("shorter than the fixed part") {
    auto full = call_body(0, 0, 0, 1, "x");
    for (std::size_t n = 0; n < kCallFixedSize; ++n) {
      std::vector<std::uint8_t> prefix(full.begin(), full.begin() + n);
      CHECK_FALSE(decode_call(prefix, &c, &why));
    }
  }
  SECTION("empty name") { CHECK_FALSE(decode_call(call_body(0, 0, 0, 0, "[1]"), &c, &why)); }
  SECTION("name runs past the body") {
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 4, "a.b"), &c, &why));
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 0xffff, "a.b"), &c, &why));
  }
  SECTION("name longer than 255 even when the bytes are there") {
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 256, std::string(300, 'a')), &c, &why));
  }
  SECTION("unknown priority") {
    CHECK_FALSE(decode_call(call_body(0, 3, 0, 3, "a.b"), &c, &why));
    CHECK_FALSE(decode_call(call_body(0, 255, 0, 3, "a.b"), &c, &why));
  }
  SECTION("a flag other than partials (bit 0)") {
    for (int bit = 1; bit < 8; ++bit) CHECK_FALSE(decode_call(call_body(0, 0, std::uint8_t(1 << bit), 3, "a.b"), &c, &why));
    CHECK_FALSE(decode_call(call_body(0, 0, 3, 3, "a.b"), &c, &why));
  }
  SECTION("control bytes in the name") {
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 3, std::string("a\nb")), &c, &why));
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 3, std::string("a\0b", 3)), &c, &why));
    CHECK_FALSE(decode_call(call_body(0, 0, 0, 3, "a\x7f" "b"), &c, &why));
  }
  CHECK(!why.empty());
}

TEST_CASE("a CALL whose name fills the body has an empty payload") {
  Call c;
  const auto body = call_body(7, 2, 0, 3, "a.b");  // c views it
  REQUIRE(decode_call(body, &c, nullptr));
  CHECK(c.timeout_ms == 7);
  CHECK(c.priority == Priority::low);
  CHECK(c.name == "a.b");
  CHECK(c.payload.empty());
}

TEST_CASE("malformed and unknown ERROR bodies") {
  Error e{};
  std::string why;
  CHECK_FALSE(decode_error(from_hex(""), &e, &why));
  CHECK_FALSE(decode_error(from_hex("02"), &e, &why));
  CHECK_FALSE(decode_error(from_hex("0000 6f6b"), &e, &why));  // code 0 is not an error
  const auto newer = from_hex("0f00 6e6577");  // from a newer peer; e views it
  REQUIRE(decode_error(newer, &e, &why));
  CHECK(e.code == FERRY_E_INTERNAL);
  CHECK(e.raw_code == 15);
  CHECK(e.message == "new");
  REQUIRE(decode_error(from_hex("ffff"), &e, &why));
  CHECK(e.raw_code == 0xffff);
  CHECK(e.message.empty());
}

TEST_CASE("type names") {
  CHECK(std::string(type_name(Type::hello)) == "hello");
  CHECK(std::string(type_name(Type::pong)) == "pong");
  CHECK(std::string(type_name(Type::partial)) == "partial");
  CHECK(std::string(type_name(static_cast<Type>(9))) == "unknown");
}

// Feeds one input through the parser and every decoder, checking invariants.
// The input sits in its own exactly-sized allocation so ASan sees any overread.
static void fuzz_one(const std::vector<std::uint8_t>& input, std::uint32_t max) {
  std::span<const std::uint8_t> rest(input);
  Frame f{};
  std::size_t used = 0;
  std::string why;
  while (true) {
    Parse p = parse_frame(rest, max, &f, &used, &why);
    if (p != Parse::ok) break;
    REQUIRE(used == kHeaderSize + f.header.length);
    REQUIRE(used <= rest.size());
    REQUIRE(f.header.length <= max);
    REQUIRE(f.body.data() == rest.data() + kHeaderSize);
    Hello h;
    Call c;
    Error e{};
    if (decode_call(f.body, &c, &why)) {
      REQUIRE(!c.name.empty());
      REQUIRE(c.name.size() + c.payload.size() + kCallFixedSize == f.body.size());
      REQUIRE(static_cast<std::uint8_t>(c.priority) <= 2);
      REQUIRE((c.flags & ~kCallPartials) == 0);
    }
    if (decode_error(f.body, &e, &why)) REQUIRE(e.code != FERRY_OK);
    (void)decode_hello(f.body, &h, &why);
    rest = rest.subspan(used);
  }
  // Decoders must also survive bodies that never had a header.
  Hello h;
  Call c;
  Error e{};
  (void)decode_hello(input, &h, &why);
  (void)decode_call(input, &c, &why);
  (void)decode_error(input, &e, &why);
}

static std::string valid_stream(std::mt19937& rng) {
  std::string out;
  std::uniform_int_distribution<int> kind(0, 6), len(0, 40);
  for (int i = 0, n = 1 + static_cast<int>(rng() % 4); i < n; ++i) {
    std::string payload(static_cast<std::size_t>(len(rng)), 'p');
    switch (kind(rng)) {
      case 0: encode_hello(out, Hello{1, 0, static_cast<std::uint32_t>(rng())}); break;
      case 1: encode_call(out, rng(), "plug.fn", payload, rng(), static_cast<Priority>(rng() % 3)); break;
      case 2: encode_result(out, rng(), payload); break;
      case 3: encode_error(out, rng(), FERRY_E_BUSY, payload); break;
      case 4: encode_ping(out, rng(), payload); break;
      case 5: encode_partial(out, rng(), payload); break;
      default: encode_pong(out, rng(), payload); break;
    }
  }
  return out;
}

static void mutate(std::string& s, std::mt19937& rng) {
  for (int i = 0, n = 1 + static_cast<int>(rng() % 4); i < n && !s.empty(); ++i) {
    const std::size_t at = rng() % s.size();
    switch (rng() % 5) {
      case 0: s[at] = static_cast<char>(rng()); break;
      case 1: s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8))); break;
      case 2: s.resize(at); break;
      case 3: s.insert(at, 1, static_cast<char>(rng())); break;
      default: s[at] = static_cast<char>(rng() % 2 ? 0xff : 0x00); break;
    }
  }
}

TEST_CASE("random bytes and mutated frames never crash the decoders") {
  const std::uint32_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const std::uint32_t maxes[] = {0, 8, 64, kMax, 0xffffffffu};
  for (int i = 0; i < 100000; ++i) {
    std::vector<std::uint8_t> noise(rng() % 64);
    for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
    fuzz_one(noise, maxes[rng() % 5]);
  }
  for (int i = 0; i < 300000; ++i) {
    std::string s = valid_stream(rng);
    mutate(s, rng);
    fuzz_one(bytes_of(s), maxes[rng() % 5]);
  }
}
