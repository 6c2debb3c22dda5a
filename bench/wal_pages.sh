#!/usr/bin/env bash
# Where SQLite ingest's writes go: runs the ingest load (as ingest_threads.sh) on one
# binary, copies the WAL a few times while it runs, and prints, for the copy holding the
# most commits, how many 4 KiB frames a commit writes for each table and index, with the
# bytes each thread wrote per request. For comparing schemas and write paths.
#
# Usage: bench/wal_pages.sh BINARY [DURATION]    (default 4s; needs wrk, sqlite3, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$1
duration=${2:-4s}
ingest_addr=127.0.0.1:18193
admin_addr=127.0.0.1:18194
work=bench/results/wal_pages

for tool in wrk sqlite3 python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
rm -rf "$work" && mkdir -p "$work"
source bench/lib.sh

serve_ingest "$bin" "$work" "$ingest_addr" "$admin_addr"
pid=$served

# Per thread: "name-tid bytes-written" (wchar: bytes handed to write calls).
written() {
  for t in /proc/"$pid"/task/*; do
    echo "$(tr ' ' _ < "$t/comm")-${t##*/} $(awk '/^wchar/ {print $2}' "$t/io")"
  done | sort
}
written > "$work/before"
BENCH_PATH=/in/bench wrk -t2 -c64 -d"$duration" -s bench/post.lua "http://$ingest_addr" > "$work/wrk.txt" &
load=$!
sleep 1
for i in 1 2 3 4 5 6 7 8; do cp "$work/forebay.db-wal" "$work/copy$i.wal"; sleep 0.15; done
wait "$load"
written > "$work/after"
kill "$pid"
wait "$pid" 2>/dev/null || true

requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
awk '/Requests\/sec/ {print "req/s " $2}' "$work/wrk.txt"
join "$work/before" "$work/after" | awk -v n="$requests" \
  '{ d = $3 - $2; if (d > 0) printf "%-30s %6.0f bytes written per request\n", $1, d / n }'
# Pages only ever get appended during the load, so the final file maps each to its b-tree.
sqlite3 "$work/forebay.db" "SELECT pageno, name FROM dbstat" > "$work/pages.txt"
python3 - "$work" <<'PY'
import collections, glob, struct, sys
work = sys.argv[1]
owner = dict((int(p), n) for p, n in (l.rstrip("\n").split("|", 1) for l in open(f"{work}/pages.txt")))
best = []
for name in glob.glob(f"{work}/copy*.wal"):
    data = open(name, "rb").read()
    _, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", data[:32])
    commits, frames, at = [], [], 32
    while at + 24 + page_size <= len(data):
        page, commit_size, s1, s2 = struct.unpack(">4I", data[at:at + 16])
        if (s1, s2) != (salt1, salt2):
            break
        frames.append(page)
        if commit_size:
            commits.append(frames)
            frames = []
        at += 24 + page_size
    best = max(best, commits, key=len)
if not best:
    sys.exit("no whole commit in the WAL copies; run longer")
per_tree = collections.Counter(owner.get(p, "(new)") for c in best for p in c)
print(f"{len(best)} commits, {sum(map(len, best)) / len(best):.1f} frames per commit")
for name, n in per_tree.most_common():
    print(f"  {name:40} {n / len(best):5.2f} frames per commit")
PY
