#!/usr/bin/env bash
# Smoke test of the benchmark tools (no timing assertions): ferry-echo serves
# ferry-bench (PING, a CALL and the --echo-socket ratios, on 1 and 2 client
# threads; raw payloads with --size; idle connections with --idle) and
# ferry-blast for a few hundred calls; the output must parse, the ratio and
# summary lines be there, every call be answered without error, and
# ferry-echo remove its socket on SIGTERM.
# usage: test_bench.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
echo_pid=
trap '[ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null; rm -rf "$work"' EXIT
sock=$work/echo.sock
fail() { echo "FAIL: $*"; exit 1; }

"$build/ferry-echo" --socket "$sock" 2>"$work/echo.log" &
echo_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || fail "ferry-echo did not create $sock"

# A number in column $2 of the row starting with $1.
field() { awk -v name="$1" -v col="$2" 'index($0, name) == 1 { print $(NF - col) }' "$work/out"; }

for threads in 1 2; do
  "$build/ferry-bench" --socket "$sock" --echo-socket "$sock" -c 3 -d 4 -n 300 -f demo.noop -p '[1,2]' \
      --threads "$threads" >"$work/out" || { cat "$work/out"; fail "ferry-bench exited $? (threads $threads)"; }
  cat "$work/out"
  grep -q '^ratio demo.noop/PING: throughput [0-9.]*, p50 latency [0-9.]*x$' "$work/out" || fail "no ratio line"
  grep -q '^ratio to ferry-echo: PING throughput [0-9.]*, demo.noop throughput [0-9.]*, ' "$work/out" ||
    fail "no ratio-to-ferry-echo line"
  for row in 'ferry-echo (limit)' 'PING (loop only)' 'demo.noop'; do
    errors=$(field "$row" 1)
    rate=$(field "$row" 5)
    [ "$errors" = 0 ] || fail "$row: errors '$errors'"
    awk -v r="$rate" 'BEGIN { exit !(r + 0 > 0) }' || fail "$row: calls/s '$rate'"
  done
  [ "$(field 'ferry-echo (limit)' 0)" = 1.00 ] || fail "the limit is not 1.00 of itself"
done

# The summary line scripts/bench.sh reads.
grep -q '^summary echo_calls_s=[0-9]* ping_calls_s=[0-9]* call_calls_s=[0-9]* echo_p50_us=[0-9.]* ' "$work/out" ||
  fail "no summary line"

# --size: raw payloads of that many bytes, echoed back; MB/s per row.
"$build/ferry-bench" --socket "$sock" -c 2 -d 2 -n 40 -f demo.echo_raw --size 300000 >"$work/out" ||
  { cat "$work/out"; fail "ferry-bench --size exited $?"; }
cat "$work/out"
grep -q 'MB/s' "$work/out" || fail "--size: no MB/s column"
mbs=$(field 'PING (loop only)' 0)
awk -v r="$mbs" 'BEGIN { exit !(r + 0 > 0) }' || fail "--size: PING MB/s '$mbs'"

# --idle: N connections held open, their cost read from the server's RSS.
"$build/ferry-bench" --socket "$sock" --idle 50 --server-pid "$echo_pid" >"$work/out" ||
  { cat "$work/out"; fail "ferry-bench --idle exited $?"; }
cat "$work/out"
grep -q '^50 idle connections: ferryd RSS [0-9]* KB before' "$work/out" || fail "--idle output"
grep -q '^summary idle_conns=50 rss_before_kb=[1-9][0-9]* ' "$work/out" || fail "--idle summary"
if "$build/ferry-bench" --socket "$sock" --idle 5 >"$work/out" 2>&1; then fail "--idle without --server-pid, yet exit 0"; fi

# ferry-blast: the independent client, CALL and PING.
"$build/ferry-blast" -s "$sock" -c 2 -d 8 -n 400 -r 2 -f demo.noop -p '[]' >"$work/out" || fail "ferry-blast CALL"
grep -q '^demo.noop 2x8: min/median/max = [0-9]*/[0-9]*/[0-9]* calls/s$' "$work/out" || fail "ferry-blast output"
"$build/ferry-blast" -s "$sock" -c 2 -d 8 -n 400 -r 1 --ping >"$work/out" || fail "ferry-blast PING"
grep -q '^PING 2x8: ' "$work/out" || fail "ferry-blast PING output"

# A server that is not there is a failure, not a hang or a zero.
if "$build/ferry-bench" --socket "$work/none.sock" -n 100 >"$work/out" 2>&1; then fail "no server, yet exit 0"; fi

kill -TERM "$echo_pid"
wait "$echo_pid" || fail "ferry-echo exited $? on SIGTERM"
echo_pid=
[ ! -e "$sock" ] || fail "ferry-echo left its socket behind"
echo "ok"
