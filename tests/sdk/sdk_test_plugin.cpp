// The plugin test_sdk drives: one function per SDK feature under test. Its
// exported entry points are called directly, through a fake host table.
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <ferry/plugin.hpp>

namespace {

std::int64_t twice(std::int64_t x) { return 2 * x; }

struct Scale {  // a functor with state, called through its const operator()
  double factor;
  double operator()(double x) const { return factor * x; }
};

}  // namespace

FERRY_PLUGIN("sdktest", "0.1.0") {
  plugin.def("add", [](int a, int b) { return a + b; });
  plugin.def("twice", twice);
  plugin.def("scale", Scale{2.5});
  plugin.def("nothing", [] {});
  plugin.def("concat", [](const std::string& a, std::string_view b) { return a + std::string(b); });
  plugin.def("append_in_place", [](std::string& s) -> std::string { return s += "!"; });
  plugin.def("sum", [](const std::vector<std::int64_t>& v) {
    std::int64_t total = 0;
    for (auto x : v) total += x;
    return total;
  });
  plugin.def("byte", [](std::uint8_t b) { return int(b); });
  plugin.def("negate", [](bool b) { return !b; });
  plugin.def("echo", [](nlohmann::json j) { return j; });
  plugin.def("deadline", [](ferry::Context& ctx) { return ctx.deadline_ms(); });
  plugin.def("cancelled", [](const ferry::Context& ctx, int x) { return ctx.cancelled() ? -x : x; });
  plugin.def("say", [](ferry::Context& ctx, int level, const std::string& msg) {
    ctx.log(level, msg);
    ctx.warn("warned");
  });
  plugin.def("fail_code", [](int code, const std::string& msg) -> int {
    throw ferry::Error(static_cast<ferry_code>(code), msg);
  });
  plugin.def("fail_runtime", [](const std::string& msg) -> int { throw std::runtime_error(msg); });
  plugin.def("fail_alloc", []() -> int { throw std::bad_alloc(); });
  plugin.def("fail_other", []() -> int { throw 42; });
  plugin.def("bad_utf8", [] { return std::string("\xff\xfe"); });
  plugin.raw("raw_echo", [](std::string_view in) { return std::string(in); });
  plugin.raw("raw_ctx", [](ferry::Context& ctx, std::string_view in) {
    return std::to_string(ctx.deadline_ms()) + ":" + std::string(in);
  });
  plugin.raw("raw_fail", [](std::string_view) -> std::string {
    throw ferry::Error(FERRY_E_BUSY, "try later");
  });
  plugin.log(FERRY_LOG_INFO, "sdktest registered");
}
