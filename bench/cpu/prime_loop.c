/* prime-loop: the per-core limit of demo.is_prime_slow. Runs the same trial
 * division on one core in a plain loop for about SECONDS and prints calls/s.
 *
 *   prime-loop N [SECONDS]    (default 2 s)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "trial_division.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: prime-loop N [SECONDS]\n");
    return 2;
  }
  const uint64_t n = strtoull(argv[1], NULL, 10);
  const double seconds = argc > 2 ? atof(argv[2]) : 2.0;
  volatile int sink = 0;
  long calls = 0;
  const double start = now();
  double elapsed = 0;
  do {
    for (int i = 0; i < 16; ++i) sink += ferry_trial_division(n);  /* volatile: the calls are not folded */
    calls += 16;
    elapsed = now() - start;
  } while (elapsed < seconds);
  printf("%.0f calls/s (is_prime(%llu) = %d, %ld calls in %.2f s)\n", (double)calls / elapsed,
         (unsigned long long)n, ferry_trial_division(n), calls, elapsed);
  return 0;
}
