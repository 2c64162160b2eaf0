#!/usr/bin/env bash
# Builds Ferry (Release) and measures every speed target of Ferry against its
# reference, both in the same run, RUNS times (default 3), then prints one
# table of ratios: min, median and max over the runs, and whether the target
# is met. The references: ferry-echo (an inline echo server: the limit of a
# call), PING (answered on ferryd's loop: the limit of a payload's transport),
# ferry-blast (an independent client: is ferry-bench the bottleneck?) and
# prime-loop (demo.is_prime_slow's trial division in a plain C loop on one
# core). After the table: deadline accuracy, partial results per second and
# the workers' start times. Extra arguments go to every demo.noop run.
#
#   scripts/bench.sh            RUNS=1 scripts/bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
bin=$root/build
work=$(mktemp -d)
chmod 755 "$work"
pid=
echo_pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$bin/ferry-echo" --socket "$work/echo.sock" 2>/dev/null &
echo_pid=$!
results=$work/results  # one line per measurement: ROW-KEY VALUE

start_ferryd() {  # start_ferryd EXECUTOR: the bundled config, demo on EXECUTOR with 2 workers
  sed -e "s|^socket_path = .*|socket_path = \"$work/ferry.sock\"|" \
      -e "s|^plugin_dir = .*|plugin_dir = \"$root/build/plugins\"|" \
      -e 's|^max_connections = .*|max_connections = 20000|' \
      -e 's|^log_level = .*|log_level = "debug"|' "$root/config/server.toml" > "$work/server.toml"
  printf '\n[plugins.demo.sandbox]\n' >> "$work/server.toml"
  sed -i -e "/^\[plugins.demo\]/,/^\[/ s|^executor = .*|executor = \"$1\"|" \
         -e "/^\[plugins.demo\]/,/^\[/ s|^workers = .*|workers = 2|" "$work/server.toml"
  "$bin/ferryd" --config "$work/server.toml" 2>"$work/ferryd-$1.log" &
  pid=$!
  for _ in $(seq 100); do "$bin/ferry" -s "$work/ferry.sock" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "ferryd ($1 mode) did not start:" >&2
  tail -20 "$work/ferryd-$1.log" >&2
  exit 1
}
stop_ferryd() { kill "$pid"; wait "$pid" || true; pid=; }

# kv KEY: the value of KEY=... in the summary line of $work/out.
kv() { awk -v k="$1" '/^summary / { for (i = 2; i <= NF; i++) { split($i, p, "="); if (p[1] == k) print p[2] } }' "$work/out"; }
ratio() {  # ratio A B: A / B, both measured (a missing figure stops the script)
  if ! awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > 0 && b + 0 > 0) }'; then
    echo "bench.sh: no figure to compare ('$1' / '$2'); the last output:" >&2
    cat "$work/out" >&2
    exit 1
  fi
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'
}
record() { echo "$1 $2" >> "$results"; }
bench() { "$bin/ferry-bench" --socket "$work/ferry.sock" "$@" > "$work/out" || { cat "$work/out"; exit 1; }; }

prime=100000000003  # ~0.6 ms of trial division per call
for mode in thread process; do
  start_ferryd "$mode"
  for run in $(seq "$runs"); do
    echo "--- $mode mode, run $run of $runs"
    n=$([ "$mode" = thread ] && echo 400000 || echo 200000)
    bench --echo-socket "$work/echo.sock" -c 4 -d 16 -n "$n" -f demo.noop "$@"
    record "noop_4x16_$mode" "$(ratio "$(kv call_calls_s)" "$(kv echo_calls_s)")"
    record "ping_4x16_$mode" "$(ratio "$(kv ping_calls_s)" "$(kv echo_calls_s)")"
    bench --echo-socket "$work/echo.sock" -c 1 -d 1 -n 20000 -f demo.noop "$@"
    record "noop_1x1_$mode" "$(ratio "$(kv call_p50_us)" "$(kv echo_p50_us)")"
    bench -c 4 -d 2 -n 1000 -f demo.echo_raw --size 1048576
    record "raw_$mode" "$(ratio "$(kv call_calls_s)" "$(kv ping_calls_s)")"
    record "raw_mbs_ping_$mode" "$(awk -v r="$(kv ping_calls_s)" 'BEGIN { printf "%.0f", r * 1.048576 }')"
    loop=$("$bin/prime-loop" "$prime" 1 | awk '$1 ~ /^[0-9]+$/ { print $1 }')
    [ -n "$loop" ] || { echo "bench.sh: prime-loop printed no calls/s" >&2; exit 1; }
    bench -c 4 -d 16 -n 4000 -f demo.is_prime_slow -p "[$prime]"
    record "cpu_$mode" "$(ratio "$(kv call_calls_s)" "$((2 * loop))")"
    if [ "$mode" = thread ]; then
      bench -c 4 -d 16 -n 1000000 -f demo.noop "$@"
      "$bin/ferry-blast" -s "$work/ferry.sock" -c 4 -d 16 -n 1000000 -r 1 --ping > "$work/blast"
      blast=$(awk -F'= ' 'END { split($2, m, "/"); print m[2] }' "$work/blast")
      record client_check "$(ratio "$(kv ping_calls_s)" "$blast")"
    fi
  done
  if [ "$mode" = thread ]; then
    echo "=== deadline accuracy: demo.sleep_ms(10 s) with a 100 ms deadline"
    "$bin/ferry-bench" --socket "$work/ferry.sock" -c 4 -d 16 -n 1280 -f demo.sleep_ms -p '[10000]' -t 100 | tail -1
    echo "=== partial results: one call of demo.count emitting 200,000 as fast as it can"
    "$bin/ferry-bench" --socket "$work/ferry.sock" --stream 200000 --runs 3 | tail -1
  fi
  stop_ferryd
