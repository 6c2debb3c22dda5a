#!/usr/bin/env bash
# Delivery benchmark: a backlog of N events (default 100,000) is ingested with
# `--role ingest`, then one `--role deliver` process sends them to the bare baseline
# server (which answers 200 at once); prints deliveries per second and the resident
# memory of the delivering process. Needs wrk and sqlite3 (apt-get install wrk sqlite3).
# With `transform`, the route has a jq transform, so every delivery is first prepared in
# the sandbox processes; `transform-js` is the same transform in JavaScript; `filter` a jq
# filter and transform (two rounds of the sandbox per batch); `batch` sends 100 events
# to a call (`batch = { max_events = 100 }`); `priority` puts the route at priority 5, so
# every claim reads the by-level index. With a broker KIND (nats, rabbitmq, redis, kafka), the destination
# publishes into that broker on 127.0.0.1 instead (a stream, queue or key of the run's
# own, made before and removed after; each delivery counts once the broker acknowledged it;
# RabbitMQ's queue is a classic one, or a quorum queue with QUEUE_TYPE=quorum).
#
# Each destination has its kind's default max_concurrency (64 for http, 256 for a broker)
# unless MAX_CONCURRENCY is set.
#
# FOREBAY_BIN runs that forebay binary (an older build, say) instead of target/release/forebay.
#
# Usage: [MAX_CONCURRENCY=N] [QUEUE_TYPE=quorum] [FOREBAY_BIN=path] bench/deliver.sh [EVENTS] [plain|transform|transform-js|filter|batch|priority] [http|nats|rabbitmq|redis|kafka]
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-100000}
mode=${2:-plain}
case "$mode" in
  plain) route_extra="" ;;
  transform) route_extra="transform = '{id: .id, body: .body, seen: .received_at}'" ;;
  transform-js) route_extra='transform = { js = "export default (e) => ({ id: e.id, body: e.body, seen: e.received_at })" }' ;;
  filter) route_extra=$'filter = \'.method == "POST"\'\ntransform = \'{id: .id, body: .body, seen: .received_at}\'' ;;
  batch) route_extra='batch = { max_events = 100, max_wait = "100ms" }' ;;
  priority) route_extra='priority = 5' ;;
  *) echo "mode must be plain, transform, transform-js, filter, batch or priority, not $mode" >&2; exit 2 ;;
esac
kind=${3:-http}
name=forebaybench$$
case "$kind" in
  http) destination="url = \"http://127.0.0.1:18093/hook\"" ;;
  nats) destination=$'url = "nats://127.0.0.1:4222"\nsubject = "'"$name"'.{source}"' ;;
  rabbitmq) destination=$'url = "amqp://guest:guest@127.0.0.1:5672/%2f"\nrouting_key = "'"$name"'"' ;;
  redis) destination=$'url = "redis://127.0.0.1:6379"\nstream = "'"$name"'"' ;;
  kafka) destination=$'brokers = ["127.0.0.1:9092"]\ntopic = "'"$name"'"'; scripts/kafka/start ;;
  *) echo "the destination kind must be http, nats, rabbitmq, redis or kafka, not $kind" >&2; exit 2 ;;
esac
receiver_addr=127.0.0.1:18093
ingest_addr=127.0.0.1:18094
admin_addr=127.0.0.1:18095

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server --example broker-setup
bin=${FOREBAY_BIN:-target/release/forebay}
setup() { target/release/examples/broker-setup "$1" "$kind" "$name"; }

work=bench/results/deliver
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh
count() { sqlite3 "$work/forebay.db" "select count(*) from deliveries where state = '$1'"; }

cat > "$work/forebay.toml" <<TOML
[server]
ingest_listen = "$ingest_addr"
admin_listen = "$admin_addr"
[storage]
url = "sqlite://$work/forebay.db"
[sources.bench]
[destinations.sink]
kind = "$kind"
$destination
${MAX_CONCURRENCY:+max_concurrency = $MAX_CONCURRENCY}
[[routes]]
source = "bench"
destination = "sink"
$route_extra
TOML

# 1. The backlog: ingest only, until at least $events events are stored.
FOREBAY_LOG=error "$bin" serve --role ingest -c "$work/forebay.toml" > "$work/ingest.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
while [ "$(count pending)" -lt "$events" ]; do
  BENCH_PATH=/in/bench wrk -t2 -c64 -d5s -s bench/post.lua "http://$ingest_addr" > /dev/null
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
backlog=$(count pending)

# 2. Deliver it all to the bare server (or the broker).
if [ "$kind" != http ]; then
  setup create
  trap 'setup delete >/dev/null 2>&1 || true; cleanup' EXIT
fi
target/release/examples/bare-server "$receiver_addr" > "$work/receiver.log" 2>&1 &
pids+=($!)
wait_port "$receiver_addr"
start=$(date +%s.%N)
FOREBAY_LOG=error "$bin" serve --role deliver -c "$work/forebay.toml" > "$work/deliver.log" 2>&1 &
deliver_pid=$!
pids+=($deliver_pid)
peak_rss=0
while :; do
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$deliver_pid/status")
  [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
  left=$(sqlite3 "$work/forebay.db" "select count(*) from deliveries where state != 'delivered'")
  [ "$left" -eq 0 ] && break
  sleep 0.5
done
end=$(date +%s.%N)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
rate=$(awk -v n="$backlog" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
echo
held=
[ "$kind" != http ] && held=", $(setup count) messages in $kind"
echo "mode $mode to $kind: backlog $backlog events, delivered in ${seconds}s: $rate deliveries/s; peak RSS of the delivering process $((peak_rss / 1024)) MiB$held"
