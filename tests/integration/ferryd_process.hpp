// Starts the real ferryd binary on a private socket for one test.
// Not thread-safe; one instance per test case.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

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

// Runs a command, returns its exit status and captures stdout and stderr.
struct Captured {
  int status;
  std::string out;
  std::string err;
};
Captured run_command(const std::vector<std::string>& argv);

}  // namespace ferry::test
