#include "ferry/wire.hpp"

#include <cassert>
#include <limits>

namespace ferry::proto {
namespace {

// Little-endian loads and stores, written with shifts so they are portable;
// g++ turns each into a single mov on x86.
std::uint16_t load16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
std::uint32_t load32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}
std::uint64_t load64(const std::uint8_t* p) {
  return std::uint64_t{load32(p)} | std::uint64_t{load32(p + 4)} << 32;
}
void store(char* p, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

bool fail(std::string* why, const char* message) {
  if (why) *why = message;
  return false;
}

Parse reject(std::string* why, const char* message, Parse verdict) {
  fail(why, message);
  return verdict;
}

bool known_type(std::uint8_t t) { return t >= 1 && t <= 8; }

// Header checks that need no body: reports malformed before too_large.
Parse check_header(const std::uint8_t* p, std::uint32_t max_body, std::string* why) {
  if (!known_type(p[4])) return reject(why, "unknown frame type", Parse::malformed);
  if (p[5] != 0) return reject(why, "nonzero flags", Parse::malformed);
  if (load16(p + 6) != 0) return reject(why, "nonzero reserved header field", Parse::malformed);
  if (load32(p) > max_body) return reject(why, "frame too large", Parse::too_large);
  return Parse::ok;
}

// Control bytes in a name would let a client forge log lines.
bool clean_name(std::string_view name) {
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// Appends the 16-byte header; the caller has reserved room for the whole frame.
void append_header(std::string& out, Type type, std::uint64_t id, std::size_t body_size) {
  assert(body_size <= std::numeric_limits<std::uint32_t>::max());
  char h[kHeaderSize] = {};
  store(h, body_size, 4);
  h[4] = static_cast<char>(type);
  store(h + 8, id, 8);
  out.append(h, kHeaderSize);
}

}  // namespace

Parse parse_frame(std::span<const std::uint8_t> buf, std::uint32_t max_body, Frame* frame,
                  std::size_t* consumed, std::string* why) {
  if (buf.size() < kHeaderSize) return Parse::need_more;
  const std::uint8_t* p = buf.data();
  if (Parse bad = check_header(p, max_body, why); bad != Parse::ok) return bad;
  const std::uint32_t length = load32(p);
  if (buf.size() - kHeaderSize < length) return Parse::need_more;
  frame->header = Header{length, static_cast<Type>(p[4]), p[5], load64(p + 8)};
  frame->body = buf.subspan(kHeaderSize, length);
  *consumed = kHeaderSize + length;
  return Parse::ok;
}

bool decode_hello(std::span<const std::uint8_t> body, Hello* out, std::string* why) {
  if (body.size() < kHelloBodySize) return fail(why, "HELLO body shorter than 8 bytes");
  out->major = load16(body.data());
  out->minor = load16(body.data() + 2);
  out->max_frame_bytes = load32(body.data() + 4);
  return true;
}

bool decode_call(std::span<const std::uint8_t> body, Call* out, std::string* why) {
  if (body.size() < kCallFixedSize) return fail(why, "CALL body shorter than 8 bytes");
  const std::uint8_t* p = body.data();
  if (p[4] > static_cast<std::uint8_t>(Priority::low)) return fail(why, "unknown priority");
  if ((p[5] & ~kCallPartials) != 0) return fail(why, "unknown flag in CALL");
  const std::uint16_t name_len = load16(p + 6);
  if (name_len == 0 || name_len > kMaxNameLength) return fail(why, "function name length not in 1..255");
  if (name_len > body.size() - kCallFixedSize) return fail(why, "function name runs past the body");
  std::string_view name = as_chars(body.subspan(kCallFixedSize, name_len));
  if (!clean_name(name)) return fail(why, "control byte in function name");
  out->timeout_ms = load32(p);
  out->priority = static_cast<Priority>(p[4]);
  out->flags = p[5];
  out->name = name;
  out->payload = body.subspan(kCallFixedSize + name_len);
  return true;
}

bool decode_error(std::span<const std::uint8_t> body, Error* out, std::string* why) {
  if (body.size() < 2) return fail(why, "ERROR body shorter than 2 bytes");
  const std::uint16_t raw = load16(body.data());
  if (raw == FERRY_OK) return fail(why, "ERROR frame with code 0 (ok)");
  out->raw_code = raw;
  out->code = raw < FERRY_CODE_COUNT ? static_cast<ferry_code>(raw) : FERRY_E_INTERNAL;
  out->message = as_chars(body.subspan(2));
  return true;
}

void encode_frame(std::string& out, Type type, std::uint64_t id, std::string_view body) {
  out.reserve(out.size() + kHeaderSize + body.size());
  append_header(out, type, id, body.size());
  out.append(body);
}

void encode_hello(std::string& out, const Hello& h) {
  char body[kHelloBodySize];
  store(body, h.major, 2);
  store(body + 2, h.minor, 2);
  store(body + 4, h.max_frame_bytes, 4);
  encode_frame(out, Type::hello, 0, {body, sizeof body});
}

void encode_call(std::string& out, std::uint64_t id, std::string_view name,
                 std::string_view payload, std::uint32_t timeout_ms, Priority prio, std::uint8_t flags) {
  assert(!name.empty() && name.size() <= kMaxNameLength);
  const std::size_t body_size = call_body_size(name, payload.size());
  out.reserve(out.size() + kHeaderSize + body_size);
  append_header(out, Type::call, id, body_size);
  char fixed[kCallFixedSize] = {};
  store(fixed, timeout_ms, 4);
  fixed[4] = static_cast<char>(prio);
  fixed[5] = static_cast<char>(flags);
  store(fixed + 6, name.size(), 2);
  out.append(fixed, kCallFixedSize);
  out.append(name);
  out.append(payload);
}

void encode_result(std::string& out, std::uint64_t id, std::string_view payload) {
  encode_frame(out, Type::result, id, payload);
}

void encode_partial(std::string& out, std::uint64_t id, std::string_view data) {
  encode_frame(out, Type::partial, id, data);
}

void encode_error(std::string& out, std::uint64_t id, ferry_code code, std::string_view message) {
  const std::size_t body_size = 2 + message.size();
  out.reserve(out.size() + kHeaderSize + body_size);
  append_header(out, Type::error, id, body_size);
  char c[2];
  store(c, static_cast<std::uint16_t>(code), 2);
  out.append(c, 2);
  out.append(message);
}

void encode_ping(std::string& out, std::uint64_t id, std::string_view body) {
  encode_frame(out, Type::ping, id, body);
}

void encode_pong(std::string& out, std::uint64_t id, std::string_view body) {
  encode_frame(out, Type::pong, id, body);
}

void encode_cancel(std::string& out, std::uint64_t id) { encode_frame(out, Type::cancel, id, {}); }

const char* type_name(Type t) {
  switch (t) {
    case Type::hello: return "hello";
    case Type::call: return "call";
    case Type::result: return "result";
    case Type::error: return "error";
    case Type::ping: return "ping";
    case Type::pong: return "pong";
    case Type::cancel: return "cancel";
    case Type::partial: return "partial";
  }
  return "unknown";
}

}  // namespace ferry::proto
