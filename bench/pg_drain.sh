#!/usr/bin/env bash
# PostgreSQL delivery alone, for quick comparisons while working on it: a backlog of
# EVENTS events (filled by one `--role ingest` process), drained by PROCS `--role deliver`
# processes to the bare server; prints deliveries/s and the CPU of forebay and of every
# postgres process over the drain. REUSE=1 puts the last run's deliveries back to pending
# (and deletes their attempts) instead of filling a new backlog. CAP=N sets the
# destination's max_concurrency (a cap for the cluster; default 64), CAP= leaves it unset.
# With pg_stat_statements loaded, `SELECT pg_stat_statements_reset()` before a run and a
# look at pg_stat_statements after it show where PostgreSQL's time went.
#
# Usage: [REUSE=1] [CAP=N] bench/pg_drain.sh [EVENTS] [PROCS] [URL]
#   (defaults 20000, 2, postgres://root@127.0.0.1:5432/test?sslmode=disable; needs wrk, psql)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-20000}
procs=${2:-2}
url=${3:-postgres://root@127.0.0.1:5432/test?sslmode=disable}
cap_line=${CAP-64}
cap_line=${cap_line:+max_concurrency = $cap_line}
receiver=127.0.0.1:18393
cargo build --release --quiet --bin forebay --example bare-server
source bench/lib.sh
work=bench/results/pg_drain
mkdir -p "$work"
sql() { PGOPTIONS="-c client_min_messages=warning" psql -qtAX "$url" -c "$1"; }
count() { sql "$1" 2>/dev/null || echo 0; }
config() { # file ingest admin
  cat > "$1" <<TOML
[server]
ingest_listen = "$2"
admin_listen = "$3"
[storage]
url = "$url"
schema = "bench_drain"
[sources.bench]
[destinations.sink]
kind = "http"
url = "http://$receiver/hook"
$cap_line
[[routes]]
source = "bench"
destination = "sink"
TOML
}
if [ "${REUSE:-0}" = 1 ]; then
  sql "UPDATE bench_drain.deliveries SET state = 'pending', attempts = 0, lease_until = NULL,
         claimed_by = NULL; DELETE FROM bench_drain.attempts" >/dev/null
else
  sql "DROP SCHEMA IF EXISTS bench_drain CASCADE" >/dev/null
  config "$work/ingest.toml" 127.0.0.1:18391 127.0.0.1:18392
  FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/ingest.toml" > "$work/ingest.log" 2>&1 &
  pids+=($!)
  wait_port 127.0.0.1:18391
  for _ in $(seq 1 20); do
    [ "$(count "SELECT count(*) FROM bench_drain.deliveries WHERE state = 'pending'")" -lt "$events" ] || break
    BENCH_PATH=/in/bench wrk -t2 -c64 -d3s -s bench/post.lua http://127.0.0.1:18391 > /dev/null
  done
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
fi
sql "VACUUM ANALYZE bench_drain.deliveries" >/dev/null
backlog=$(sql "SELECT count(*) FROM bench_drain.deliveries WHERE state = 'pending'")
target/release/examples/bare-server "$receiver" > "$work/receiver.log" 2>&1 &
pids+=($!)
wait_port "$receiver"
ticks=$(getconf CLK_TCK)
pg_seconds() {
  for p in $(pgrep -u postgres); do awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null; done |
    awk -v t="$ticks" '{ s += $1 } END { print s / t }'
}
pg_before=$(pg_seconds)
start=$(date +%s.%N)
delivering=()
for i in $(seq 0 $((procs - 1))); do
  config "$work/deliver$i.toml" "127.0.0.1:$((18400 + i))" "127.0.0.1:$((18420 + i))"
  FOREBAY_LOG=error target/release/forebay serve --role deliver -c "$work/deliver$i.toml" > "$work/deliver$i.log" 2>&1 &
  pids+=($!)
  delivering+=($!)
done
deadline=$(( $(date +%s) + 600 ))
while [ "$(sql "SELECT count(*) FROM bench_drain.deliveries WHERE state <> 'delivered'")" -gt 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not drained in 600 s" >&2; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
forebay_ticks=0
for p in "${delivering[@]}"; do
  forebay_ticks=$((forebay_ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
done
pg_after=$(pg_seconds)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
echo "$procs deliver processes, ${cap_line:-no max_concurrency}: $backlog deliveries in ${seconds}s," \
  "$(awk -v n="$backlog" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }') deliveries/s;" \
  "forebay CPU $(awk -v c="$forebay_ticks" -v t="$ticks" -v s="$seconds" 'BEGIN { printf "%.0f", 100 * c / t / s }')%," \
  "PostgreSQL CPU $(awk -v a="$pg_before" -v b="$pg_after" -v s="$seconds" 'BEGIN { printf "%.0f", 100 * (b - a) / s }')%;" \
  "attempts $(sql 'SELECT count(*) FROM bench_drain.attempts')"
