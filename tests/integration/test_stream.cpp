// Streamed partial results (protocol 1.2), end to end in both executors:
// order, the one final reply, clients that did not ask or speak 1.1,
// cancellation, and the clients (C++ stream(), ferry call --stream).
#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <thread>
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
using ferry::test::status_until;
using json = nlohmann::json;

namespace {

constexpr int kResult = 3, kError = 4, kHello = 1;

FerrydProcess start(const std::string& executor) {
  return FerrydProcess({plugin_path("demo"), fixture_path("fixture_stream")}, ferry::test::stream_config(executor));
}

std::vector<std::string> numbers(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) out.push_back(std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("stream: partials arrive in order, all before the one result", "[integration][stream]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d = start(executor);
  auto c = connect(d);
  REQUIRE(c->server_minor() == 2);
  std::vector<std::string> parts;
  auto r = c->stream("demo.count", "[200,0]", [&](std::string_view p) { parts.emplace_back(p); });
  REQUIRE(r.has_value());
  CHECK(r->kind == ReplyKind::result);
  CHECK(r->data == "200");
  CHECK(parts == numbers(1, 200));

  // Two streams on one connection, pipelined: each keeps its own order, and
  // nothing of a call comes after its result.
  const std::uint64_t a = c->send_stream("demo.count", "[300,0]");
  const std::uint64_t b = c->send_stream("demo.count", "[300,0]");
  REQUIRE((a != 0 && b != 0));
  std::map<std::uint64_t, std::vector<std::string>> seen;
  std::map<std::uint64_t, std::string> result;
  while (result.size() < 2) {
    auto f = c->read_reply();
    REQUIRE(f.has_value());
    REQUIRE((f->call_id == a || f->call_id == b));
    REQUIRE(result.count(f->call_id) == 0);  // after its result: never
    if (f->kind == ReplyKind::partial) seen[f->call_id].push_back(f->data);
    else result[f->call_id] = f->data;
  }
  CHECK(seen[a] == numbers(1, 300));
  CHECK(seen[b] == numbers(1, 300));
  CHECK(result[a] == "300");
  CHECK(result[b] == "300");
}

TEST_CASE("stream: a call that did not ask, or a 1.1 client, gets the result and no PARTIAL",
          "[integration][stream]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d = start(executor);
  for (const std::uint16_t minor : {1, 2}) {  // a 1.1 client, and a 1.2 client without the flag
    INFO("client minor " << minor);
    RawConn raw(d);
    raw.send(ferry::test::hello_frame(minor) + ferry::test::call_frame(1, "demo.count", "[50,0]", 0));
    CHECK(raw.read().type == kHello);
    // Its partials would all come before its result (they reach the loop first).
    const auto f = raw.read();
    CHECK(f.type == kResult);
    CHECK(f.id == 1);
    CHECK(f.body == "50");
  }
}

TEST_CASE("stream: a CALL asking for partials after a 1.1 HELLO is malformed", "[integration][stream]") {
  FerrydProcess d = start("thread");
  RawConn raw(d);
  raw.send(ferry::test::hello_frame(1) + ferry::test::call_frame(1, "demo.count", "[3,0]", 1));
  CHECK(raw.read().type == kHello);
  const auto f = raw.read();
  CHECK(f.type == kError);
  CHECK(f.id == 0);
  CHECK(f.body.substr(0, 2) == std::string("\x02\x00", 2));  // bad_request
  CHECK(raw.read().type == -1);                                // and closed
  auto c = connect(d);  // the server is fine
  CHECK(c->call("demo.echo", "[1]")->data == "1");
}

TEST_CASE("stream: CANCEL ends a stream with exactly one reply, and the function stops", "[integration][stream]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d = start(executor);
  auto c = connect(d);
  const std::uint64_t id = c->send_stream("demo.count", "[1000000,2]");  // would run for 2000 s
  for (const std::string want : {"1", "2", "3"}) {
    auto f = c->read_reply();
    REQUIRE(f.has_value());
    CHECK(f->kind == ReplyKind::partial);
    CHECK(f->data == want);
  }
  REQUIRE(c->send_cancel(id));
  std::optional<ferry::Reply> f;
  while ((f = c->read_reply()) && f->kind == ReplyKind::partial) CHECK(f->call_id == id);  // ones already on the way
  REQUIRE(f.has_value());
  CHECK(f->call_id == id);
  CHECK(f->kind == ReplyKind::error);
  CHECK(f->code == FERRY_E_CANCELLED);
  // The function saw its cancellation (in sleep_for or emit) and returned: in
  // process mode in time for its worker to be kept.
  auto st = status_until(*c, "demo", [](const json& s) { return s["running"] == 0; }, "the count stops");
  CHECK(st["restarts"] == 0);
  CHECK(st["stuck"] == 0);
  // Nothing more of the cancelled call (status_until kept any other frame
  // for read_reply): the next frame answers this PING.
  const std::uint64_t ping = c->send_ping("after");
  auto next = c->read_reply();
  REQUIRE(next.has_value());
  CHECK(next->kind == ReplyKind::pong);
  CHECK(next->call_id == ping);
}

TEST_CASE("stream: errors end a stream as usual, after the partials sent before them", "[integration][stream]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d = start(executor);
  auto c = connect(d);
  std::vector<std::string> parts;
  auto r = c->stream("demo.count", "[-1,0]", [&](std::string_view p) { parts.emplace_back(p); });
  REQUIRE(r.has_value());
  CHECK(r->kind == ReplyKind::error);
  CHECK(r->code == FERRY_E_BAD_REQUEST);
  CHECK(parts.empty());
  r = c->stream("stream.raw_parts", "[]", [&](std::string_view p) { parts.emplace_back(p); });
  REQUIRE(r.has_value());
  CHECK(r->data == "\"done\"");
  CHECK(parts == std::vector<std::string>{"not json", "", "\xff"});  // bytes as emitted
}

TEST_CASE("stream: ferry call --stream prints each partial as a JSON line, then the result", "[integration][stream][cli]") {
  const std::string executor = GENERATE("thread", "process");
  INFO("executor " << executor);
  FerrydProcess d = start(executor);
  const std::string cli = ferry::test::ferry_cli_path();
  auto out = ferry::test::run_command({cli, "--socket", d.socket(), "call", "--stream", "demo.count", "3", "0"});
  CHECK(out.status == 0);
  CHECK(out.out == "1\n2\n3\n3\n");
  // Partials (and results) that are not JSON become JSON strings of their bytes.
  out = ferry::test::run_command({cli, "--socket", d.socket(), "call", "--stream", "stream.raw_parts"});
  CHECK(out.status == 0);
  CHECK(out.out == "\"not json\"\n\"\"\n\"\xef\xbf\xbd\"\n\"done\"\n");
  out = ferry::test::run_command({cli, "--socket", d.socket(), "call", "--stream", "demo.count", "-1", "0"});
  CHECK(out.status == 10 + FERRY_E_BAD_REQUEST);
  CHECK(out.out.empty());
  CHECK(out.err.find("bad_request") != std::string::npos);
  // Without --stream: the result alone.
  out = ferry::test::run_command({cli, "--socket", d.socket(), "call", "demo.count", "3", "0"});
  CHECK(out.out == "3\n");
}

namespace {

// A server that speaks protocol 1.1: answers each HELLO with minor 1, then
// records what the client sends until it closes. One connection at a time.
class OldServer {
 public:
  OldServer() : dir_(std::filesystem::temp_directory_path() / ("ferry-old-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "old.sock").string();
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 4) == 0);
  }
  ~OldServer() {
    ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }
  // Serves one connection on a thread; returns what followed the HELLO.
  std::thread serve_one(std::string* after_hello) {
    return std::thread([this, after_hello] {
      const int c = accept(fd_, nullptr, nullptr);
      char hello[24];
      if (c < 0 || recv(c, hello, sizeof hello, MSG_WAITALL) != sizeof hello) return;
      std::string answer = ferry::test::header(8, 1, 0) + std::string("\x01\x00\x01\x00\x00\x00\x10\x00", 8);
      (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      char buf[4096];
      for (ssize_t n; (n = recv(c, buf, sizeof buf, 0)) > 0;) after_hello->append(buf, std::size_t(n));
      ::close(c);
    });
  }

 private:
  std::filesystem::path dir_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace

TEST_CASE("stream: clients ask for partials only when the server speaks 1.2", "[integration][stream]") {
  OldServer old;
  std::string sent;
  std::thread t = old.serve_one(&sent);
  {
    std::string err;
    auto c = ferry::Client::connect(old.path(), &err);
    REQUIRE(c != nullptr);
    CHECK(c->server_minor() == 1);
    CHECK(c->send_stream("demo.count", "[3,0]") == 0);
    CHECK(c->last_error().find("1.1") != std::string::npos);
    CHECK_FALSE(c->stream("demo.count", "[3,0]", [](std::string_view) {}).has_value());
    CHECK(c->connected());
  }
  t.join();
  CHECK(sent.empty());  // nothing but the HELLO reached the old server

  t = old.serve_one(&sent);
  auto out = ferry::test::run_command(
      {ferry::test::ferry_cli_path(), "--socket", old.path(), "call", "--stream", "demo.count", "3", "0"});
  t.join();
  CHECK(out.status == 10 + FERRY_E_UNSUPPORTED_VERSION);
  CHECK(out.err.find("no partial results") != std::string::npos);
  CHECK(sent.empty());
}
