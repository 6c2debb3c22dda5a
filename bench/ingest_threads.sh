#!/usr/bin/env bash
# Ingest load on one forebay binary (SQLite, the same source and route as ingest.sh),
# printing wrk's rate and latency, the CPU each of the server's threads spent per request
# (the writer, the checkpoint thread, the tokio workers), and resident memory. For
# comparing two builds side by side: run it with each in turn, alternating.
#
# Usage: bench/ingest_threads.sh BINARY [DURATION] [STORE_DIR]
#   (default 20s; with STORE_DIR the store is kept there and reused by the next run, to
#   measure on a store already holding events; without it, a fresh one)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$1
duration=${2:-20s}
work=${3:-bench/results/ingest_threads}
ingest_addr=127.0.0.1:18191
admin_addr=127.0.0.1:18192

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -n "${3:-}" ] || rm -rf "$work"
mkdir -p "$work"
source bench/lib.sh

serve_ingest "$bin" "$work" "$ingest_addr" "$admin_addr"
pid=$served

# Per thread: "name-tid ticks" (utime + stime, in clock ticks).
ticks() {
  for t in /proc/"$pid"/task/*; do
    echo "$(tr ' ' _ < "$t/comm")-${t##*/} $(awk '{print $14 + $15}' "$t/stat")"
  done | sort
}
ticks > "$work/before"
BENCH_PATH=/in/bench wrk -t2 -c64 -d"$duration" --latency -s bench/post.lua "http://$ingest_addr" > "$work/wrk.txt"
ticks > "$work/after"
rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
kill "$pid"

requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
hz=$(getconf CLK_TCK)
awk '/Requests\/sec/ {print "req/s " $2} /^ +50%/ {print "p50 " $2} /^ +99%/ {print "p99 " $2} /^non2xx/ {print "non-2xx " $2}' "$work/wrk.txt"
join "$work/before" "$work/after" | awk -v n="$requests" -v hz="$hz" \
  '{ d = $3 - $2; if (d > 0) printf "%-30s %6.1f us of CPU per request\n", $1, d * 1e6 / hz / n }'
echo "resident ${rss} KiB (peak ${hwm} KiB)"
