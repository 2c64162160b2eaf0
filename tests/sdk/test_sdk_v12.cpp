// Unit tests of the plugin ABI 1.2 parts of <ferry/plugin.hpp>: a fake host
// table of minor 2 drives the real entry points of sdk_v12_plugin.cpp.
#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <ferry/plugin.h>

struct ferry_instance {
  std::vector<std::pair<int, std::string>> logs;
};

struct ferry_registrar {
  std::string settings = "{}";
  std::map<std::string, std::pair<ferry_fn, void*>> fns;
  std::string refusal;
  ferry_instance* instance = nullptr;
};

struct ferry_ctx {
  bool cancelled = false;
  int emit_code = FERRY_OK;  // what ctx_emit answers
  int fd = -1;               // what ctx_cancel_fd answers
  std::vector<std::string> partials;
  int code = FERRY_OK;
  std::string result;
};

namespace {

using nlohmann::json;

int register_fn(ferry_registrar* reg, const char* name, ferry_fn fn, void* user) {
  reg->fns[name] = {fn, user};
  return 0;
}
void log(ferry_registrar*, int, const char*, size_t) {}
int64_t ctx_deadline_ms(const ferry_ctx*) { return 0; }
int ctx_cancelled(const ferry_ctx* ctx) { return ctx->cancelled; }
void ctx_log(ferry_ctx*, int, const char*, size_t) {}
void set_result(ferry_ctx* ctx, const uint8_t* data, size_t len) {
  ctx->code = FERRY_OK;
  ctx->result.assign(reinterpret_cast<const char*>(data), len);
}
void set_error(ferry_ctx* ctx, int code, const char* msg, size_t len) {
  ctx->code = code;
  ctx->result.assign(msg, len);
}
const char* settings(ferry_registrar* reg, size_t* len) {
  *len = reg->settings.size();
  return reg->settings.c_str();
}
void init_error(ferry_registrar* reg, const char* msg, size_t len) { reg->refusal.assign(msg, len); }
ferry_instance* instance(ferry_registrar* reg) { return reg->instance; }
void instance_log(ferry_instance* inst, int level, const char* msg, size_t len) {
  inst->logs.emplace_back(level, std::string(msg, len));
}
int ctx_emit(ferry_ctx* ctx, const uint8_t* data, size_t len) {
  if (ctx->emit_code != FERRY_OK) return ctx->emit_code;
  ctx->partials.emplace_back(reinterpret_cast<const char*>(data), len);
  return FERRY_OK;
}
int ctx_cancel_fd(ferry_ctx* ctx) { return ctx->fd; }

const ferry_host_api kApi = {FERRY_ABI_MAJOR, FERRY_ABI_MINOR, sizeof(ferry_host_api), register_fn, log,
                             ctx_deadline_ms, ctx_cancelled, ctx_log, set_result, set_error, nullptr,
                             settings, init_error, instance, instance_log, ctx_emit, ctx_cancel_fd};

// One load of the plugin: init with `settings_json`, fini when it goes.
struct Load {
  ferry_instance inst;
  ferry_registrar reg;
  int rc = 0;
  explicit Load(std::string settings_json) {
    reg.settings = std::move(settings_json);
    reg.instance = &inst;
    rc = ferry_plugin_init(&kApi, &reg);
  }
  ~Load() {
    if (rc == 0) ferry_plugin_fini();
  }
  ferry_ctx call(const std::string& name, const std::string& payload, ferry_ctx ctx = {}) {
    const auto [fn, user] = reg.fns.at(name);
    fn(user, &ctx, reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
    return ctx;
  }
};

}  // namespace

TEST_CASE("settings reach init as JSON; none gives an empty object", "[sdk]") {
  {
    Load load(R"({"greeting":"hi","nested":{"list":[1,2.5,"x"]}})");
    REQUIRE(load.rc == 0);
    CHECK(load.call("greet", R"(["you"])").result == "\"hi, you\"");
    CHECK(json::parse(load.call("settings", "[]").result)["nested"]["list"] == json{1, 2.5, "x"});
  }
  Load plain("{}");
  CHECK(plain.call("greet", R"(["you"])").result == "\"hello, you\"");
  CHECK(plain.call("settings", "[]").result == "{}");
}

TEST_CASE("an init that throws refuses with its reason and runs the hooks registered so far", "[sdk]") {
  Load load(R"({"refuse":true,"why":"no database"})");
  CHECK(load.rc == FERRY_E_PLUGIN_ERROR);
  CHECK(load.reg.refusal == "refused: no database");
  // The hook registered before the throw ran; then the Logger was cleared.
  REQUIRE(load.inst.logs.size() == 1);
  CHECK(load.inst.logs[0].second == "early hook");
}

TEST_CASE("shutdown hooks run once, newest first; one that throws is logged and the rest still run", "[sdk]") {
  ferry_instance* inst = nullptr;
  std::vector<std::pair<int, std::string>> seen;
  {
    Load load(R"({"greeting":"bye"})");
    REQUIRE(load.rc == 0);
    CHECK(load.inst.logs.empty());
    ferry_plugin_fini();  // the first fini runs them ...
    seen = load.inst.logs;
    load.inst.logs.clear();
    inst = &load.inst;
    ferry_plugin_fini();  // ... a second has nothing left to run
    CHECK(inst->logs.empty());
    load.rc = -1;  // already finished
  }
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].second == "last registered, first run");
  CHECK(seen[1] == std::make_pair(int(FERRY_LOG_ERROR), std::string("shutdown hook failed: second hook fails")));
  CHECK(seen[2].second == "first hook: bye");
  CHECK(seen[3].second == "early hook");
}

TEST_CASE("ctx.emit sends partials in order; a call that ended makes it throw with the host's code", "[sdk]") {
  Load load("{}");
  ferry_ctx done = load.call("count", "[3]");
  CHECK(done.code == FERRY_OK);
  CHECK(done.partials == std::vector<std::string>{"1", "2", "3"});
  ferry_ctx ended;
  ended.emit_code = FERRY_E_CANCELLED;
  ended = load.call("count", "[3]", ended);
  CHECK(ended.code == FERRY_E_CANCELLED);
  CHECK(ended.partials.empty());
}

TEST_CASE("ctx.sleep_for sleeps through, or stops once the cancel fd turns readable", "[sdk]") {
  Load load("{}");
  const int fd = eventfd(0, EFD_CLOEXEC);
  REQUIRE(fd >= 0);
  ferry_ctx ctx;
  ctx.fd = fd;
  CHECK(load.call("cancel_fd", "[]", ctx).result == std::to_string(fd));
  CHECK(load.call("nap", "[20]", ctx).result == "true");
  const std::uint64_t one = 1;
  REQUIRE(write(fd, &one, sizeof one) == sizeof one);
  const auto start = std::chrono::steady_clock::now();
  CHECK(load.call("nap", "[60000]", ctx).result == "false");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
  close(fd);
}

TEST_CASE("without a cancel fd, ctx.sleep_for still notices ctx.cancelled()", "[sdk]") {
  Load load("{}");
  ferry_ctx ctx;  // fd -1: an older host
  CHECK(load.call("cancel_fd", "[]", ctx).result == "-1");
  ctx.cancelled = true;
  CHECK(load.call("nap", "[60000]", ctx).result == "false");
}
