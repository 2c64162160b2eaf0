#!/usr/bin/env bash
# Sets up, builds and runs every test: a normal build, then the whole suite
# under ASan+UBSan, then the thread code under TSan.
# FERRY_SANITIZERS=0 runs only the normal build (quick local loop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"

run_suite() {  # run_suite NAME BUILD_DIR CTEST_ARGS CMAKE_ARGS...
  local name=$1 dir=$2 ctest_args=$3
  shift 3
  echo "== $name: build"
  "$root/scripts/build.sh" "$dir" "$@"
  echo "== $name: test"
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure $ctest_args
}

run_suite release "$root/build" "" -DCMAKE_BUILD_TYPE=Release
if [ "${FERRY_SANITIZERS:-1}" != 0 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite asan "$root/build-asan" "" -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=address
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  run_suite tsan "$root/build-tsan" "-L tsan" -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=thread
fi
echo "== all test suites passed"
