#!/usr/bin/env bash
# How fast the cold archive moves events out, and how small they get: fills a SQLite store
# with EVENTS events (1 KiB JSON, unique, wrk through `forebay serve --role ingest` on a
# source with no route, so none waits), stops it, then starts it again with
# `[storage.archive] after = "1s"` to a directory, plain and then sealed, and times the
# first round (at start) until every event but the newest is archived.
#
# Usage: bench/archive.sh [EVENTS]   (default 200000; needs wrk, curl, sqlite3, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-200000}
ingest_addr=127.0.0.1:18098
admin_addr=127.0.0.1:18099

for tool in wrk curl sqlite3 python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin forebay

work=bench/results/archive
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

# archived_count — events the archive's manifest holds, all pages
archived_count() {
  python3 - "$admin_addr" <<'PY'
import json, sys, urllib.request
addr, total, cursor = sys.argv[1], 0, ""
while True:
    url = f"http://{addr}/api/v1/archive?limit=500" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    total += sum(o["events"] for o in page["data"])
    cursor = page.get("next_cursor")
    if not cursor:
        break
print(total)
PY
}

rows=()
for mode in plain sealed; do
  dir="$work/$mode"
  mkdir -p "$dir"
  ingest_config "$dir/forebay.toml" "$(realpath "$dir")/forebay.db" "$ingest_addr" "$admin_addr"
  sed -i '/^\[destinations.sink\]$/,$d' "$dir/forebay.toml"
  if [ "$mode" = sealed ]; then
    printf '[storage.encryption]\nkeys = { k1 = "%s" }\nactive = "k1"\n' \
      "$(target/release/forebay keygen)" >> "$dir/forebay.toml"
  fi
  FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$dir/forebay.toml" > "$dir/fill.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$ingest_addr"
  # Two threads, each stopping after its half (wrk itself runs on until killed).
  BENCH_LIMIT=$((events / 2)) wrk -t2 -c16 -d600s -s bench/post.lua "http://$ingest_addr" > "$dir/wrk.txt" &
  wrk_pid=$!
  pids+=("$wrk_pid")
  for _ in $(seq 1200); do
    sleep 0.5
    [ "$(sqlite3 "$dir/forebay.db" 'SELECT count(*) FROM events')" -ge "$events" ] && break
  done
  kill "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  stored=$(stat -c %s "$dir/forebay.db")
  sleep 1.2
  printf '[storage.archive]\nafter = "1s"\nto = "file://%s"\n' "$(realpath "$dir")/archive" \
    > "$dir/archive.toml"
  # [storage.archive] is a table of its own: append it after [storage]'s keys.
  sed -i "/^url = /r $dir/archive.toml" "$dir/forebay.toml"
  started=$(date +%s.%N)
  FOREBAY_LOG=info target/release/forebay serve --role ingest -c "$dir/forebay.toml" > "$dir/archive.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$ingest_addr"
  for _ in $(seq 1200); do
    [ "$(archived_count)" -ge $((events - 1)) ] && break
    sleep 0.5
  done
  took=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  archived=$(archived_count)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  objects=$(find "$dir/archive" -name '*.ndjson.zst' | wc -l)
  bytes=$(find "$dir/archive" -name '*.ndjson.zst' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  rows+=("| $mode | $archived | $objects | ${took}s | $(awk -v n="$archived" -v t="$took" 'BEGIN { printf "%.0f", n / t }') | $(awk -v b="$stored" 'BEGIN { printf "%.1f", b / 1048576 }') | $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') | $(awk -v n="$archived" -v b="$bytes" 'BEGIN { printf "%.0f", b / n }') |")
done

echo
echo "$events events of 1 KiB JSON, $(nproc) cores, archived to a local directory at start"
echo
echo "| objects sealed | events archived | objects | time | events/s | store file (MiB) | archive (MiB) | bytes/event |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
