#!/usr/bin/env bash
# The full zero-failed-calls soak: 1,024 calls in flight while the "ops" plugin
# is swapped between two versions 100 times and the config reloaded 20 times,
# in thread mode, then in process mode. Prints the calls, errors, lost replies
# and ferryd's threads, fds, mapped plugin copies and children before/after.
# FERRY_SOAK_SWAPS / FERRY_SOAK_RELOADS override the counts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
export FERRY_SOAK_SWAPS=${FERRY_SOAK_SWAPS:-100} FERRY_SOAK_RELOADS=${FERRY_SOAK_RELOADS:-20}
status=0
for executor in thread process; do
  echo "=== soak, $executor executor: $FERRY_SOAK_SWAPS swaps, $FERRY_SOAK_RELOADS reloads"
  if out=$(FERRY_SOAK_EXECUTOR=$executor "$root/build/tests/integration/test_live" "soak*" 2>&1); then
    result=passed
  else
    result=FAILED status=1
  fi
  grep -A3 "soak: [0-9]" <<<"$out" | sed 's/^ *//' | tr '\n' ' '
  echo
  echo "$result"
  [ "$result" = passed ] || echo "$out" | tail -40
done
exit $status
