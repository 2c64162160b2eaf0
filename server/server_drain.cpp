// Server: signals and the graceful stop. SIGHUP reloads; SIGUSR1 reopens the
// log file (logrotate); the first SIGINT or
// SIGTERM drains (no new connections, in-flight calls answered, replies
// flushed, bounded by drain_timeout_ms); a second one exits at once.
#include "server.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "common/clock.hpp"
#include "server_conn.hpp"

namespace ferry {

using loop::Op;
using loop::pack;
using loop::Tag;

void Server::on_signal() {
  signalfd_siginfo si;
  while (read(signal_fd_, &si, sizeof si) == ssize_t(sizeof si)) {
    if (si.ssi_signo == SIGUSR1) {
      if (on_reopen_logs_) on_reopen_logs_();
      continue;
    }
    if (si.ssi_signo == SIGHUP) {
      spdlog::info("SIGHUP: reloading the config and plugin_dir");
      if (on_hangup_) on_hangup_();
      continue;
    }
    if (draining_) {
      spdlog::warn("second signal ({}): exiting now with {} calls in flight", strsignal(int(si.ssi_signo)), calls_.live());
      std::_Exit(1);
    }
    spdlog::info("{}: stopping, draining {} calls in flight (at most {} ms)", strsignal(int(si.ssi_signo)),
                 calls_.unanswered(), cfg_.drain_timeout_ms);
    begin_drain();
  }
}

void Server::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_ts_ = loop::at_ms(clock_.now_ms() + cfg_.drain_timeout_ms);
  ring_.timeout_at(&drain_ts_, pack(Tag{Op::drain, 0, 0}));
  router_.begin_shutdown();
  ring_.cancel(pack(Tag{Op::accept, 0, 0}), pack(Tag{Op::cancel, 0, 0}));
  close(listen_fd_);
  listen_fd_ = -1;
  unlink(cfg_.socket_path.c_str());
}

// Past the drain timeout, every call still waiting is answered
// shutting_down and cancelled; one second later, connections that do not
// read their replies are no longer waited for.
void Server::on_drain_timeout() {
  if (drain_expired_) {  // the replies had their last second: give up on slow readers
    drain_final_ = true;
    return;
  }
  drain_expired_ = true;
  drain_ts_ = loop::at_ms(clock_.now_ms() + 1000);
  ring_.timeout_at(&drain_ts_, pack(Tag{Op::drain, 0, 0}));
  if (calls_.unanswered() != 0) {
    spdlog::warn("drain timeout ({} ms): answering {} unfinished calls shutting_down", cfg_.drain_timeout_ms,
                 calls_.unanswered());
  }
  std::vector<std::uint64_t> tokens;
  calls_.for_each_unanswered([&](std::uint64_t token, CallTable::Entry&) { tokens.push_back(token); });
  for (std::uint64_t token : tokens) {
    if (CallTable::Entry* e = calls_.find(token)) {
      abandon(token, *e, FERRY_E_SHUTTING_DOWN, "ferryd stopped before the call finished (drain timeout)");
    }
  }
}

// Done when every call is answered and every reply sent, or past the
// drain timeout's last second.
bool Server::drained() const {
  if (drain_final_) return true;
  if (calls_.unanswered() != 0) return false;
  for (const auto& c : conns_) {
    if (c && c->fd >= 0 && !c->dead && !c->idle_output()) return false;
  }
  return dirty_.empty();
}

}  // namespace ferry
