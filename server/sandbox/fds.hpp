// File descriptors of a worker: stdin reads /dev/null, stdout and stderr stay
// what the launcher made them (pipes to ferryd, which logs what comes), and
// nothing else inherited survives but the channel to the host.
#pragma once

#include "sandbox/sandbox.hpp"

namespace ferry::sandbox {

// /dev/null opened on fd 0.
Status null_stdin();

// Closes every fd from 3 up except `keep_fd` (-1: keep none; 0-2 is an error).
Status close_other_fds(int keep_fd);

}  // namespace ferry::sandbox
