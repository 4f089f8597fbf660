#!/usr/bin/env bash
# Every performance figure weir publishes, each against its reference,
# measured in one run on this machine. docs/BENCHMARKS.md records the
# latest numbers and explains each ratio.
#
#   benches/run.sh                 everything (about 20 minutes on 2 cores)
#   benches/run.sh start memory    only these sections
#
# Sections:
#   start        (1) a no-op stage: weir, bare wasmtime, /bin/true, Extism
#   pipeline     (2) `weir run` of 1 to 1,000 no-op stages, chain and fan-out
#   process      (3) `weir run` of one stage as a process, warm and cold cache
#   concurrency  (4) 1,000 five-stage runs from 100 tenants at once
#   memory       (5) RSS per live stage with 1,000 live
#   realwork     (6) the quickstart's build and tests, through weir and direct
#   router       (7) the deploy router against nginx (needs nginx, wrk)
#   scan         (7) the scan plugin against detect-secrets (16 MiB tree)
#   serve        (8) weir serve: list-runs with 10,000 runs, webhook to
#                    first stage, pushes queued per second
#   workers      (10) weir serve --nats and weir workers: dispatch latency,
#                    runs/s with 1, 2 and 4 workers, worker death to its
#                    run continuing (needs nats-server)
#   containers   (11) the oci-image stage against podman build + push, and
#                    container start to ready (needs podman, docker-registry)
#
# SKIP_EXTISM=1 leaves Extism out of (1) (building it takes ~10 minutes
# the first time). Builds are release builds; the figures are collected in
# target/bench/figures.txt. Not a test: nothing asserts.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(start pipeline process concurrency memory realwork router scan serve workers containers)
out="$repo/target/bench"
mkdir -p "$out"
figures="$out/figures.txt"
: >"$figures"

echo "== building weir and the harness (release)"
cargo build --release -q
cargo bench -q --bench stages --no-run 2>/dev/null

wants() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

if wants start && [ "${SKIP_EXTISM:-0}" != 1 ]; then
  echo "== building the Extism reference (benches/extism, its own wasmtime)"
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  (cd benches/extism/echo && cargo build -q --release --target wasm32-unknown-unknown)
  (cd benches/extism && cargo build -q --release)
  export WEIR_BENCH_EXTISM="$repo/benches/extism/target/release/extism-bench"
fi

harness() {
  echo
  cargo bench -q --bench stages -- "$1" 2>&1 | tee "$out/$1.txt" | grep -v '^FIGURE'
  grep '^FIGURE' "$out/$1.txt" >>"$figures" || true
}

for s in start pipeline process concurrency memory; do
  if wants "$s"; then harness "$s"; fi
done

if wants realwork; then
  echo
  echo "(6) real work: the quickstart's build and tests, through weir and directly"
  benches/realwork.sh 5 | tee "$out/realwork.txt" | grep -v '^FIGURE'
  grep '^FIGURE' "$out/realwork.txt" >>"$figures" || true
fi

if wants router; then
  echo
  echo "(7) the router against nginx, and time to recovery"
  if command -v nginx >/dev/null && command -v wrk >/dev/null; then
    benches/router.sh 10 64
  else
    echo "  skipped: needs nginx and wrk (Debian: apt-get install nginx-light wrk)"
  fi
fi

if wants scan; then
  echo
  echo "(7) scan throughput against detect-secrets, a 16 MiB tree"
  benches/scan.sh 16
fi

if wants serve; then
  echo
  echo "(8) weir serve over HTTP"
  cargo bench -q --bench serve | tee -a "$figures"
fi

if wants workers; then
  echo
  echo "(10) weir serve --nats with weir workers (needs nats-server)"
  cargo bench -q --bench workers | tee -a "$figures"
fi

if wants containers; then
  echo
  echo "(11) container releases: image build and push, container start (needs podman, docker-registry)"
  if command -v podman >/dev/null && command -v docker-registry >/dev/null; then
    benches/containers.sh 5 | tee "$out/containers.txt" | grep -v '^FIGURE'
    grep '^FIGURE' "$out/containers.txt" >>"$figures" || true
  else
    echo "  skipped: needs podman and docker-registry (Debian: apt-get install podman runc docker-registry)"
  fi
fi

echo
echo "figures: $figures"