done
idle_fds=$((10000 + 64))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$idle_fds" ]; then
  echo "=== 10,000 idle connections: skipped, the open-file hard limit ($(ulimit -Hn)) is under $idle_fds"
  runs_idle=0
else
  runs_idle=$runs
fi
for run in $(seq "$runs_idle"); do  # on a fresh ferryd each time: its RSS is the start's
  start_ferryd thread
  bench --idle 10000 --server-pid "$pid"
  head -1 "$work/out"
  record idle_kb "$(kv kb_per_conn)"
  record idle_rss_mb "$(awk -v k="$(kv rss_pinged_kb)" 'BEGIN { printf "%.1f", k / 1024 }')"
  record idle_returned_mb "$(awk -v a="$(kv rss_closed_kb)" -v b="$(kv rss_before_kb)" 'BEGIN { printf "%.1f", (a - b) / 1024 }')"
  stop_ferryd
done
echo "=== process-mode worker start (spawn to ready)"
grep -o 'ready in [0-9]* ms' "$work/ferryd-process.log" | awk '{print $3}' | sort -n |
  awk '{a[NR]=$1} END {if (NR) printf "%d workers: min %d ms, median %d ms, max %d ms\n", NR, a[1], a[int((NR+1)/2)], a[NR]}'

# The table: KEY, what it is, the target (>= or <= a number), one row each.
echo
echo "=== Ferry vs its limits: $runs runs on $(nproc) cores, $(date -u +%Y-%m-%d)"
printf '%-62s %-8s %8s %8s %8s  %s\n' "measure" "target" "min" "median" "max" "met"
while IFS='|' read -r key what target; do
  awk -v key="$key" -v what="$what" -v target="$target" '
    $1 == key { v[++n] = $2 }
    END {
      if (n == 0) exit
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      med = v[int((n + 1) / 2)]
      met = "-"
      if (target ~ /^>=/) met = (med >= substr(target, 3) + 0) ? "yes" : "NO"
      if (target ~ /^<=/) met = (med <= substr(target, 3) + 0) ? "yes" : "NO"
      printf "%-62s %-8s %8s %8s %8s  %s\n", what, target, v[1], med, v[n], met
    }' "$results"
done <<'ROWS'
client_check|ferry-bench PING / ferry-blast PING, 4x16 (the client)|>=0.90
ping_4x16_thread|PING / ferry-echo, 4x16|-
noop_4x16_thread|thread demo.noop / ferry-echo, 4x16|>=0.50
noop_1x1_thread|thread demo.noop p50 round trip / ferry-echo's, 1x1|<=1.30
noop_4x16_process|process demo.noop / ferry-echo, 4x16 (2 workers)|>=0.25
noop_1x1_process|process demo.noop p50 round trip / ferry-echo's, 1x1|-
raw_thread|thread demo.echo_raw 1 MiB / PING 1 MiB, MB/s|>=0.50
raw_process|process demo.echo_raw 1 MiB / PING 1 MiB, MB/s|>=0.30
raw_mbs_ping_thread|PING 1 MiB, MB/s (the reference of the two rows above)|-
cpu_thread|thread demo.is_prime_slow / 2 x prime-loop (one core each)|>=0.95
cpu_process|process demo.is_prime_slow / 2 x prime-loop (one core each)|>=0.95
idle_kb|10,000 idle connections: ferryd KB per connection|<=4
idle_rss_mb|10,000 idle connections: ferryd RSS, MB|<=50
idle_returned_mb|after they closed: ferryd RSS above its start, MB|-
ROWS
