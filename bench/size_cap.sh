#!/usr/bin/env bash
# What the size cap costs and what it gives back, in one run.
#
# 1. Ingest (wrk on loopback, 1 KiB JSON unique per request, 64 connections) against a
#    bare hyper server, then against `forebay serve --role ingest` on SQLite, each on a
#    fresh store whose source has no route (nothing waits, so a capped store may evict
#    any event): a file made without incremental vacuum (as before this version), a file
#    made by forebay now (`auto_vacuum = INCREMENTAL`), and a new file with
#    `storage.max_size` set far below what the run sends, so eviction and reclaiming run
#    throughout.
# 2. The file sizes: the stores filled in step 1, without a cap, restarted with
#    `max_size = SHRINK_TO`: how big each file is before, how big it is once the cap's
#    job has evicted and given space back, and how long that took.
#
# Usage: bench/size_cap.sh [DURATION] [ROUNDS] [CAP_MIB] [SHRINK_TO_MIB]
#        (default 10s, 2, 64, 64; needs wrk, curl, sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
rounds=${2:-2}
cap=${3:-64}MiB
shrink_mib=${4:-64}
shrink_to=${shrink_mib}MiB
bare_addr=127.0.0.1:18095
ingest_addr=127.0.0.1:18096
admin_addr=127.0.0.1:18097

for tool in wrk curl sqlite3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin forebay --example bare-server

work=bench/results/size_cap
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

run_wrk() { # name addr
  wrk -t2 -c64 -d"$duration" --latency -s bench/post.lua "http://$2" > "$work/$1.txt"
}

# metric NAME — its value on the running server's /metrics (0 when absent)
metric() {
  curl -s "http://$admin_addr/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# start DIR [MAX_SIZE] — forebay on DIR's configuration; sets `pid`
start() {
  if [ -n "${2:-}" ]; then
    FOREBAY_STORAGE__MAX_SIZE=$2 FOREBAY_LOG=info target/release/forebay serve --role ingest \
      -c "$1/forebay.toml" >> "$1/forebay.log" 2>&1 &
  else
    FOREBAY_LOG=info target/release/forebay serve --role ingest -c "$1/forebay.toml" \
      >> "$1/forebay.log" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
  wait_port "$ingest_addr"
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pids+=($!)
wait_port "$bare_addr"
run_wrk bare "$bare_addr"
kill "${pids[-1]}"
read -r b_rps _ b_p99 _ <<<"$(wrk_figures "$work/bare.txt")"

rows=()
for round in $(seq "$rounds"); do
  for mode in no-vacuum incremental capped; do
    dir="$work/$mode-$round"
    mkdir -p "$dir"
    db="$(realpath "$dir")/forebay.db"
    ingest_config "$dir/forebay.toml" "$db" "$ingest_addr" "$admin_addr"
    # No route: every event is done with as soon as it is stored.
    sed -i '/^\[destinations.sink\]$/,$d' "$dir/forebay.toml"
    if [ "$mode" = no-vacuum ]; then
      # A file that already has its header, as every file made before this version.
      sqlite3 "$db" 'PRAGMA journal_mode = WAL; CREATE TABLE t (x); DROP TABLE t;' > /dev/null
    fi
    start "$dir" "$([ "$mode" = capped ] && echo "$cap")"
    run_wrk "$mode-$round" "$ingest_addr"
    read -r rps p50 p99 bad <<<"$(wrk_figures "$work/$mode-$round.txt")"
    evicted=$(metric 'forebay_evicted_total{kind="events"}')
    used=$(metric forebay_store_used_bytes)
    stop
    file=$(stat -c %s "$db")
    rows+=("| $round | $mode | $rps | $p50 | $p99 | ${bad:-0} | $evicted | $(mib "$used") | $(mib "$file") |")
  done
done

# Step 2, on the last round's uncapped stores.
shrinks=()
for mode in no-vacuum incremental; do
  dir="$work/$mode-$rounds"
  db="$dir/forebay.db"
  before=$(stat -c %s "$db")
  started=$(date +%s.%N)
  start "$dir" "$shrink_to"
  # Until the data is under the cap and the file has not shrunk for 3 s (the cap's job
  # looks every second), at most 5 minutes; the time is to the last change seen.
  last=-1 still=0 changed=$started
  for _ in $(seq 300); do
    sleep 1
    used=$(metric forebay_store_used_bytes)
    allocated=$(metric forebay_store_allocated_bytes)
    if [ "$used" != 0 ] && [ "$used" -le $((shrink_mib << 20)) ] && [ "$allocated" = "$last" ]; then
      still=$((still + 1))
      [ "$still" -ge 3 ] && break
    else
      still=0 changed=$(date +%s.%N)
    fi
    last=$allocated
  done
  took=$(awk -v s="$started" -v e="$changed" 'BEGIN { printf "%.0f", e - s }')
  stop
  after=$(stat -c %s "$db")
  shrinks+=("| $mode | $(mib "$before") | $(mib "$used") | $(mib "$after") | ${took}s |")
done

echo
echo "wrk -t2 -c64 -d$duration, 1 KiB JSON, $(nproc) cores; bare hyper server: $b_rps req/s, p99 $b_p99"
echo
echo "| round | store | req/s | p50 | p99 | non-2xx | events evicted | data at the end (MiB) | file (MiB) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "Restarted with max_size = $shrink_to:"
echo
echo "| store | file before (MiB) | data after (MiB) | file after (MiB) | time |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${shrinks[@]}"
