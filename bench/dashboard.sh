#!/usr/bin/env bash
# Dashboard benchmark: how fast every page answers on a big store. A SQLite store is
# filled through forebay's own ingest with EVENTS events (default 1,000,000, 1 KiB JSON,
# unique bodies) delivered to the bare server, plus DEAD events whose only delivery
# fails at once (the dead letters) and REJECTED requests refused by a bearer-token source.
# Then each page (and the API the overview reads) is fetched by one wrk connection for
# SECONDS seconds with a session cookie, beside the same GET against the bare server as
# the floor. Prints a Markdown table for BENCHMARKS.md; the target is p99 under 200 ms.
#
# All events arrive within the fill's minutes, so the overview's last hour holds all of
# them: its worst case.
#
# Usage: [EVENTS=1000000] [DEAD=20000] [REJECTED=20000] bench/dashboard.sh [SECONDS]
#   needs wrk and sqlite3 (apt-get install wrk sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
events=${EVENTS:-1000000}
dead=${DEAD:-20000}
rejected=${REJECTED:-20000}
bare_addr=127.0.0.1:18096
ingest_addr=127.0.0.1:18097
admin_addr=127.0.0.1:18098

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install sqlite3" >&2; exit 1; }
cargo build --release --quiet --bin forebay --example bare-server

work=bench/results/dashboard
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh
sql() { sqlite3 "$work/forebay.db" "$1"; }

cat > "$work/forebay.toml" <<TOML
[server]
ingest_listen = "$ingest_addr"
admin_listen = "$admin_addr"
[storage]
url = "sqlite://$work/forebay.db"
[sources.bench]
[sources.other]
[sources.signed]
verify = { kind = "bearer", token = "not-sent-by-the-load" }
[destinations.sink]
kind = "http"
url = "http://$bare_addr/hook"
max_concurrency = 64
[destinations.broken]
kind = "http"
url = "http://127.0.0.1:9/"
max_concurrency = 64
retry = { schedule = [] }
# Every event here is to end dead, not wait behind an open breaker.
breaker = { failures = 4000000000 }
[[routes]]
source = "bench"
destination = "sink"
[[routes]]
source = "other"
destination = "broken"
TOML

target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pids+=($!)
wait_port "$bare_addr"
FOREBAY_LOG=error target/release/forebay serve -c "$work/forebay.toml" > "$work/forebay.log" 2>&1 &
pids+=($!)
wait_port "$ingest_addr"
wait_port "$admin_addr"

# 1. The store, in 5 s rounds of wrk until each count is reached (a wrk -d run keeps
#    going with every thread stopped, so rounds it is).
fill() { # path count-query count
  local have
  while have=$(sql "$2") && [ "$have" -lt "$3" ]; do
    # About what is missing at 10,000 a second, 1 to 30 s.
    BENCH_PATH=$1 BENCH_TAG="$1-$RANDOM-$(date +%s)" wrk -t2 -c64 \
      -d"$(( ($3 - have) / 10000 < 1 ? 1 : ($3 - have) / 10000 > 30 ? 30 : ($3 - have) / 10000 ))s" \
      -s bench/post.lua "http://$ingest_addr" >> "$work/fill.txt"
  done
}
start=$(date +%s)
fill /in/bench "select count(*) from events where source = 'bench'" "$events"
fill /in/other "select count(*) from events where source = 'other'" "$dead"
fill /in/signed "select count(*) from rejected" "$rejected"
until [ "$(sql "select count(*) from deliveries where state in ('pending', 'in_flight', 'retrying')")" -eq 0 ]; do
  sleep 1
done
filled=$(($(date +%s) - start))
stored=$(sql "select count(*) from events")
deliveries=$(sql "select count(*) from deliveries")
dead_stored=$(sql "select count(*) from deliveries where state = 'dead'")
rejected_stored=$(sql "select count(*) from rejected")
db_mib=$(du -sm "$work" | awk '{ print $1 }')

# 2. The pages. A session (no token: the admin listener is on loopback) and some ids.
cookie=$(curl -s -o /dev/null -D - "http://$admin_addr/" | awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2 }')
json() { curl -s "http://$admin_addr$1"; }
pick() { python3 -c "import json, sys; print(eval(sys.argv[1], {'j': json.load(sys.stdin)}))" "$1"; }
event=$(json "/api/v1/events?source=bench&limit=1" | pick "j['data'][0]['id']")
delivery=$(json "/api/v1/events/$event" | pick "j['deliveries'][0]['id']")
dead_delivery=$(json "/api/v1/dlq?limit=1" | pick "j['data'][0]['id']")
rejected_id=$(json "/api/v1/rejected?limit=1" | pick "j['data'][0]['id']")
cursor=$(json "/api/v1/events?limit=50" | pick "j['next_cursor']")
early=$(date -u -d "@$((start + 5))" +%Y-%m-%dT%H:%M:%SZ)

pages=(
  "/"
  "/events"
  "/events?cursor=$cursor"
  "/events?source=bench"
  "/events?source=other"
  "/events?until=$early"
  "/events?q=.body.type%20%3D%3D%20%22invoice.paid%22"
  "/events?q=.body.type%20%3D%3D%20%22nothing%22"
  "/events/$event"
  "/deliveries"
  "/deliveries?state=dead"
  "/deliveries?destination=sink&state=delivered"
  "/deliveries/$delivery"
  "/dead-letters"
  "/dead-letters?destination=broken"
  "/deliveries/$dead_delivery"
  "/destinations"
  "/replays"
  "/rejected"
  "/rejected/$rejected_id"
  "/live"
  "/api/v1/activity"
)

measure() { # name url -> "rps p50 p99 max non2xx"
  BENCH_GET=1 wrk -t1 -c1 -d"${seconds}s" --latency -H "Cookie: $cookie" -s bench/post.lua "$2" > "$work/$1.txt"
  awk '
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^ +Latency +[0-9]/ { max = $4 }
    /^non2xx/ { bad = $2 }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, max, bad }' "$work/$1.txt"
}

echo
echo "$stored events ($deliveries deliveries, $dead_stored dead, $rejected_stored rejected requests; store $db_mib MiB), filled through ingest in ${filled}s; wrk -t1 -c1 -d${seconds}s per page, $(nproc) cores"
echo "(\`until=\` is 5 s after the fill began: the page starts at the oldest events)"
echo
echo "| page | req/s | p50 | p99 | max | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
read -r rps p50 p99 max bad <<<"$(measure bare "http://$bare_addr/")"
echo "| bare server, GET / (the floor) | $rps | $p50 | $p99 | $max | ${bad:-0} |"
n=0
for page in "${pages[@]}"; do
  n=$((n + 1))
  read -r rps p50 p99 max bad <<<"$(measure "page-$n" "http://$admin_addr$page")"
  shown=$(sed -e "s/$event/{event}/; s/$dead_delivery/{dead delivery}/; s/$delivery/{delivery}/; s/$rejected_id/{rejected}/" \
    -e "s/cursor=[^&]*/cursor={page 2}/; s/until=[^&]*/until={fill start + 5 s}/" <<<"$page")
  echo "| \`$shown\` | $rps | $p50 | $p99 | $max | ${bad:-0} |"
done
