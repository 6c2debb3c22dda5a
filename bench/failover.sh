#!/usr/bin/env bash
# Failover on PostgreSQL: how long the deliveries a killed process was sending wait
# before another process sends them. One run on loopback:
#   1. a backlog of N events (default 3,000) on a fresh schema;
#   2. two `--role deliver` processes send it to a handler that answers in DELAY ms
#      (default 200), `max_concurrency = 32` across the cluster;
#   3. once a tenth is delivered, one of them is killed with SIGKILL; the deliveries it
#      held are recorded, and the time until the survivor has delivered all of them.
# Without presence locks they would wait for their lease (at least 60 s).
#
# Usage: bench/failover.sh [EVENTS] [DELAY_MS] [URL]
#   (defaults 3000, 200, postgres://root@127.0.0.1:5432/test; needs wrk and psql)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-3000}
delay=${2:-200}
url=${3:-postgres://root@127.0.0.1:5432/test}
ingest_addr=127.0.0.1:18111
receiver_addr=127.0.0.1:18113
schema=bench_failover

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is missing: apt-get install postgresql-client" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server

work=bench/results/failover
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh
sql() { psql -qtAX "$url" -c "$1"; }
count() { sql "$1" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

config() { # file ingest admin
  cat > "$1" <<TOML
[server]
ingest_listen = "$2"
admin_listen = "$3"
[storage]
url = "$url"
schema = "$schema"
[sources.bench]
[destinations.sink]
kind = "http"
url = "http://$receiver_addr/hook"
max_concurrency = 32
timeout = "10s"
[[routes]]
source = "bench"
destination = "sink"
TOML
}

sql "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
config "$work/ingest.toml" "$ingest_addr" 127.0.0.1:18112
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/ingest.toml" > "$work/ingest.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
while [ "$(count "SELECT count(*) FROM $schema.deliveries WHERE state = 'pending'")" -lt "$events" ]; do
  BENCH_PATH=/in/bench wrk -t1 -c8 -d1s -s bench/post.lua "http://$ingest_addr" > /dev/null
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
backlog=$(sql "SELECT count(*) FROM $schema.deliveries")

target/release/examples/bare-server "$receiver_addr" "$delay" > "$work/receiver.log" 2>&1 &
pids+=($!)
wait_port "$receiver_addr"
deliver=()
for i in 0 1; do
  config "$work/deliver$i.toml" "127.0.0.1:$((18114 + 2 * i))" "127.0.0.1:$((18115 + 2 * i))"
  FOREBAY_LOG=warn target/release/forebay serve --role deliver -c "$work/deliver$i.toml" > "$work/deliver$i.log" 2>&1 &
  pids+=($!)
  deliver+=($!)
done
while [ "$(count "SELECT count(*) FROM $schema.deliveries WHERE state = 'delivered'")" -lt $((backlog / 10)) ]; do
  sleep 0.05
done

# Kill one, and note what it held: the claims of the process with the victim's key are
# those in flight whose owner holds no presence lock once it is gone.
kill -9 "${deliver[0]}"
killed=$(now)
sql "CREATE TABLE $schema.held AS SELECT id, claimed_by FROM $schema.deliveries WHERE state = 'in_flight'" >/dev/null
sleep 0.5
victim_key=$(sql "SELECT claimed_by FROM $schema.held h WHERE NOT EXISTS (
  SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.objid::bigint = h.claimed_by) LIMIT 1")
held=$(sql "SELECT count(*) FROM $schema.held WHERE claimed_by = $victim_key")
while [ "$(sql "SELECT count(*) FROM $schema.held h JOIN $schema.deliveries d USING (id)
             WHERE h.claimed_by = $victim_key AND d.state <> 'delivered'")" -gt 0 ]; do
  sleep 0.05
done
recovered=$(now)
seconds=$(awk -v a="$killed" -v b="$recovered" 'BEGIN { printf "%.2f", b - a }')
while [ "$(sql "SELECT count(*) FROM $schema.deliveries WHERE state <> 'delivered'")" -gt 0 ]; do
  sleep 0.2
done
attempts=$(sql "SELECT count(*) FROM $schema.attempts")

echo
echo "backlog $backlog events, handler answers in ${delay} ms, max_concurrency 32, $(nproc) cores, PostgreSQL $(sql 'SHOW server_version')"
echo "killed one of two delivery processes (SIGKILL) holding $held deliveries in flight;"
echo "the survivor had sent all of them ${seconds}s after the kill; $attempts attempts for $backlog deliveries"
