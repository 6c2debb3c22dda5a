#!/usr/bin/env bash
# PostgreSQL benchmark, in one run on loopback (wrk, 1 KiB JSON, 64 connections):
#   1. ingest: the bare hyper server (stores nothing), a one-commit-per-request server
#      on a 16-connection pool (bench/one_commit_server.rs), and `forebay serve --role
#      ingest` on PostgreSQL (group commit), each on a fresh schema;
#   2. delivery: a backlog of N events (default 20,000) sent by two `--role deliver`
#      processes sharing the database to the bare server; deliveries per second.
# Prints a Markdown table for BENCHMARKS.md.
#
# Usage: bench/postgres.sh [DURATION] [EVENTS] [URL]
#   (defaults 15s, 20000, postgres://root@127.0.0.1:5432/test; needs wrk and psql)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-15s}
events=${2:-20000}
url=${3:-postgres://root@127.0.0.1:5432/test}
connections=64
threads=2
bare_addr=127.0.0.1:18090
one_addr=127.0.0.1:18096
ingest_addr=127.0.0.1:18091
admin_addr=127.0.0.1:18092
deliver_addrs=(127.0.0.1:18097 127.0.0.1:18098)
receiver_addr=127.0.0.1:18093

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is missing: apt-get install postgresql-client" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server --example one-commit-server

work=bench/results/postgres
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh
sql() { psql -qtAX "$url" -c "$1"; }
# A count that is 0 while the schema is still being created.
count() { sql "$1" 2>/dev/null || echo 0; }
fresh_schema() { sql "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null; }

run_wrk() { # name path addr
  BENCH_PATH=$2 wrk -t$threads -c$connections -d"$duration" --latency -s bench/post.lua "http://$3" > "$work/$1.txt"
}

summarise() { wrk_figures "$work/$1.txt"; } # name -> "rps p50 p99 non2xx"

config() { # file ingest admin schema
  cat > "$1" <<TOML
[server]
ingest_listen = "$2"
admin_listen = "$3"
[storage]
url = "$url"
schema = "$4"
[sources.bench]
[destinations.sink]
kind = "http"
url = "http://$receiver_addr/hook"
max_concurrency = 64
[[routes]]
source = "bench"
destination = "sink"
TOML
}

# 1a. Bare server.
target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pids+=($!)
wait_port "$bare_addr"
run_wrk bare /in/bench "$bare_addr"
kill "${pids[-1]}"

# 1b. One commit per request, 16 connections.
fresh_schema bench_one_commit
target/release/examples/one-commit-server "$one_addr" "$url" bench_one_commit > "$work/one.log" 2>&1 &
pids+=($!)
wait_port "$one_addr"
run_wrk one /in/bench "$one_addr"
kill "${pids[-1]}"
one_stored=$(sql "SELECT count(*) FROM bench_one_commit.events")

# 1c. forebay, group commit.
fresh_schema bench_forebay
config "$work/ingest.toml" "$ingest_addr" "$admin_addr" bench_forebay
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/ingest.toml" > "$work/forebay.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
run_wrk forebay /in/bench "$ingest_addr"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
stored=$(sql "SELECT count(*) FROM bench_forebay.events")

read -r b_rps b_p50 b_p99 b_bad <<<"$(summarise bare)"
read -r o_rps o_p50 o_p99 o_bad <<<"$(summarise one)"
read -r f_rps f_p50 f_p99 f_bad <<<"$(summarise forebay)"

# 2. Deliveries: a backlog on a fresh schema, then two delivery processes.
fresh_schema bench_deliver
config "$work/deliver.toml" "$ingest_addr" "$admin_addr" bench_deliver
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/deliver.toml" > "$work/backlog.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
while [ "$(count "SELECT count(*) FROM bench_deliver.deliveries WHERE state = 'pending'")" -lt "$events" ]; do
  BENCH_PATH=/in/bench wrk -t2 -c64 -d3s -s bench/post.lua "http://$ingest_addr" > /dev/null
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
backlog=$(sql "SELECT count(*) FROM bench_deliver.deliveries WHERE state = 'pending'")

target/release/examples/bare-server "$receiver_addr" > "$work/receiver.log" 2>&1 &
pids+=($!)
wait_port "$receiver_addr"
start=$(date +%s.%N)
for i in 0 1; do
  config "$work/deliver$i.toml" "${deliver_addrs[$i]}" "127.0.0.1:$((18100 + i))" bench_deliver
  FOREBAY_LOG=error target/release/forebay serve --role deliver -c "$work/deliver$i.toml" > "$work/deliver$i.log" 2>&1 &
  pids+=($!)
done
while [ "$(sql "SELECT count(*) FROM bench_deliver.deliveries WHERE state <> 'delivered'")" -gt 0 ]; do
  sleep 0.2
done
end=$(date +%s.%N)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
rate=$(awk -v n="$backlog" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
attempts=$(sql "SELECT count(*) FROM bench_deliver.attempts")

echo
echo "wrk -t$threads -c$connections -d$duration, 1 KiB JSON, $(nproc) cores, PostgreSQL $(sql 'SHOW server_version')"
echo
echo "| server | req/s | p50 | p99 | non-2xx | × bare | × one-commit |"
echo "|---|---:|---:|---:|---:|---:|---:|"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| bare hyper (no storage) | $b_rps | $b_p50 | $b_p99 | ${b_bad:-0} | 1.00 | |"
echo "| one commit per request, 16-connection pool | $o_rps | $o_p50 | $o_p99 | ${o_bad:-0} | $(ratio "$o_rps" "$b_rps") | 1.00 |"
echo "| forebay on PostgreSQL (group commit) | $f_rps | $f_p50 | $f_p99 | ${f_bad:-0} | $(ratio "$f_rps" "$b_rps") | $(ratio "$f_rps" "$o_rps") |"
echo
echo "events stored: one-commit $one_stored, forebay $stored"
echo "delivery: backlog $backlog events, two --role deliver processes, delivered in ${seconds}s: $rate deliveries/s ($attempts attempts)"
