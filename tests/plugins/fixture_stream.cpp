// Fixture "stream": partial results in bulk, for the tests of streaming
// (back-pressure, memory bounds, non-JSON partials).
//   blobs(n, size) -> n     emits n partials of `size` bytes ("xxx...", not
//                           JSON) as fast as the host takes them; stops when
//                           the call ends (emit throws)
//   raw_parts()    -> "done" emits three raw partials: "not json", "", "\xff"
#include <cstdint>
#include <string>

#include <ferry/plugin.hpp>

namespace {

std::int64_t blobs(ferry::Context& ctx, std::int64_t n, std::int64_t size) {
  if (n < 0 || size < 0) throw ferry::Error(FERRY_E_BAD_REQUEST, "blobs needs n >= 0 and size >= 0");
  const std::string blob(static_cast<std::size_t>(size), 'x');
  for (std::int64_t i = 0; i < n; ++i) ctx.emit_raw(blob);
  return n;
}

std::string raw_parts(ferry::Context& ctx) {
  ctx.emit_raw("not json");
  ctx.emit_raw("");
  ctx.emit_raw("\xff");
  return "done";
}

}  // namespace

FERRY_PLUGIN("stream", "1.0.0") {
  plugin.def("blobs", blobs);
  plugin.def("raw_parts", raw_parts);
}
