#!/usr/bin/env bash
# Ingest benchmark: wrk on loopback, 1 KiB JSON, 64 connections, against a bare hyper
# server (reads the body, answers 200, stores nothing) and against `forebay serve` with
# full durability (SQLite WAL, synchronous=FULL, group commit, one delivery per event),
# in the same run. forebay runs with --role ingest, so the figures are ingest's alone
# (the route's destination does not exist). Prints a Markdown table for BENCHMARKS.md.
#
# Usage: bench/ingest.sh [DURATION]    (default 20s; needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-20s}
connections=64
threads=2
bare_addr=127.0.0.1:18090
ingest_addr=127.0.0.1:18091
admin_addr=127.0.0.1:18092

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server

work=bench/results/ingest
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

run_wrk() { # name path addr
  BENCH_PATH=$2 wrk -t$threads -c$connections -d"$duration" --latency -s bench/post.lua "http://$3" > "$work/$1.txt"
}

summarise() { wrk_figures "$work/$1.txt"; } # name -> "rps p50 p99 non2xx"

target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pids+=($!)
wait_port "$bare_addr"
run_wrk bare /in/bench "$bare_addr"
kill "${pids[-1]}"

ingest_config "$work/forebay.toml" "$work/forebay.db" "$ingest_addr" "$admin_addr"
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/forebay.toml" > "$work/forebay.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
run_wrk forebay /in/bench "$ingest_addr"
stored=$(curl -s "http://$admin_addr/api/v1/events?limit=1" >/dev/null && sqlite3 "$work/forebay.db" 'select count(*) from events' 2>/dev/null || echo "?")
kill "${pids[-1]}"

read -r b_rps b_p50 b_p99 b_bad <<<"$(summarise bare)"
read -r f_rps f_p50 f_p99 f_bad <<<"$(summarise forebay)"
ratio=$(awk -v f="$f_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", f / b }')

echo
echo "wrk -t$threads -c$connections -d$duration, 1 KiB JSON, $(nproc) cores"
echo
echo "| server | req/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|"
echo "| bare hyper (no storage) | $b_rps | $b_p50 | $b_p99 | ${b_bad:-0} |"
echo "| forebay (SQLite, FULL sync, group commit) | $f_rps | $f_p50 | $f_p99 | ${f_bad:-0} |"
echo
echo "forebay / bare = $ratio; events stored: $stored"
