#!/usr/bin/env bash
# What encryption at rest and redaction cost, in one run: ingest (wrk on loopback, 1 KiB
# JSON unique per request, 64 connections) against a bare hyper server, then against
# `forebay serve --role ingest` on SQLite plain, with `[storage.encryption]`, and with a
# `redact` rule on the source (one small field of each body), in turn, each on a fresh
# store; then, on the store each run filled, a search with a `q` predicate that
# matches nothing (it scans until its per-page budget) and a full export, both of which
# open every body they read when the store is sealed.
#
# Usage: bench/encryption.sh [DURATION] [ROUNDS]   (default 10s, 2; needs wrk, curl, sqlite3, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
rounds=${2:-2}
bare_addr=127.0.0.1:18090
ingest_addr=127.0.0.1:18091
admin_addr=127.0.0.1:18092

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server

work=bench/results/encryption
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

run_wrk() { # name addr
  wrk -t2 -c64 -d"$duration" --latency -s bench/post.lua "http://$2" > "$work/$1.txt"
}

target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pids+=($!)
wait_port "$bare_addr"
run_wrk bare "$bare_addr"
kill "${pids[-1]}"
read -r b_rps b_p50 b_p99 b_bad <<<"$(wrk_figures "$work/bare.txt")"

# seconds a GET takes, median of N
median_get() { # url n
  for _ in $(seq "$2"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done \
    | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'
}

rows=()
for round in $(seq "$rounds"); do
  for mode in plain sealed redacted; do
    dir="$work/$mode-$round"
    mkdir -p "$dir"
    ingest_config "$dir/forebay.toml" "$(realpath "$dir")/forebay.db" "$ingest_addr" "$admin_addr"
    if [ "$mode" = sealed ]; then
      printf '[storage.encryption]\nkeys = { k1 = "%s" }\nactive = "k1"\n' \
        "$(target/release/forebay keygen)" >> "$dir/forebay.toml"
    fi
    if [ "$mode" = redacted ]; then
      # The field post.lua's bodies name `type`: every body is parsed, one value replaced.
      sed -i 's|^\[sources.bench\]$|[sources.bench]\nredact = { json = ["/type"] }|' "$dir/forebay.toml"
    fi
    FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$dir/forebay.toml" > "$dir/forebay.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$ingest_addr"
    run_wrk "$mode-$round" "$ingest_addr"
    read -r rps p50 p99 bad <<<"$(wrk_figures "$work/$mode-$round.txt")"
    # A predicate every event passes: one page reads (and, sealed, opens) the newest
    # events with their bodies until it has 500 or its 100 ms are up.
    search="http://$admin_addr/api/v1/events?q=true&limit=500"
    scanned=$(curl -s "$search" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))')
    search_s=$(median_get "$search" 9)
    events=$(sqlite3 "$dir/forebay.db" 'select count(*) from events')
    export_s=$(median_get "http://$admin_addr/api/v1/export" 3)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    us_per_scan=$(awk -v t="$search_s" -v n="${scanned:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / n; else print "?" }')
    us_per_export=$(awk -v t="$export_s" -v n="$events" 'BEGIN { printf "%.1f", t * 1e6 / n }')
    rows+=("| $round | $mode | $rps | $p50 | $p99 | ${bad:-0} | $events | ${scanned:-?} in ${search_s}s ($us_per_scan µs/event) | ${export_s}s ($us_per_export µs/event) |")
  done
done

echo
echo "wrk -t2 -c64 -d$duration, 1 KiB JSON, $(nproc) cores; bare hyper server: $b_rps req/s, p99 $b_p99"
echo
echo "| round | store | req/s | p50 | p99 | non-2xx | events stored | q search, one page | full export |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
