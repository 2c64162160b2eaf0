#!/usr/bin/env bash
# Builds Ferry (Release) and measures demo.noop through the thread executor and
# through the process executor (sandboxed workers), each against PING and
# against ferry-echo (the limit: an inline echo server) in the same ferry-bench
# run, at 4 connections x 16 in flight and at 1 x 1; then checks ferry-bench's
# PING figure against ferry-blast, an independent client; then how
# late `timeout` replies come after a 100 ms deadline, and how many partial
# results one streamed call delivers per second. Prints the workers' start
# times too. Extra arguments go to every demo.noop run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
work=$(mktemp -d)
chmod 755 "$work"
pid=
echo_pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$root/build/ferry-echo" --socket "$work/echo.sock" 2>/dev/null &
echo_pid=$!

start_ferryd() {  # start_ferryd EXECUTOR
  sed -e "s|^socket_path = .*|socket_path = \"$work/ferry.sock\"|" \
      -e "s|^plugin_dir = .*|plugin_dir = \"$root/build/plugins\"|" \
      -e 's|^log_level = .*|log_level = "debug"|' "$root/config/server.toml" > "$work/server.toml"
  printf '\n[plugins.demo.sandbox]\n' >> "$work/server.toml"
  sed -i "/^\[plugins.demo\]/,/^\[/ s|^executor = .*|executor = \"$1\"|" "$work/server.toml"
  "$root/build/ferryd" --config "$work/server.toml" 2>"$work/ferryd-$1.log" &
  pid=$!
  for _ in $(seq 100); do "$root/build/ferry" -s "$work/ferry.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

for mode in thread process; do
  start_ferryd "$mode"
  echo "=== demo.noop in $mode mode"
  "$root/build/ferry-bench" --socket "$work/ferry.sock" --echo-socket "$work/echo.sock" -c 4 -d 16 -n 200000 -f demo.noop "$@"
  "$root/build/ferry-bench" --socket "$work/ferry.sock" --echo-socket "$work/echo.sock" -c 1 -d 1 -n 20000 -f demo.noop "$@"
  if [ "$mode" = thread ]; then
    echo "=== the client is not the bottleneck: PING at 4 x 16, ferry-bench vs ferry-blast (independent, in C)"
    for _ in 1 2 3; do
      "$root/build/ferry-bench" --socket "$work/ferry.sock" -c 4 -d 16 -n 1000000 | grep '^PING'
    done
    "$root/build/ferry-blast" -s "$work/ferry.sock" -c 4 -d 16 -n 1000000 -r 3 --ping | tail -1
  fi
  echo "=== deadline accuracy in $mode mode: demo.sleep_ms(10 s) with a 100 ms deadline"
  "$root/build/ferry-bench" --socket "$work/ferry.sock" -c 4 -d 16 -n 1280 -f demo.sleep_ms -p '[10000]' -t 100
  echo "=== partial results in $mode mode: one call of demo.count emitting 200,000 as fast as it can"
  "$root/build/ferry-bench" --socket "$work/ferry.sock" --stream 200000 --runs 3
  kill "$pid"; wait "$pid" || true; pid=
done
echo "=== process-mode worker start (spawn to ready)"
grep -o 'ready in [0-9]* ms' "$work/ferryd-process.log" | awk '{print $3}' | sort -n |
  awk '{a[NR]=$1} END {if (NR) printf "%d workers: min %d ms, median %d ms, max %d ms\n", NR, a[1], a[int((NR+1)/2)], a[NR]}'
