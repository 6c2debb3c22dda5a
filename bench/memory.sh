#!/usr/bin/env bash
# Memory under large bodies: SENDERS connections post SIZE-byte bodies (unique per
# request) to forebay on SQLite for DURATION; prints the peak resident memory (VmHWM),
# the resident memory at the end of the load, and again IDLE seconds after it, next to
# `server.max_inflight_bytes` (the bodies forebay may hold at once).
#
# Usage: [INFLIGHT=256MiB] [FOREBAY_BIN=path] bench/memory.sh [DURATION] [SENDERS] [SIZE] [IDLE]
#   defaults: 10s, 64, 4194304 (4 MiB), 5; INFLIGHT is server.max_inflight_bytes;
#   FOREBAY_BIN runs that binary instead of building target/release/forebay
#   needs wrk (apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
senders=${2:-64}
size=${3:-4194304}
idle=${4:-5}
inflight=${INFLIGHT:-256MiB}
addr=127.0.0.1:18095
admin=127.0.0.1:18096
bin=${FOREBAY_BIN:-target/release/forebay}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -n "${FOREBAY_BIN:-}" ] || cargo build --release --quiet --bin forebay
source bench/lib.sh

work=bench/results/memory
rm -rf "$work" && mkdir -p "$work"
cat > "$work/forebay.toml" <<TOML
[server]
ingest_listen = "$addr"
admin_listen = "$admin"
max_inflight_bytes = "$inflight"
[storage]
url = "sqlite://$work/forebay.db"
[sources.bench]
max_body = "8MiB"
TOML
FOREBAY_LOG=error "$bin" serve -c "$work/forebay.toml" > "$work/forebay.log" 2>&1 &
pid=$!; pids+=($pid)
wait_port "$addr"
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

before=$(kib VmRSS)
BENCH_SIZE=$size wrk -t2 -c"$senders" -d"$duration" -s bench/post.lua "http://$addr" > "$work/wrk.txt" 2>&1
end_rss=$(kib VmRSS)
peak=$(kib VmHWM)
sleep "$idle"
after=$(kib VmRSS)
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
bad=$(awk '/^non2xx/ { print $2 }' "$work/wrk.txt")
printf '%s senders x %s-byte bodies for %s, max_inflight_bytes %s: %s requests, %s not 2xx\n' \
  "$senders" "$size" "$duration" "$inflight" "$requests" "$bad"
printf 'RSS before %s MiB, peak %s MiB, at the end %s MiB, %ss later %s MiB\n' \
  "$(mib "$before")" "$(mib "$peak")" "$(mib "$end_rss")" "$idle" "$(mib "$after")"
