/* Trial division, the CPU-bound work that demo.is_prime_slow runs and that
 * bench/cpu/prime_loop.c times as a plain C loop: the same function on both
 * sides, so their rates compare the executors, not two algorithms. Pure;
 * thread-safe. */
#ifndef FERRY_BENCH_TRIAL_DIVISION_H
#define FERRY_BENCH_TRIAL_DIVISION_H

#include <stdint.h>

static inline int ferry_trial_division(uint64_t n) {
  if (n < 2) return 0;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return 0;
  }
  return 1;
}

#endif
