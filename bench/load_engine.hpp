// ferry-bench's driving loop: T threads, each one epoll over its group of
// connections, every connection keeping D requests in flight. Per wake-up a
// connection gets one read (replies parsed in place) and one write (a batch
// of new requests); latencies go into an array sized before the run, so the
// loop allocates nothing per call. run_load is thread-safe (it owns all it uses).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::bench {

// What one phase sends, where, and how much.
struct LoadSpec {
  std::string socket;              // Unix socket of the server
  int connections = 4;             // Default: 4
  int depth = 16;                  // requests in flight per connection. Default: 16
  long calls = 100000;             // over all connections; each gets calls / connections
  int threads = 1;                 // client threads; clamped to 1..connections. Default: 1
  std::string request;             // one encoded request frame; its call_id is rewritten per call
  bool ping = false;               // expect PONG replies instead of RESULT/ERROR
  int idle_limit_ms = 10000;       // fail when no reply comes for this long
};

struct PhaseResult {
  double seconds = 0;                // from the first request to the last reply
  std::vector<double> latencies_us;  // one per answered call, sorted
  long errors = 0;                   // ERROR replies
  long timeouts = 0;                 // ERROR replies with code `timeout`
  std::string failure;               // "" = every call answered
};

// The request frames, with call_id 0 (run_load sets it).
std::string call_request(std::string_view function, std::string_view payload, std::uint32_t timeout_ms);
std::string ping_request(std::string_view payload);

PhaseResult run_load(const LoadSpec& spec);

}  // namespace ferry::bench
