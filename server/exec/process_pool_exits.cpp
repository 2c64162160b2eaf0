// ProcessPool: how a worker's end is told. Each exit is classified once
// (ExitReason) and logged in one line with its context: plugin, pid, what
// ended it (signal, status, syscall), the function and the client's call id
// it was running. Lines are bounded per reason (EventLog): a crash loop
// under load writes a few lines and a count per window, not one per call.
#include <signal.h>
#include <sys/wait.h>

#include <spdlog/spdlog.h>

#include <string>

#include "common/log_output.hpp"
#include "exec/process_pool.hpp"
#include "exec/worker_exit.hpp"
#include "plugins/registry.hpp"
#include "sandbox/sandbox.hpp"

namespace ferry {
namespace {

spdlog::level::level_enum level_of(ExitReason r) {
  switch (r) {
    case ExitReason::deadline:
    case ExitReason::cancelled: return spdlog::level::warn;
    case ExitReason::recycled: return spdlog::level::debug;
    default: return spdlog::level::err;
  }
}

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return (abbrev != nullptr ? "SIG" + std::string(abbrev) : "signal " + std::to_string(sig)) + " (" +
         strsignal(sig) + ")";
}

}  // namespace

ExitFacts ProcessPool::exit_facts(const Worker& w, const WorkerExit& exit) {
  return ExitFacts{exit.how, exit.status, w.violation, w.fatal_signal, w.cancel_code, w.killed, w.ending};
}

// What ended it, in words: "crashed: SIGABRT (Aborted)", ...
std::string ProcessPool::exit_what(ExitReason reason, const Worker& w, const WorkerExit& exit) const {
  switch (reason) {
    case ExitReason::violation:
      return "killed for a sandbox violation: syscall " +
             (w.violation >= 0 ? sandbox::syscall_name(w.violation) : std::string("(not reported)")) +
             " is not allowed";
    case ExitReason::deadline:
      return "killed at its call's deadline (it ignored the cancellation for " + std::to_string(kCancelGraceMs) +
             " ms)";
    case ExitReason::cancelled:
      return "killed: its call was cancelled (" + std::string(ferry_code_name(w.cancel_code)) +
             ") and it ignored that for " + std::to_string(kCancelGraceMs) + " ms";
    case ExitReason::oom: return "killed by SIGKILL that ferryd did not send (the kernel's OOM killer?)";
    case ExitReason::recycled: return w.killed ? "ended (killed past its end grace)" : "ended";
    case ExitReason::crash: break;
  }
  if (w.fatal_signal != 0) return "crashed: " + signal_text(w.fatal_signal);
  if (exit.how != CLD_EXITED) return "crashed: " + signal_text(exit.status) + (w.killed ? ", sent by ferryd" : "");
  return "exited with status " + std::to_string(exit.status);
}

// The one log line of a worker's exit; a counter by reason belongs here.
void ProcessPool::note_worker_exit(std::uint16_t i, const WorkerExit& exit) {
  const Worker& w = workers_[i];
  const ExitReason reason = classify_exit(exit_facts(w, exit));
  ++exit_counts_[std::size_t(reason)];
  std::string context;
  nlohmann::json fields = {{"plugin", opt_.plugin}, {"pid", w.proc.pid}, {"reason", name(reason)}};
  if (!w.calls_in.empty()) {  // the call it was running
    const Job& call = w.calls_in.front().job;
    context = " during " + call.fn->name + ", call " + std::to_string(call.ref.call_id);
    fields["function"] = call.fn->name;
    fields["call_id"] = call.ref.call_id;
  } else if (w.state == State::starting) {
    context = " before it was ready";
  }
  const LogFields with(std::move(fields));
  const std::string kind = "plugin " + opt_.plugin + ": worker exits (" + name(reason) + ")";
  exits_.note(kind, level_of(reason), clock_.now_ms(),
              "plugin " + opt_.plugin + ": worker " + std::to_string(w.proc.pid) + " " + exit_what(reason, w, exit) +
                  context);
  arm_exit_summary();
}

// The one log line of a recycling (its exit is then logged at debug level):
// info, not a failure, but bounded like one, since max_calls_per_worker = 1
// recycles a worker per call.
void ProcessPool::note_recycle(std::uint16_t i, const std::string& why) {
  const Worker& w = workers_[i];
  const LogFields with({{"plugin", opt_.plugin}, {"pid", w.proc.pid}, {"reason", "recycled"}});
  exits_.note("plugin " + opt_.plugin + ": workers recycled", spdlog::level::info, clock_.now_ms(),
              "plugin " + opt_.plugin + ": recycling worker " + std::to_string(w.proc.pid) + ": " + why);
  arm_exit_summary();
}

// A timer for the summary of exits not logged, so it comes after a flood too.
void ProcessPool::arm_exit_summary() {
  const std::int64_t due = exits_.next_due_ms();
  if (due == 0 || exits_armed_) return;
  exits_armed_ = true;
  exits_ts_ = loop::at_ms(due);
  reactor_.ring().timeout_at(&exits_ts_, loop::Reactor::tag(id_, kExitSummary, 0));
}

void ProcessPool::on_exit_summary() {
  exits_armed_ = false;
  exits_.flush(clock_.now_ms());
  arm_exit_summary();
}

}  // namespace ferry
