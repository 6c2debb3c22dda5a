#!/usr/bin/env bash
# One sender floods, another keeps sending: what a source's rate_limit buys the others.
# forebay (--role ingest, SQLite, full durability) with two sources, `steady` and
# `flood`. A steady sender (wrk -t1 -c4) posts to `steady` for DURATION three times:
#   1. alone;
#   2. beside a flood (wrk -t1 -c64) on `flood` with no limit (every request stored);
#   3. beside the same flood on `flood` with rate_limit = "100/s" (refused with 429
#      before the body is read).
# Prints the steady sender's req/s and latency, and what the flood got, per line.
#
# Usage: bench/rate_limit.sh [DURATION]    (default 10s; needs wrk and sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
ingest_addr=127.0.0.1:18096
admin_addr=127.0.0.1:18097
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3" >&2; exit 1; }
cargo build --release --quiet --bin forebay

work=bench/results/rate_limit
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh


run() { # name label flood(none|open|limited)
  local name=$1 label=$2 flood=$3 limit=""
  [ "$flood" = limited ] && limit='rate_limit = "100/s"'
  rm -f "$work/forebay.db"*
  cat > "$work/forebay.toml" <<TOML
[server]
ingest_listen = "$ingest_addr"
admin_listen = "$admin_addr"
[storage]
url = "sqlite://$work/forebay.db"
[sources.steady]
[sources.flood]
$limit
[destinations.sink]
kind = "http"
url = "http://127.0.0.1:9/"
[[routes]]
source = "steady"
destination = "sink"
[[routes]]
source = "flood"
destination = "sink"
TOML
  FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/forebay.toml" > "$work/$name.log" 2>&1 &
  local server=$!
  pids+=($server)
  wait_port "$ingest_addr"
  if [ "$flood" != none ]; then
    BENCH_PATH=/in/flood BENCH_TAG=flood$name wrk -t1 -c64 -d"$duration" --latency -s bench/post.lua "http://$ingest_addr" > "$work/$name-flood.txt" &
    local flooder=$!
  fi
  BENCH_PATH=/in/steady BENCH_TAG=steady$name wrk -t1 -c4 -d"$duration" --latency -s bench/post.lua "http://$ingest_addr" > "$work/$name-steady.txt"
  [ "$flood" != none ] && wait "$flooder"
  local rss kept
  rss=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$server/status")
  kept=$(sqlite3 "$work/forebay.db" "select count(*) from rejected where source = 'flood'")
  stored=$(sqlite3 "$work/forebay.db" "select count(*) from events where source = 'flood'")
  kill "$server"; wait "$server" 2>/dev/null || true
  read -r s_rps s_p50 s_p99 s_bad <<<"$(wrk_figures "$work/$name-steady.txt")"
  local flood_cell="—"
  if [ "$flood" != none ]; then
    read -r f_rps f_p50 f_p99 f_bad <<<"$(wrk_figures "$work/$name-flood.txt")"
    flood_cell="$f_rps req/s, $f_bad non-2xx, p99 $f_p99; stored: $stored events, $kept rejected"
  fi
  echo "| $label | $s_rps | $s_p50 | $s_p99 | $s_bad | $flood_cell | $rss MiB |"
}

echo
echo "steady: wrk -t1 -c4; flood: wrk -t1 -c64; $duration each, 1 KiB JSON unique per request, $(nproc) cores"
echo
echo "| line | steady req/s | steady p50 | steady p99 | steady non-2xx | the flood | peak RSS |"
echo "|---|---:|---:|---:|---:|---|---:|"
run alone alone none
run open "beside an unlimited flood" open
run limited "beside a flood past rate_limit = 100/s" limited
