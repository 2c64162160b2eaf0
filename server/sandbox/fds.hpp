// File descriptors of a worker: stdio goes to /dev/null and nothing inherited
// survives but the channel to the host.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// /dev/null opened on fds 0, 1 and 2.
Status redirect_stdio();

// Closes every fd from 3 up except `keep_fd` (-1: keep none; 0-2 is an error).
Status close_other_fds(int keep_fd);

}  // namespace ferry::sandbox
