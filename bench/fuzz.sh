#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer) of forebay's own code: config
# loading, every request verifier, jq compile/eval, and the ingest HTTP path (targets in
# fuzz/fuzz_targets/, one job at a time). Each target runs for SECONDS_PER_TARGET from its
# corpus in fuzz/corpus/<target>, which is then minimized with `cargo fuzz cmin` and left
# updated; findings go to fuzz/artifacts/<target>. Prints one verdict line per target
# (runs, exec/s, coverage, corpus size, crashes) and exits non-zero if any target crashed,
# ran out of memory or timed out.
#
# Usage: [TARGETS="jq config"] [RSS_MB=4096] [CMIN=0] [SANITIZER=none] bench/fuzz.sh [SECONDS_PER_TARGET]
#   default 600 s per target; CMIN=0 keeps the corpus as the run left it; SANITIZER is
#   cargo-fuzz's --sanitizer (default address).
#   Runs on stable Rust: RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes.
#   Installs cargo-fuzz (the version below) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
rss_mb=${RSS_MB:-4096}
sanitizer=${SANITIZER:-address}
cargo_fuzz_version=0.13.2
export RUSTC_BOOTSTRAP=1

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
# -a: debug assertions and overflow checks, so arithmetic overflow is a finding.
flags=(--fuzz-dir fuzz -a --sanitizer "$sanitizer")
targets=${TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}
cargo fuzz build "${flags[@]}"

