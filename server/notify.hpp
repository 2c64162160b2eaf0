// Readiness for a service manager: tells systemd (sd_notify "READY=1") that
// ferryd listens, when ferryd runs under a Type=notify unit and was built
// with libsystemd; a no-op otherwise. Call from the main thread, once.
#pragma once

namespace ferry {

// Sends READY=1 to $NOTIFY_SOCKET, if set, and unsets it, so that no
// process ferryd starts can speak for it. A failure is logged, not fatal:
// systemd then reports the start as timed out, which says what went wrong.
void notify_ready();

}  // namespace ferry
