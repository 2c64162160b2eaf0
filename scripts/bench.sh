#!/usr/bin/env bash
# Builds Ferry (Release), starts ferryd with config/server.toml on a private
# socket, runs ferry-bench at 4 connections x 16 in flight and at 1 x 1
# against demo.noop (PING figures and the ratio come from the same runs),
# then stops ferryd. Extra arguments go to both ferry-bench runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
sed -e "s|^socket_path = .*|socket_path = \"$work/ferry.sock\"|" \
    -e "s|^plugin_dir = .*|plugin_dir = \"$root/build/plugins\"|" \
    -e 's|^log_level = .*|log_level = "warn"|' "$root/config/server.toml" > "$work/server.toml"
"$root/build/ferryd" --config "$work/server.toml" 2>"$work/ferryd.log" &
pid=$!
for _ in $(seq 100); do "$root/build/ferry" -s "$work/ferry.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$root/build/ferry-bench" --socket "$work/ferry.sock" -c 4 -d 16 -n 200000 -f demo.noop "$@"
"$root/build/ferry-bench" --socket "$work/ferry.sock" -c 1 -d 1 -n 20000 -f demo.noop "$@"
