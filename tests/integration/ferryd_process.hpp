// Starts the real ferryd binary on a private socket for one test.
// Not thread-safe; one instance per test case.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/client.hpp"

namespace ferry::test {

class FerrydProcess {
 public:
  // Writes a server.toml (with `extra_toml` appended) in a fresh temp dir,
  // links `plugins` (paths of .so files) into its plugin_dir, starts ferryd
  // and returns once it reported "ready". Throws with ferryd's log if not.
  FerrydProcess(const std::vector<std::string>& plugins, const std::string& extra_toml = "",
                const std::string& server_toml = "");
  ~FerrydProcess();

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  // Sends `sig` and waits for exit; returns the exit status (-signal if killed).
  int stop(int sig);
  // Waits for ferryd to exit on its own; returns the status as stop() does.
  int wait();
  std::string log() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

// Paths of built artefacts, from the build system.
std::string plugin_path(const std::string& name);   // bundled example plugin
std::string fixture_path(const std::string& name);  // tests/plugins fixture
std::string ferry_cli_path();

// Runs a command with `input` as its stdin; returns its exit status and
// captures stdout and stderr.
struct Captured {
  int status;
  std::string out;
  std::string err;
};
Captured run_command(const std::vector<std::string>& argv, const std::string& input = "");

// A connected client; fails the running Catch2 test when ferryd is unreachable.
std::unique_ptr<Client> connect(const FerrydProcess& d);
// A round trip that must get a reply (result or error); fails the test if the
// connection is lost.
Reply must_call(Client& c, std::string_view fn, std::string_view args, std::uint32_t timeout_ms = 0);
// The next reply, which must answer call `id` (else the test fails).
Reply reply_for(Client& c, std::uint64_t id);

// A process's resident set (VmRSS), in KiB; fails the test when it has none.
long rss_kb(pid_t pid);

// Connections ferryd has open now (its ferry_connections metric).
double connections(Client& c);

// The ferry.status entry of `plugin`; a null JSON value when it is not loaded.
nlohmann::json plugin_status(Client& c, const std::string& plugin);
// Reads `plugin`'s status until pred holds, for at most 20 s (each read is a
// round trip to ferryd); fails the test, naming `what`, otherwise.
nlohmann::json status_until(Client& c, const std::string& plugin,
                            const std::function<bool(const nlohmann::json&)>& pred, const char* what);

// Calls `done` until it returns true, for at most 20 s; fails the test,
// naming `what`, otherwise. The cap only matters on failure: make each call
// a round trip to ferryd, so the wait needs no sleeps and ends at once.
void wait_until(const std::function<bool()>& done, const char* what);

// A frame header as docs/protocol.md §2 lays it out (flags and reserved 0).
std::string header(std::uint32_t len, std::uint8_t type, std::uint64_t id);

// A raw connection with no handshake: sends `bytes`, returns the server's
// first frame ({type, code from an ERROR body, its body}) and, when
// `wait_close`, whether the server then closed the connection.
struct RawAnswer {
  int type = -1;
  int code = -1;
  std::string body;
  bool closed = false;
};
RawAnswer raw_exchange(const FerrydProcess& d, const std::string& bytes, bool wait_close = true);

// Milliseconds of the steady clock since t.
std::int64_t ms_since(std::chrono::steady_clock::time_point t);

// Whether this kernel gives process workers their whole sandbox.
bool sandbox_available();
// A [plugins.NAME] section: executor, workers, then `extra` lines; a
// process plugin runs unsandboxed where the kernel lacks the sandbox.
std::string plugin_toml(const std::string& name, const std::string& executor, int workers,
                        const std::string& extra = "");

}  // namespace ferry::test
