// Ferry wire protocol 1.2: pure encode/decode of frames (spec: docs/protocol.md).
// No I/O and no state: every function is thread-safe. Decoders never read
// outside the span they are given, so any byte string may be fed to them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ferry/errors.h"

namespace ferry::proto {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint16_t kVersionMajor = 1, kVersionMinor = 2;
inline constexpr std::size_t kHelloBodySize = 8;     // u16 major | u16 minor | u32 max
inline constexpr std::size_t kCallFixedSize = 8;     // u32 timeout | u8 prio | u8 flags | u16 name_len
inline constexpr std::size_t kMaxNameLength = 255;
// CALL flags (body offset 5; a reserved 0 byte before 1.2). Any other bit set
// is malformed.
inline constexpr std::uint8_t kCallPartials = 1;  // since 1.2: send me PARTIAL frames

// cancel (minor 1): the client gives up on call `call_id`; empty body.
// partial (minor 2): one partial result of call `call_id`, before its reply.
enum class Type : std::uint8_t { hello = 1, call = 2, result = 3, error = 4, ping = 5, pong = 6, cancel = 7,
                                 partial = 8 };
enum class Priority : std::uint8_t { normal = 0, high = 1, low = 2 };

// call_id 0 is reserved for the connection itself (HELLO, connection errors).
struct Header { std::uint32_t length; Type type; std::uint8_t flags; std::uint64_t call_id; };
struct Frame { Header header; std::span<const std::uint8_t> body; };  // body views the input

enum class Parse { ok, need_more, too_large, malformed };

// Looks at the start of buf. ok: *frame set, *consumed = kHeaderSize + length.
// need_more: no whole frame yet (but a complete header that is too large or
// malformed is reported at once). Malformed is checked before too_large.
// frame and consumed must not be null; why may be null (set on too_large/malformed).
Parse parse_frame(std::span<const std::uint8_t> buf, std::uint32_t max_body, Frame* frame,
                  std::size_t* consumed, std::string* why);

// HELLO bodies may carry bytes after the first 8 (room for later minor
// versions); decode_hello ignores them. Major is not checked here.
struct Hello {
  std::uint16_t major = kVersionMajor, minor = kVersionMinor;
  std::uint32_t max_frame_bytes = 0;  // 0 from a client: "no limit announced"
};
struct Call {
  std::uint32_t timeout_ms = 0;  // 0 = the plugin's default
  Priority priority = Priority::normal;
  std::string_view name;               // views the body; 1..255 bytes, no control bytes
  std::span<const std::uint8_t> payload;  // views the body; may be empty
  std::uint8_t flags = 0;                 // kCallPartials or 0
};
// An unknown code (newer peer) decodes as FERRY_E_INTERNAL with raw_code kept;
// code 0 (ok) in an ERROR is malformed.
struct Error {
  ferry_code code;
  std::string_view message;  // views the body; meant to be UTF-8, not validated
  std::uint16_t raw_code = 0;
};

// Each returns false and sets *why (if not null) when body is malformed.
bool decode_hello(std::span<const std::uint8_t> body, Hello* out, std::string* why);
bool decode_call(std::span<const std::uint8_t> body, Call* out, std::string* why);
bool decode_error(std::span<const std::uint8_t> body, Error* out, std::string* why);

// Encoders append one whole frame to out (one reserve, then appends).
// Preconditions (unchecked in release builds; callers validate untrusted input):
// bodies fit in u32, and encode_call's name is 1..255 bytes.
void encode_hello(std::string& out, const Hello& h);
void encode_call(std::string& out, std::uint64_t id, std::string_view name,
                 std::string_view payload, std::uint32_t timeout_ms = 0,
                 Priority prio = Priority::normal, std::uint8_t flags = 0);
void encode_partial(std::string& out, std::uint64_t id, std::string_view data);
void encode_result(std::string& out, std::uint64_t id, std::string_view payload);
void encode_error(std::string& out, std::uint64_t id, ferry_code code, std::string_view message);
void encode_ping(std::string& out, std::uint64_t id, std::string_view body);
void encode_pong(std::string& out, std::uint64_t id, std::string_view body);
void encode_cancel(std::string& out, std::uint64_t id);
// Any frame from a header and a body; the building block of the encoders above.
void encode_frame(std::string& out, Type type, std::uint64_t id, std::string_view body);

// Body size of a CALL frame carrying this name and payload.
inline std::size_t call_body_size(std::string_view name, std::size_t payload_size) {
  return kCallFixedSize + name.size() + payload_size;
}

// "hello", "call", ...; "unknown" for anything else.
const char* type_name(Type t);

// Byte views over the same memory, for passing bodies between the two worlds.
inline std::string_view as_chars(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace ferry::proto
