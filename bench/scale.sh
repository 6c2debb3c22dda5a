#!/usr/bin/env bash
# Scaling curve, in one run on loopback: how ingest and delivery grow with the number of
# forebay processes on one PostgreSQL database, next to the single-process references.
#
#   references (ingest: wrk, 1 KiB JSON, unique bodies):
#     - the bare hyper server (stores nothing);
#     - the one-commit-per-request server (bench/one_commit_server.rs, 16-connection pool);
#     - forebay on SQLite, `--role ingest`; and SQLite delivery: a backlog of EVENTS events
#       drained by one `--role deliver` process to the bare server;
#   PostgreSQL, with N = 1, 2 and 4 forebay processes on one schema (own ports each):
#     - ingest: N `--role ingest` processes. ONE wrk process (-t4 -c64, bench/post.lua)
#       spreads its threads round-robin over the N processes, so each gets 4/N threads
#       and 64/N connections: the same offered load, spread. req/s is the total and p99
#       is over all requests (one histogram, not a worst-of). Every ingest row, the
#       references included, uses this same wrk (-t4, where bench/ingest.sh has -t2);
#     - delivery: a backlog of EVENTS events (filled by one ingest process, then stopped)
#       drained by N `--role deliver` processes to the bare server; deliveries/s from
#       their start until no delivery is left undelivered (psql polls every 0.2 s).
#
# Every row also gives, over its measured interval, the CPU of the server processes
# (forebay, or the reference server; utime+stime from /proc/PID/stat) and of every
# `postgres` process (utime+stime+cutime+cstime summed, so backends that exit meanwhile
# still count), as % of one core; and for PostgreSQL rows the WAL written
# (pg_current_wal_lsn() before and after) per stored event (ingest) or per delivered
# delivery (delivery). Both CPU and WAL are cluster-wide: anything else running on the
# machine or the PostgreSQL server is counted too. PostgreSQL must run on this machine
# for its CPU column (otherwise "n/a").
#
# Prints one Markdown table for BENCHMARKS.md; raw wrk outputs, configs and logs go to
# bench/results/scale/ (not committed). Each measurement gets a fresh schema
# (DROP SCHEMA ... CASCADE), dropped again after it. With defaults it took 4 minutes on
# a busy 2-core machine (six 10 s wrk runs, four backlogs, three ~45 s PostgreSQL drains).
#
# Usage: [CAP=N] bench/scale.sh [DURATION] [EVENTS] [URL]
#   defaults: 10s, 20000, postgres://root@127.0.0.1:5432/test?sslmode=disable
#   needs wrk, psql and sqlite3 (apt-get install wrk postgresql-client sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."

