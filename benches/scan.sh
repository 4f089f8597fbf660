#!/usr/bin/env bash
# Scan throughput: the scan plugin (secrets and risky config, in wasm,
# through `weir run`) against detect-secrets on the same generated tree.
#
#   benches/scan.sh [MEGABYTES]     (default 64)
#   SKIP_REFERENCE=1 benches/scan.sh   weir only (detect-secrets takes minutes)
#
# Builds weir in release mode, generates the tree (benches/gen_tree.py),
# runs weir three times with a warm compile cache and detect-secrets once,
# and prints MB/s for each and their ratio. The scan stage has
# `cache = false`, so every run scans; a last run with the stage cache on
# measures a hit (the input digests and the lookup). Not a test: nothing
# asserts.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mb="${1:-64}"
command -v detect-secrets >/dev/null || python3 -m pip install --quiet detect-secrets
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && cargo build --release -q)
weir="$repo/target/release/weir"
python3 "$repo/benches/gen_tree.py" "$work/tree" "$mb"
bytes=$(find "$work/tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
files=$(find "$work/tree" -type f | wc -l)
cat > "$work/pipeline.toml" <<TOML
[pipeline]
name = "scan-bench"

[stages.scan]
uses = "scan"
timeout = "30m"
cache = false
with = { checks = ["secrets", "config"], max-files = 1000000 }
TOML
sed -e "s/^cache = false$/cache = true/" -e "s/^timeout = \"30m\"$/timeout = \"30m\"\ngate = { max-findings = 1000000 }/" "$work/pipeline.toml" >"$work/cached.toml" # a gate that passes: only successes are cached
export WEIR_CACHE_DIR="$work/cache"
cd "$work" # the run history (.weir/) goes here, not into the caller's directory
now() { date +%s.%N; }
"$weir" run "$work/pipeline.toml" --workspace "$work/tree" --json >/dev/null || true # warm the compile cache
best_wall=""; best_stage=""
for i in 1 2 3; do
  t0=$(now)
  "$weir" run "$work/pipeline.toml" --workspace "$work/tree" --json >"$work/weir.jsonl" || true
  t1=$(now)
  wall=$(echo "$t1 - $t0" | bc -l)
  stage=$(python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"stage_finished\"' in l][0]['duration_ms']/1000)" "$work/weir.jsonl")
  if [ -z "$best_wall" ] || [ "$(echo "$wall < $best_wall" | bc -l)" = 1 ]; then best_wall=$wall; best_stage=$stage; fi
done
# The stage cache: one run to fill it, one timed hit.
"$weir" run "$work/cached.toml" --workspace "$work/tree" --json >/dev/null || true
t0=$(now)
"$weir" run "$work/cached.toml" --workspace "$work/tree" --json >"$work/hit.jsonl" || true
t1=$(now)
hit=$(echo "$t1 - $t0" | bc -l)
hit_status=$(python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"stage_cache\"' in l][0]['status'])" "$work/hit.jsonl")
found=$(python3 -c "import json,sys; print(len([json.loads(l) for l in open(sys.argv[1]) if '\"stage_finished\"' in l][0].get('findings',[])))" "$work/weir.jsonl")
mib=$(echo "$bytes / 1048576" | bc -l)
printf '\ntree: %d files, %.1f MiB\n' "$files" "$mib"
printf '%-32s %8.2f s  %8.1f MiB/s  %6d findings\n' "weir scan (whole weir run)" "$best_wall" "$(echo "$mib / $best_wall" | bc -l)" "$found"
printf '%-32s %8.2f s  %8.1f MiB/s\n' "weir scan (the stage alone)" "$best_stage" "$(echo "$mib / $best_stage" | bc -l)"
printf '%-32s %8.2f s  (stage cache %s)\n' "weir scan, unchanged tree" "$hit" "$hit_status"
if [ -z "${SKIP_REFERENCE:-}" ]; then
  t0=$(now)
  (cd "$work/tree" && detect-secrets scan --all-files . >"$work/ds.json")
  t1=$(now)
  ds=$(echo "$t1 - $t0" | bc -l)
  ds_found=$(python3 -c "import json,sys; print(sum(len(v) for v in json.load(open(sys.argv[1]))['results'].values()))" "$work/ds.json")
  printf '%-32s %8.2f s  %8.1f MiB/s  %6d findings\n' "detect-secrets $(detect-secrets --version)" "$ds" "$(echo "$mib / $ds" | bc -l)" "$ds_found"
  printf 'ratio: weir is %.1fx the throughput of detect-secrets (whole run)\n' "$(echo "$ds / $best_wall" | bc -l)"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
