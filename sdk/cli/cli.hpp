// What the `ferry` command's files share: its options, exit statuses and the
// helpers that report results and errors. Single-threaded, like the command.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ferry/client.hpp"
#include "ferry/errors.h"

namespace ferry_cli {

constexpr int kExitUnexpected = 1, kExitUsage = 2, kExitNoConnect = 3, kExitLost = 4;
constexpr int kExitServerError = 10;  // + ferry_code

struct Options {
  std::string socket = "/tmp/ferry.sock";
  std::string fn;
  std::vector<std::string> args;  // call: the ARGs, exactly as given
  std::size_t verbatim = 0;        // call: how many of the last ARGs came after `--`
  bool raw = false;
  bool stream = false;  // call: print partial results as JSON lines
  std::uint32_t timeout_ms = 0;
  std::string priority = "normal";
  bool json = false;
  int count = 1;
  bool once = false;       // top: one snapshot, then exit
  int interval_ms = 1000;  // top: between samples
};

// Prints "ferry: message" to stderr; returns status.
int fail(int status, const std::string& message);
// An ERROR reply: "ferry: code_name: message", exit status 10 + code.
int server_error(ferry_code code, const std::string& message);
// A connected client, or null with *status set (and the reason printed).
std::unique_ptr<ferry::Client> connect_or_report(const std::string& socket, int* status);
// Prints a result to stdout (with a newline unless raw), or an error to
// stderr; returns the exit status.
int report(const ferry::Client& client, const std::optional<ferry::Reply>& reply, bool raw = false);

// show.cpp: the built-ins, rendered for people (or as JSON with --json).
int run_list(const Options& o);
int run_status(const Options& o);
int run_reload(const Options& o);

// top.cpp: the ferry.metrics built-in, as is (`ferry metrics`) or live (`ferry top`).
int run_metrics(const Options& o);
int run_top(const Options& o);

}  // namespace ferry_cli