# CAP=N sets the destination's max_concurrency, a cap for the whole cluster (processes
# then share N sends in flight). Unset, each process has its own default of 64, as a
# destination that takes whatever it is sent: the curve shows what processes add.
cap_line=${CAP:+max_concurrency = $CAP}
duration=${1:-10s}
events=${2:-20000}
url=${3:-postgres://root@127.0.0.1:5432/test?sslmode=disable}
connections=64
threads=4 # divisible by every process count below
process_counts=(1 2 4)
drain_limit=600 # seconds: a drain that takes longer is a failure
bare_addr=127.0.0.1:18190
one_addr=127.0.0.1:18191
receiver_addr=127.0.0.1:18192
# forebay process i (0-based) listens on ingest 18200+i and admin 18220+i.
ingest_addr() { echo "127.0.0.1:$((18200 + $1))"; }
admin_addr() { echo "127.0.0.1:$((18220 + $1))"; }

for tool in wrk psql sqlite3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
cargo build --release --quiet --bin forebay --example bare-server --example one-commit-server

work=bench/results/scale
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh
# Also drop the schemas this script made if it stops half-way.
schemas=()
scale_cleanup() {
  cleanup
  for s in "${schemas[@]}"; do sql "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
}
trap scale_cleanup EXIT

sql() { PGOPTIONS="-c client_min_messages=warning" psql -qtAX "$url" -c "$1"; }
# A count that is 0 while the schema is still being created.
count() { sql "$1" 2>/dev/null || echo 0; }
fresh_schema() { sql "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null; schemas+=("$1"); }
drop_schema() { sql "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null; }
stop() { # PID... : SIGTERM, then wait for them to exit
  kill "$@" 2>/dev/null || true
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
now() { date +%s.%N; }

# --- CPU accounting --------------------------------------------------------------------
hz=$(getconf CLK_TCK)
# ticks PID... : utime+stime of those processes (all their threads), in clock ticks.
ticks() {
  local total=0 p t
  for p in "$@"; do
    # Fields after "(comm) ": state is field 3, so utime (14) and stime (15) are $12, $13.
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
# pg_ticks: utime+stime+cutime+cstime over every postgres process (the postmaster's
# cutime holds the backends that exited), or "n/a" if none is visible here.
pg_ticks() {
  local pids
  pids=$(ps -C postgres -o pid= 2>/dev/null | tr -d ' ' | tr '\n' ' ')
  if [ -z "$pids" ]; then echo n/a; return; fi
  local total=0 p t
  for p in $pids; do
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
# percent TICKS_BEFORE TICKS_AFTER SECONDS : % of one core
percent() {
  if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; return; fi
  awk -v a="$1" -v b="$2" -v s="$3" -v hz="$hz" 'BEGIN { printf "%.0f", (b - a) / hz / s * 100 }'
}
wal_lsn() { sql "SELECT pg_current_wal_lsn()"; }
wal_per() { # LSN_BEFORE LSN_AFTER COUNT
  if [ "${3:-0}" -eq 0 ]; then echo n/a; return; fi
  sql "SELECT round(pg_wal_lsn_diff('$2', '$1') / $3)"
}

# --- configs and load ----------------------------------------------------------------
config() { # file ingest admin storage-lines destination-url
  cat > "$1" <<TOML
[server]
ingest_listen = "$2"
admin_listen = "$3"
[storage]
$4
[sources.bench]
[destinations.sink]
kind = "http"
url = "$5"
$cap_line
[[routes]]
source = "bench"
destination = "sink"
TOML
}
pg_storage() { printf 'url = "%s"\nschema = "%s"' "$url" "$1"; }
sqlite_storage() { printf 'url = "sqlite://%s"' "$1"; }

# run_wrk NAME ADDR... : the measured load, spread over ADDR...
run_wrk() {
  local name=$1; shift
  BENCH_ADDRS="$*" BENCH_TAG="$name-$RANDOM" wrk -t$threads -c$connections -d"$duration" \
    --latency -s bench/post.lua "http://$1" > "$work/$name.txt"
}
# wrk_summary NAME -> "rps p99 non2xx"
wrk_summary() {
  awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { p99 = $2 }
    /^non2xx/ { bad = $2 }
    /Non-2xx or 3xx responses:/ { if ($NF > bad) bad = $NF }
    END { printf "%.0f %s %s\n", rps, p99, bad + 0 }' "$work/$1.txt"
}
# fill ADDR COUNT_COMMAND : posts to one ingest process until COUNT_COMMAND prints at
# least $events. Each round's wrk threads stop after their share of the missing events
# (plus one per connection), and wrk is interrupted once the count is reached or stops
# growing (wrk -d otherwise runs its whole duration with every thread stopped).
# Bounded: 10 rounds of at most 60 s.
fill() {
  local addr=$1 counter=$2 round have last same per_thread wrk_pid
  for round in $(seq 1 10); do
    have=$($counter)
    [ "$have" -ge "$events" ] && return 0
    per_thread=$(( (events - have + threads - 1) / threads + connections / threads ))
    BENCH_ADDRS="$addr" BENCH_TAG="fill-$round-$RANDOM" BENCH_LIMIT=$per_thread \
      wrk -t$threads -c$connections -d60s -s bench/post.lua "http://$addr" >> "$work/fill.txt" &
    wrk_pid=$!; pids+=($wrk_pid)
    last=-1 same=0
    for _ in $(seq 1 300); do
      sleep 0.2
      have=$($counter)
      [ "$have" -ge "$events" ] && break
      if [ "$have" -eq "$last" ]; then
        same=$((same + 1)); [ "$same" -ge 10 ] && break
      else
        same=0 last=$have
      fi
    done
    kill -INT $wrk_pid 2>/dev/null || true
    wait $wrk_pid 2>/dev/null || true
  done
  [ "$($counter)" -ge "$events" ] || { echo "the backlog did not reach $events events" >&2; exit 1; }
}

rows=()
notes=()
# row CONFIG PROCESSES RATE P99 SERVER_CPU PG_CPU WAL
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"); }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. references -------------------------------------------------------------------
# 1a. bare hyper server
target/release/examples/bare-server "$bare_addr" > "$work/bare.log" 2>&1 &
pid=$!; pids+=($pid)
wait_port "$bare_addr"
c0=$(ticks $pid); p0=$(pg_ticks); t0=$(now)
run_wrk bare "$bare_addr"
t1=$(now); c1=$(ticks $pid); p1=$(pg_ticks)
s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
stop $pid
read -r rps p99 bad <<<"$(wrk_summary bare)"
row "bare hyper server (stores nothing), ingest" 1 "$rps req/s" "$p99" "$(percent "$c0" "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "—"
notes+=("bare: non-2xx $bad")

# 1b. one commit per request on PostgreSQL
fresh_schema bench_scale_one
target/release/examples/one-commit-server "$one_addr" "$url" bench_scale_one > "$work/one.log" 2>&1 &
pid=$!; pids+=($pid)
wait_port "$one_addr"
w0=$(wal_lsn); c0=$(ticks $pid); p0=$(pg_ticks); t0=$(now)
run_wrk one "$one_addr"
t1=$(now); c1=$(ticks $pid); p1=$(pg_ticks); w1=$(wal_lsn)
s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
stop $pid
stored=$(sql "SELECT count(*) FROM bench_scale_one.events")
read -r rps p99 bad <<<"$(wrk_summary one)"
row "one commit per request (16-connection pool), PostgreSQL, ingest" 1 "$rps req/s" "$p99" "$(percent "$c0" "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "$(wal_per "$w0" "$w1" "$stored")"
notes+=("one-commit: non-2xx $bad, events stored $stored")
drop_schema bench_scale_one

# 1c. forebay on SQLite, ingest
config "$work/sqlite-ingest.toml" "$(ingest_addr 0)" "$(admin_addr 0)" "$(sqlite_storage "$work/sqlite-ingest.db")" "http://127.0.0.1:9/"
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/sqlite-ingest.toml" > "$work/sqlite-ingest.log" 2>&1 &
pid=$!; pids+=($pid)
wait_port "$(ingest_addr 0)"
c0=$(ticks $pid); p0=$(pg_ticks); t0=$(now)
run_wrk sqlite-ingest "$(ingest_addr 0)"
t1=$(now); c1=$(ticks $pid); p1=$(pg_ticks)
s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
stop $pid
stored=$(sqlite3 "$work/sqlite-ingest.db" 'select count(*) from events')
read -r rps p99 bad <<<"$(wrk_summary sqlite-ingest)"
row "forebay, SQLite, ingest" 1 "$rps req/s" "$p99" "$(percent "$c0" "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "—"
notes+=("SQLite ingest: non-2xx $bad, events stored $stored")
rm -f "$work"/sqlite-ingest.db*

# The receiver of every delivery run.
target/release/examples/bare-server "$receiver_addr" > "$work/receiver.log" 2>&1 &
pids+=($!)
wait_port "$receiver_addr"

# 1d. forebay on SQLite, delivery of a backlog
db="$work/sqlite-deliver.db"
config "$work/sqlite-deliver.toml" "$(ingest_addr 0)" "$(admin_addr 0)" "$(sqlite_storage "$db")" "http://$receiver_addr/hook"
FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/sqlite-deliver.toml" > "$work/sqlite-backlog.log" 2>&1 &
pid=$!; pids+=($pid)
wait_port "$(ingest_addr 0)"
sqlite_pending() { sqlite3 "$db" "select count(*) from deliveries where state = 'pending'" 2>/dev/null || echo 0; }
fill "$(ingest_addr 0)" sqlite_pending
stop $pid
backlog=$(sqlite_pending)
p0=$(pg_ticks); t0=$(now)
FOREBAY_LOG=error target/release/forebay serve --role deliver -c "$work/sqlite-deliver.toml" > "$work/sqlite-deliver.log" 2>&1 &
pid=$!; pids+=($pid)
deadline=$(( $(date +%s) + drain_limit ))
while [ "$(sqlite3 "$db" "select count(*) from deliveries where state <> 'delivered'")" -gt 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "SQLite delivery did not finish in ${drain_limit}s" >&2; exit 1; }
  sleep 0.2
done
t1=$(now); c1=$(ticks $pid); p1=$(pg_ticks)
s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
stop $pid
attempts=$(sqlite3 "$db" 'select count(*) from attempts')
rate=$(awk -v n="$backlog" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
row "forebay, SQLite, delivery" 1 "$rate deliveries/s" "—" "$(percent 0 "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "—"
notes+=("SQLite delivery: backlog $backlog in $(printf '%.1f' "$s") s, attempts $attempts")
rm -f "$db"*

# --- 2. PostgreSQL, N processes ------------------------------------------------------
for n in "${process_counts[@]}"; do
  # 2a. ingest: N --role ingest processes, one wrk spread over them.
  schema=bench_scale_ingest_$n
  fresh_schema "$schema"
  procs=() addrs=()
  for i in $(seq 0 $((n - 1))); do
    config "$work/pg-ingest-$n-$i.toml" "$(ingest_addr "$i")" "$(admin_addr "$i")" "$(pg_storage "$schema")" "http://127.0.0.1:9/"
    FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/pg-ingest-$n-$i.toml" > "$work/pg-ingest-$n-$i.log" 2>&1 &
    procs+=($!); pids+=($!); addrs+=("$(ingest_addr "$i")")
    # One at a time: the first creates the schema.
    wait_port "$(ingest_addr "$i")"
  done
  w0=$(wal_lsn); c0=$(ticks "${procs[@]}"); p0=$(pg_ticks); t0=$(now)
  run_wrk "pg-ingest-$n" "${addrs[@]}"
  t1=$(now); c1=$(ticks "${procs[@]}"); p1=$(pg_ticks); w1=$(wal_lsn)
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  stop "${procs[@]}"
  stored=$(sql "SELECT count(*) FROM $schema.events")
  read -r rps p99 bad <<<"$(wrk_summary "pg-ingest-$n")"
  row "forebay, PostgreSQL, ingest" "$n" "$rps req/s" "$p99" "$(percent "$c0" "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "$(wal_per "$w0" "$w1" "$stored")"
  notes+=("PostgreSQL ingest ×$n: non-2xx $bad, events stored $stored")
  drop_schema "$schema"

  # 2b. delivery: a backlog filled by one ingest process, drained by N deliver processes.
  schema=bench_scale_deliver_$n
  fresh_schema "$schema"
  for i in $(seq 0 $((n - 1))); do
    config "$work/pg-deliver-$n-$i.toml" "$(ingest_addr "$i")" "$(admin_addr "$i")" "$(pg_storage "$schema")" "http://$receiver_addr/hook"
  done
  FOREBAY_LOG=error target/release/forebay serve --role ingest -c "$work/pg-deliver-$n-0.toml" > "$work/pg-backlog-$n.log" 2>&1 &
  pid=$!; pids+=($pid)
  wait_port "$(ingest_addr 0)"
  pg_pending() { count "SELECT count(*) FROM $schema.deliveries WHERE state = 'pending'"; }
  fill "$(ingest_addr 0)" pg_pending
  stop $pid
  backlog=$(sql "SELECT count(*) FROM $schema.deliveries WHERE state = 'pending'")
  procs=()
  w0=$(wal_lsn); p0=$(pg_ticks); t0=$(now)
  for i in $(seq 0 $((n - 1))); do
    FOREBAY_LOG=error target/release/forebay serve --role deliver -c "$work/pg-deliver-$n-$i.toml" > "$work/pg-deliver-$n-$i.log" 2>&1 &
    procs+=($!); pids+=($!)
  done
  deadline=$(( $(date +%s) + drain_limit ))
  while [ "$(sql "SELECT count(*) FROM $schema.deliveries WHERE state <> 'delivered'")" -gt 0 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "PostgreSQL delivery ×$n did not finish in ${drain_limit}s" >&2; exit 1; }
    sleep 0.2
  done
  t1=$(now); c1=$(ticks "${procs[@]}"); p1=$(pg_ticks); w1=$(wal_lsn)
  s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  stop "${procs[@]}"
  attempts=$(sql "SELECT count(*) FROM $schema.attempts")
  rate=$(awk -v b="$backlog" -v s="$s" 'BEGIN { printf "%.0f", b / s }')
  row "forebay, PostgreSQL, delivery" "$n" "$rate deliveries/s" "—" "$(percent 0 "$c1" "$s")" "$(percent "$p0" "$p1" "$s")" "$(wal_per "$w0" "$w1" "$backlog")"
  notes+=("PostgreSQL delivery ×$n: backlog $backlog in $(printf '%.1f' "$s") s, attempts $attempts")
  drop_schema "$schema"
done

# --- report --------------------------------------------------------------------------
logged=$(cat "$work"/*.log | grep -cv 'listening' || true)
{
  echo
  echo "wrk -t$threads -c$connections -d$duration (one wrk spread over the processes), 1 KiB JSON;" \
    "backlog $events events; $(nproc) cores, load average before $load_before;" \
    "PostgreSQL $(sql 'SHOW server_version'), synchronous_commit = on;" \
    "destination ${CAP:+max_concurrency = $CAP for the cluster}${CAP:-default concurrency (64 per process)}"
  echo
  echo "| config | processes | req/s or deliveries/s | p99 | server CPU % | PostgreSQL CPU % | WAL bytes/event |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "CPU: % of one core over the measured interval; \"server\" is the reference server or" \
    "the forebay processes of the row (not wrk, not the receiver); PostgreSQL is every" \
    "postgres process. WAL per stored event (ingest) or per delivered delivery."
  echo
  printf -- '- %s\n' "${notes[@]}"
  echo "- lines in the processes' logs (FOREBAY_LOG=error): $logged (in $work/*.log)"
} | tee "$work/table.md"
