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
