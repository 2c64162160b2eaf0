// The host <-> ferry-worker channel: messages on a SOCK_SEQPACKET socketpair
// (docs/worker-channel.md). One message = one Header + body. A body larger
// than kInlineMax travels in a sealed memfd passed with SCM_RIGHTS instead.
// Functions here are thread-compatible and do no logging.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.hpp"

namespace ferry::channel {

enum class Type : std::uint32_t {
  spec = 1,       // host -> worker: JSON {plugin, sandbox...}; first message
  ready = 2,      // worker -> host: JSON {name, version, functions[]}
  failed = 3,     // worker -> host: text; the worker exits after sending it
  call = 4,       // host -> worker: id, deadline, code = function index; body payload
  reply = 5,      // worker -> host: id, code (ferry_code); body result or message
  violation = 6,  // worker -> host: code = syscall number (from the SIGSYS handler)
  fatal = 7,      // worker -> host: code = signal number; the worker exits next
  // Since plugin ABI 1.2 (docs/worker-channel.md):
  log = 8,        // worker -> host: id = the call's (0: none), code = FERRY_LOG_* level; body the line
  partial = 9,    // worker -> host: id = the running call's; body one partial result
  cancel = 10,    // host -> worker: id = the running call's; it should stop (it is killed soon after)
};

inline constexpr std::uint32_t kFlagMemfd = 1;  // body is in the attached memfd
inline constexpr std::uint32_t kFlagPartials = 2;  // CALL: the client asked for partial results
inline constexpr std::uint32_t kFlagMore = 4;      // PARTIAL: a chunk; more of this partial follows
// CANCEL: calls sent before this one are unanswered (it waits behind them):
// if it has not started, it never runs. Without it, a call that has not
// started yet starts with its cancellation set.
inline constexpr std::uint32_t kFlagQueued = 8;
inline constexpr std::size_t kInlineMax = 48 * 1024;
// A LOG message's text is cut at this many bytes (by the worker, and again
// by ferryd for a worker that does not).
inline constexpr std::size_t kMaxLogLine = 4096;

struct Header {
  Type type;
  std::uint32_t flags = 0;
  std::uint64_t id = 0;
  std::int64_t deadline_ms = 0;
  std::uint32_t code = 0;
  std::uint32_t body_len = 0;  // bytes inline after the header, or in the memfd
};
static_assert(sizeof(Header) == 32);

// Sends one message (blocking unless the fd is non-blocking). Bodies over
// kInlineMax go through a sealed memfd. Internal (with errno text, e.g.
// "Broken pipe" once the peer is gone) when it cannot.
Status send(int fd, const Header& h, std::string_view body);

// Sends one message without ever waiting (MSG_DONTWAIT), for a thread that
// must not block: internal (EAGAIN: the channel is full) when it cannot. The
// body must fit inline (at most kInlineMax; else bad_request): no memfd.
Status send_nowait(int fd, const Header& h, std::string_view body);

// One message of a send_many() burst; `body` must outlive the call.
struct Outgoing {
  Header header;
  std::string_view body;
};

// Sends the messages in order, with one sendmmsg() per run of inline ones
// (a body over kInlineMax goes alone, in its memfd, as send() does): a burst
// costs the peer one wake-up. Returns how many went: fewer than n only on a
// non-blocking fd that filled up (EAGAIN), the first ones. Internal when one
// fails otherwise; those before it were sent.
Result<std::size_t> send_many(int fd, const Outgoing* msgs, std::size_t n);

// What recv() found: a message, the peer's end, or (non-blocking fd, or
// `wait` false) nothing waiting.
enum class Received { message, eof, none };

// Receives one message. bad_request when it is malformed or its body is over
// max_body (the peer is broken: stop talking to it), internal when the
// socket fails. A memfd body must be sealed and exactly body_len long, and is
// read with pread (never mapped), so a hostile peer cannot fault the reader;
// a message carrying more than one descriptor is malformed (the extra ones
// are closed at once).
Result<Received> recv(int fd, Header* h, std::string* body, std::size_t max_body, bool wait = true);

}  // namespace ferry::channel
