#!/usr/bin/env bash
# Reloading under load: forebay (SQLite, ingest and delivery in one process) takes wrk's
# load (-t1 -c32, 1 KiB unique bodies) three times, in the same run: without reloads;
# reloaded with SIGHUP every RELOAD_EVERY seconds with the file unchanged (everything is
# kept); and reloaded as often with a file that changes each time (the destination is
# replaced, a new header, and a second source comes or goes). Deliveries go to the bare
# server (it answers 200 to anything).
# Prints, per line: req/s, p99, answers other than 2xx, socket errors, reloads applied,
# events stored against requests acknowledged, and deliveries made once.
#
# Usage: bench/reload.sh [DURATION] [RELOAD_EVERY]   (default 10s and 0.1; needs wrk, sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
every=${2:-0.1}
ingest_addr=127.0.0.1:18086
admin_addr=127.0.0.1:18087
sink_addr=127.0.0.1:18088
for tool in wrk sqlite3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin forebay --example bare-server

work=$(realpath -m bench/results/reload)
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

target/release/examples/bare-server "$sink_addr" > "$work/sink.log" 2>&1 &
pids+=($!)
wait_port "$sink_addr"

config() { # generation -> the configuration text (generation -1: always the same)
  local extra="" header=${1#-}
  [ "$1" -ge 0 ] && [ $(($1 % 2)) -eq 1 ] && extra="[sources.other]"
  [ "$1" -lt 0 ] && header=0
  cat <<TOML
[server]
ingest_listen = "$ingest_addr"
admin_listen = "$admin_addr"
[storage]
url = "sqlite://$work/forebay.db"
[sources.bench]
$extra
[destinations.sink]
kind = "http"
url = "http://$sink_addr/hook"
headers = { x-generation = "$header" }
[[routes]]
source = "bench"
destination = "sink"
TOML
}

sql() { sqlite3 "$work/forebay.db" "$1"; }

run() { # name reloads(none|same|changing)
  local name=$1 reloading=$2
  rm -f "$work/forebay.db"*
  if [ "$reloading" = same ]; then config -1; else config 0; fi > "$work/forebay.toml"
  FOREBAY_LOG=warn target/release/forebay serve -c "$work/forebay.toml" > "$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$ingest_addr"
  BENCH_PATH=/in/bench wrk -t1 -c32 -d"$duration" --latency -s bench/post.lua "http://$ingest_addr" > "$work/$name.wrk" &
  local load=$! sent=0
  if [ "$reloading" != none ]; then
    while kill -0 "$load" 2>/dev/null; do
      sent=$((sent + 1))
      if [ "$reloading" = same ]; then config -1; else config "$sent"; fi > "$work/forebay.toml.next"
      mv "$work/forebay.toml.next" "$work/forebay.toml"
      kill -HUP "$pid"
      sleep "$every"
    done
  fi
  wait "$load"
  local generation
  generation=$(curl -s "http://$admin_addr/metrics" | awk '/^forebay_config_generation / {print $2}')
  # Delivery catches up after the load: wait (up to 60 s) until nothing is left to send.
  for _ in $(seq 1 600); do
    [ "$(sql "SELECT count(*) FROM deliveries WHERE state <> 'delivered'")" = 0 ] && break
    sleep 0.1
  done
  local requests events delivered once
  requests=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  events=$(sql "SELECT count(*) FROM events")
  delivered=$(sql "SELECT count(*) FROM deliveries WHERE state = 'delivered'")
  once=$(sql "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND attempts = 1")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  read -r rps _ p99 bad <<<"$(wrk_figures "$work/$name.wrk")"
  local errors
  errors=$(awk '/Socket errors/ {print $0}' "$work/$name.wrk" | sed 's/^ *//')
  echo "| $name | $rps | $p99 | ${bad:-0} | ${errors:-none} | $((generation - 1)) of $sent | $events stored, $requests requests | $delivered delivered, $once at the first attempt |"
}

echo "wrk -t1 -c32 -d$duration, 1 KiB JSON; SIGHUP every ${every}s on the second and third lines"
echo
echo "| line | req/s | p99 | non-2xx | socket errors | reloads applied | events | deliveries |"
echo "|---|---:|---:|---:|---|---:|---|---|"
run "no reloads" none
run "reloads, file unchanged" same
run "reloads, destination replaced each time" changing
grep -h -i -E "error|refused" "$work"/*.log | grep -v "this change applies after a restart" | head -5 || true
