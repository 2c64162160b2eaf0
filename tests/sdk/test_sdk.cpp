// Unit tests of <ferry/plugin.hpp>: a fake host table drives the real exported
// entry points of the plugin in sdk_test_plugin.cpp, as ferryd would.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <ferry/plugin.h>

// The host side of the opaque handles: what the fake host records.
struct ferry_registrar {
  std::map<std::string, std::pair<ferry_fn, void*>> fns;
  std::vector<std::pair<int, std::string>> logs;
  std::string refuse;  // register_fn refuses this name
};

struct ferry_ctx {
  std::int64_t deadline = 0;
  bool cancelled = false;
  int sets = 0;  // set_result + set_error calls
  int code = FERRY_OK;
  std::string result;
  std::string error;
  std::vector<std::pair<int, std::string>> logs;
};


namespace {

using nlohmann::json;

int register_fn(ferry_registrar* reg, const char* name, ferry_fn fn, void* user) {
  if (reg->refuse == name || reg->fns.count(name)) return FERRY_E_BAD_REQUEST;
  reg->fns[name] = {fn, user};
  return 0;
}
void log(ferry_registrar* reg, int level, const char* msg, size_t len) {
  reg->logs.emplace_back(level, std::string(msg, len));
}
int64_t ctx_deadline_ms(const ferry_ctx* ctx) { return ctx->deadline; }
int ctx_cancelled(const ferry_ctx* ctx) { return ctx->cancelled; }
void ctx_log(ferry_ctx* ctx, int level, const char* msg, size_t len) {
  ctx->logs.emplace_back(level, std::string(msg, len));
}
void set_result(ferry_ctx* ctx, const uint8_t* data, size_t len) {
  ++ctx->sets;
  ctx->code = FERRY_OK;
  ctx->result.assign(reinterpret_cast<const char*>(data), len);
}
void set_error(ferry_ctx* ctx, int code, const char* msg, size_t len) {
  ++ctx->sets;
  ctx->code = code;
  ctx->error.assign(msg, len);
}

const ferry_host_api kApi = {FERRY_ABI_MAJOR, FERRY_ABI_MINOR, sizeof(ferry_host_api),
                             register_fn,     log,             ctx_deadline_ms,
                             ctx_cancelled,   ctx_log,         set_result,
                             set_error,       nullptr,  // ctx_call: not used by these tests
                             nullptr,         nullptr,         nullptr,  // settings, init_error, instance
                             nullptr,         nullptr,         nullptr};  // instance_log, ctx_emit, ctx_cancel_fd

// The plugin, initialized once for the whole test binary.
const ferry_registrar& plugin() {
  static const ferry_registrar reg = [] {
    ferry_registrar r;
    REQUIRE(ferry_plugin_init(&kApi, &r) == 0);
    return r;
  }();
  return reg;
}

struct Reply {
  int rc;
  ferry_ctx ctx;
};

Reply call(const std::string& name, const std::string& payload, ferry_ctx ctx = {}) {
  const auto it = plugin().fns.find(name);
  REQUIRE(it != plugin().fns.end());
  const auto [fn, user] = it->second;
  const int rc = fn(user, &ctx, reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  CHECK(ctx.sets == 1);
  CHECK((rc == 0) == (ctx.code == FERRY_OK));
  return {rc, std::move(ctx)};
}

// The JSON result of a call that must succeed.
json ok(const std::string& name, const std::string& payload, ferry_ctx ctx = {}) {
  Reply r = call(name, payload, std::move(ctx));
  INFO(name << " " << payload << " -> " << r.ctx.error);
  REQUIRE(r.ctx.code == FERRY_OK);
  return json::parse(r.ctx.result);
}

// The error of a call that must fail with `code`.
std::string fails(int code, const std::string& name, const std::string& payload) {
  Reply r = call(name, payload);
  INFO(name << " " << payload << " -> " << r.ctx.result << r.ctx.error);
  REQUIRE(r.ctx.code == code);
  return r.ctx.error;
}

}  // namespace

TEST_CASE("ferry_plugin_info describes the plugin", "[sdk]") {
  const ferry_plugin_info_t* info = ferry_plugin_info();
  REQUIRE(info != nullptr);
  CHECK(info->abi_major == FERRY_ABI_MAJOR);
  CHECK(info->abi_minor == FERRY_ABI_MINOR);
  CHECK(std::string(info->name) == "sdktest");
  CHECK(std::string(info->version) == "0.1.0");
}

TEST_CASE("init registers every function and can log", "[sdk]") {
  const auto& reg = plugin();
  for (const char* name : {"add", "twice", "scale", "nothing", "concat", "echo", "deadline",
                           "fail_code", "raw_echo", "raw_ctx", "raw_fail"}) {
    CHECK(reg.fns.count(name) == 1);
  }
  REQUIRE(reg.logs.size() == 1);
  CHECK(reg.logs[0] == std::make_pair(int(FERRY_LOG_INFO), std::string("sdktest registered")));
}

TEST_CASE("typed functions convert arguments and results", "[sdk]") {
  CHECK(ok("add", "[1, 2]") == 3);
  CHECK(ok("add", " [ -5 , 2 ] ") == -3);
  CHECK(ok("twice", "[112272535095293]") == 224545070190586);
  CHECK(ok("scale", "[2]") == 5.0);
  CHECK(ok("nothing", "[]") == nullptr);
  CHECK(ok("nothing", "") == nullptr);  // an empty payload means no arguments
  CHECK(ok("concat", R"(["fer", "ry"])") == "ferry");
  CHECK(ok("append_in_place", R"(["hi"])") == "hi!");
  CHECK(ok("sum", "[[1, 2, 3]]") == 6);
  CHECK(ok("byte", "[255]") == 255);
  CHECK(ok("negate", "[true]") == false);
  const json doc = json::parse(R"({"a": [1, null, "x"], "b": {"c": 1.5}})");
  CHECK(ok("echo", json::array({doc}).dump()) == doc);
}

TEST_CASE("a payload that is not a JSON array is a bad request", "[sdk]") {
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", "[1,"), Catch::Contains("arguments are not valid JSON"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", "nope"), Catch::Contains("parse_error"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", R"({"a": 1})"),
             Catch::Contains("arguments must be a JSON array, got object"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", "3"), Catch::Contains("got number"));
}

TEST_CASE("a wrong argument count is a bad request", "[sdk]") {
  CHECK(fails(FERRY_E_BAD_REQUEST, "twice", "[1, 2]") == "twice takes 1 argument, got 2");
  CHECK(fails(FERRY_E_BAD_REQUEST, "add", "[1]") == "add takes 2 arguments, got 1");
  CHECK(fails(FERRY_E_BAD_REQUEST, "nothing", "[0]") == "nothing takes 0 arguments, got 1");
  // The Context parameter does not count.
  CHECK(fails(FERRY_E_BAD_REQUEST, "deadline", "[1]") == "deadline takes 0 arguments, got 1");
}

TEST_CASE("an argument of the wrong type is a bad request naming it", "[sdk]") {
  std::string e = fails(FERRY_E_BAD_REQUEST, "add", R"(["x", 2])");
  CHECK_THAT(e, Catch::StartsWith("add: argument 1 has the wrong type"));
  CHECK_THAT(e, Catch::Contains("type must be number, but is string"));  // nlohmann's text
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", R"([1, "y"])"), Catch::Contains("argument 2"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "concat", R"([1, "b"])"),
             Catch::Contains("type must be string, but is number"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "negate", "[1]"), Catch::Contains("type must be boolean"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "sum", "[[1, true]]"), Catch::Contains("argument 1"));
}

TEST_CASE("integer arguments are exact and range-checked", "[sdk]") {
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", "[1.5, 2]"),
             Catch::Contains("argument 1 has the wrong type: expected an integer, got 1.5"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "byte", "[256]"), Catch::Contains("argument 1 is out of range: 256"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "byte", "[-1]"), Catch::Contains("out of range"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "add", "[4294967296, 0]"), Catch::Contains("out of range"));
  CHECK_THAT(fails(FERRY_E_BAD_REQUEST, "twice", "[18446744073709551615]"),
             Catch::Contains("out of range"));
  CHECK(ok("twice", "[-4611686018427387904]") == json(-9223372036854775807LL - 1));
}

TEST_CASE("exceptions become error replies", "[sdk]") {
  CHECK(fails(FERRY_E_PERMISSION_DENIED, "fail_code", R"([9, "not you"])") == "not you");
  CHECK(fails(FERRY_E_PLUGIN_ERROR, "fail_code", R"([0, "ok is not an error"])") == "ok is not an error");
  CHECK(fails(FERRY_E_PLUGIN_ERROR, "fail_runtime", R"(["boom"])") == "boom");
  CHECK(fails(FERRY_E_OUT_OF_MEMORY, "fail_alloc", "[]") == "out of memory");
  CHECK(fails(FERRY_E_PLUGIN_ERROR, "fail_other", "[]") == "unknown exception");
  // A result nlohmann cannot serialize (invalid UTF-8) is the plugin's error.
  CHECK_THAT(fails(FERRY_E_PLUGIN_ERROR, "bad_utf8", "[]"), Catch::Contains("UTF-8"));
  CHECK(fails(FERRY_E_BUSY, "raw_fail", "x") == "try later");
}

TEST_CASE("Context exposes deadline, cancellation and logging", "[sdk]") {
  ferry_ctx ctx;
  ctx.deadline = 1234;
  CHECK(ok("deadline", "[]", ctx) == 1234);
  CHECK(ok("deadline", "[]") == 0);
  ctx.cancelled = true;
  CHECK(ok("cancelled", "[5]", ctx) == -5);
  CHECK(ok("cancelled", "[5]") == 5);

  Reply r = call("say", R"([3, "hello"])");
  REQUIRE(r.ctx.code == FERRY_OK);
  REQUIRE(r.ctx.logs.size() == 2);
  CHECK(r.ctx.logs[0] == std::make_pair(3, std::string("hello")));
  CHECK(r.ctx.logs[1] == std::make_pair(int(FERRY_LOG_WARN), std::string("warned")));
}

TEST_CASE("raw functions pass bytes through unparsed", "[sdk]") {
  const std::string bytes("a\0b\xff", 4);
  Reply r = call("raw_echo", bytes);
  CHECK(r.rc == 0);
  CHECK(r.ctx.result == bytes);
  CHECK(call("raw_echo", "").ctx.result.empty());
  ferry_ctx ctx;
  ctx.deadline = 7;
  CHECK(call("raw_ctx", "in", ctx).ctx.result == "7:in");
}

TEST_CASE("init fails and logs when the host refuses a registration", "[sdk]") {
  ferry_registrar reg;
  reg.refuse = "concat";
  CHECK(ferry_plugin_init(&kApi, &reg) == FERRY_E_BAD_REQUEST);
  REQUIRE(!reg.logs.empty());
  CHECK(reg.logs.back().first == FERRY_LOG_ERROR);
  CHECK_THAT(reg.logs.back().second,
             Catch::Contains("cannot register function 'concat': bad_request"));
  CHECK(reg.fns.count("concat") == 0);
}

TEST_CASE("init refuses a host with another ABI major", "[sdk]") {
  ferry_host_api api = kApi;
  api.abi_major = FERRY_ABI_MAJOR + 1;
  ferry_registrar reg;
  CHECK(ferry_plugin_init(&api, &reg) == FERRY_E_UNSUPPORTED_VERSION);
  CHECK(reg.fns.empty());
}

TEST_CASE("functions can be called from several threads at once", "[sdk]") {
  const auto [fn, user] = plugin().fns.at("add");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t, fn = fn, user = user] {
      for (int i = 0; i < 500; ++i) {
        ferry_ctx ctx;
        const std::string in = "[" + std::to_string(t) + "," + std::to_string(i) + "]";
        fn(user, &ctx, reinterpret_cast<const uint8_t*>(in.data()), in.size());
        if (ctx.result != std::to_string(t + i)) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}
