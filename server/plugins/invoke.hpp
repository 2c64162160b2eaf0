// Calls a plugin function through the C ABI: the host side of ferry_ctx.
// Thread-safe: any number of calls may run at once.
#pragma once

#include <atomic>
#include <string_view>

#include "exec/job.hpp"
#include "ferry/plugin.h"

namespace ferry {

// The host API table handed to every plugin (static storage, never changes).
const ferry_host_api* host_api();

// Runs job.fn on this thread unless its deadline already passed.
// `cancelled` (optional) is what ctx_cancelled reports besides the deadline.
Completion run_job(const Job& job, const std::atomic<bool>* cancelled = nullptr);

}  // namespace ferry
