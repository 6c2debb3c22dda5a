# Shared by the benchmark scripts: process clean-up and waiting for a port.
# Source it after `cd` to the repository root; it sets an EXIT trap.

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# wait_port HOST:PORT — until something accepts connections there (10 s at most).
wait_port() {
  for _ in $(seq 1 100); do
    if (echo >/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

# wrk_figures FILE — "req/s p50 p99 non-2xx" of a wrk run with --latency and post.lua.
wrk_figures() {
  awk '
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^non2xx/ { bad = $2 }
    END { printf "%s %s %s %s\n", rps, p50, p99, bad }' "$1"
}

# ingest_config FILE DB INGEST_ADDR ADMIN_ADDR — the ingest benchmarks' configuration: one
# source with no verification and one route, so each request commits an event and a
# pending delivery (the destination does not exist; run with --role ingest).
ingest_config() {
  cat > "$1" <<TOML
[server]
ingest_listen = "$3"
admin_listen = "$4"
[storage]
url = "sqlite://$2"
[sources.bench]
[destinations.sink]
kind = "http"
url = "http://127.0.0.1:9/"
[[routes]]
source = "bench"
destination = "sink"
TOML
}

# serve_ingest BINARY DIR INGEST_ADDR ADMIN_ADDR — starts BINARY (`--role ingest`) on the
# ingest_config configuration with its store in DIR, waits until it listens, and sets
# `served` to its pid (killed on exit).
serve_ingest() {
  ingest_config "$2/forebay.toml" "$(realpath "$2")/forebay.db" "$3" "$4"
  FOREBAY_LOG=error "$1" serve --role ingest -c "$2/forebay.toml" > "$2/forebay.log" 2>&1 &
  served=$!
  pids+=("$served")
  wait_port "$3"
}