# cap_corpus TARGET DIR SEEDS: what cmin keeps still has one input per counter bucket, far
# more than is worth committing. Keep at most MAX_FILES inputs and MAX_KIB KiB: those
# that cover the most coverage edges, picked greedily from a merge control file.
max_files=${MAX_FILES:-200}
max_kib=${MAX_KIB:-1024}
cap_corpus() {
  local target=$1 corpus=$2 seeds=$3 ctl=$work/$1.merge empty=$work/$1.merged
  # Room is left for the hand-written seeds, which are put back afterwards.
  local files=$((max_files - $(find "$seeds" -type f | wc -l)))
  local bytes=$((max_kib * 1024 - $(find "$seeds" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')))
  rm -rf "$empty" && mkdir -p "$empty"
  "fuzz/target/x86_64-unknown-linux-gnu/release/$target" -merge=1 -use_counters=0 \
    -merge_control_file="$ctl" -rss_limit_mb="$rss_mb" -timeout=30 "$empty" "$corpus" \
    </dev/null >"$work/$target.cap.log" 2>&1 || { echo "$target: capping failed, see $work/$target.cap.log" >&2; return; }
  rm -rf "$empty"
  python3 - "$ctl" "$files" "$bytes" "$seeds" <<'PY' >"$work/$target.keep"
import hashlib, os, sys
ctl, max_files, max_bytes, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = open(ctl).read().splitlines()
files = lines[2:2 + int(lines[0])]
edges = {}
for line in lines[2 + len(files):]:
    if line.startswith("COV "):
        _, i, *cov = line.split()
        edges[int(i)] = set(cov)
# What the seeds cover is covered already (cmin stored them under their SHA-1).
seed_names = set(os.listdir(seeds)) | {
    hashlib.sha1(open(os.path.join(seeds, f), "rb").read()).hexdigest() for f in os.listdir(seeds)
}
covered, kept, size = set(), [], 0
for i in [i for i in edges if os.path.basename(files[i]) in seed_names]:
    covered |= edges.pop(i)
while len(kept) < max_files:
    best = max(edges, default=None, key=lambda i: (len(edges[i] - covered), -os.path.getsize(files[i])))
    if best is None or not edges[best] - covered:
        break
    if size + os.path.getsize(files[best]) <= max_bytes:
        covered |= edges[best]
        kept.append(files[best])
        size += os.path.getsize(files[best])
    del edges[best]
print("\n".join(kept))
PY
  local kept
  kept=$(wc -l <"$work/$target.keep")
  [ "$kept" -gt 0 ] || return
  find "$corpus" -type f | grep -vxFf "$work/$target.keep" | xargs -r rm -f
}

work=bench/results/fuzz
rm -rf "$work" && mkdir -p "$work"
verdicts=()
failed=0
for target in $targets; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$work/$target.log
  touch "$work/$target.start"
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  # One process, one job; stdin closed so nothing can wait on it.
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=30 \
    -print_final_stats=1 "${dict[@]}" </dev/null >"$log" 2>&1 || status=$?
  rm -rf /dev/shm/forebay-fuzz-* /tmp/forebay-fuzz-* 2>/dev/null || true
  found() { find "$artifacts" -newer "$work/$target.start" -name "$1-*" | wc -l; }
  crashes=$(found crash) ooms=$(found oom) timeouts=$(found timeout) leaks=$(found leak)
  # The last status line: "#RUNS ... cov: C ft: F corp: N/SIZE ... exec/s: E rss: R".
  last=$(grep -aE '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(grep -aoE 'stat::number_of_executed_units: +[0-9]+' "$log" | awk '{ print $2 }' || true)
  runs=${runs:-$(awk '{ sub("#", "", $1); print $1 }' <<<"$last")}
  rate=$(grep -aoE 'stat::average_exec_per_sec: +[0-9]+' "$log" | awk '{ print $2 }' || true)
  rate=${rate:-$(grep -aoE 'exec/s: [0-9]+' <<<"$last" | awk '{ print $2 }' || true)}
  cov=$(grep -aoE 'cov: [0-9]+' <<<"$last" | awk '{ print $2 }' || true)
  ft=$(grep -aoE 'ft: [0-9]+' <<<"$last" | awk '{ print $2 }' || true)
  peak=$(grep -aoE 'stat::peak_rss_mb: +[0-9]+' "$log" | awk '{ print $2 }' || true)
  if [ "${CMIN:-1}" != 0 ] && [ "$status" = 0 ]; then
    # Hand-written seeds (any name but libFuzzer's 40-hex-digit ones) stay as they are.
    seeds=$work/$target.seeds
    rm -rf "$seeds" && mkdir -p "$seeds"
    find "$corpus" -type f | grep -vE '/[0-9a-f]{40}$' | xargs -r cp -t "$seeds/"
    cargo fuzz cmin "${flags[@]}" "$target" "$corpus" -- -rss_limit_mb="$rss_mb" -timeout=30 \
      </dev/null >"$work/$target.cmin.log" 2>&1 || echo "$target: cmin failed, see $work/$target.cmin.log" >&2
    cap_corpus "$target" "$corpus" "$seeds"
    for seed in "$seeds"/*; do
      [ -f "$seed" ] || continue
      rm -f "$corpus/$(sha1sum "$seed" | cut -d' ' -f1)"
      cp "$seed" "$corpus/"
    done
    rm -rf /dev/shm/forebay-fuzz-* /tmp/forebay-fuzz-* 2>/dev/null || true
  fi
  files=$(find "$corpus" -type f | wc -l)
  kib=$(du -sk "$corpus" | awk '{ print $1 }')
  bad=$((crashes + ooms + timeouts + leaks))
  if [ "$bad" -gt 0 ] || [ "$status" != 0 ]; then
    failed=1
    verdict=FAIL
  else
    verdict=ok
  fi
  verdicts+=("$(printf '%-15s %s: %s s, %s runs, %s exec/s, cov %s, ft %s, corpus %s files (%s KiB), peak rss %s MB, crashes %s/%s (oom %s, timeout %s, leak %s), exit %s' \
    "$target" "$verdict" "$seconds" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files" "$kib" "${peak:-?}" \
    "$crashes" "${runs:-?}" "$ooms" "$timeouts" "$leaks" "$status")")
  echo "${verdicts[-1]}"
  if [ "$bad" -gt 0 ]; then
    find "$artifacts" -newer "$work/$target.start" -type f | sed 's/^/  finding: /'
  fi
done

echo
echo "fuzzing, ${seconds}s per target (logs in $work):"
printf '%s\n' "${verdicts[@]}"
exit "$failed"
