#!/usr/bin/env bash
# Real work through weir against the same commands run directly: the
# quickstart service's release build and its tests, as the quickstart's
# `build` and `cargo-test` stages run them (`cargo build --release`, then
# `cargo test --no-fail-fast --color never`), from a clean target
# directory each time.
#
#   benches/realwork.sh [REPEATS]     (default 5)
#
# Each repeat copies examples/quickstart/service to a fresh directory and
# times, alternately, `weir run` of a two-stage pipeline (build, then
# test, stage cache off) with that directory as its workspace, and a
# shell running the two commands there. Prints the medians and their
# ratio. Programs run inside bubblewrap when it is installed, as in a
# real run; the ratio then includes it. Not a test: nothing asserts.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
repeats="${1:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && cargo build --release -q)
weir="$repo/target/release/weir"
export WEIR_CACHE_DIR="$work/cache"
cat > "$work/pipeline.toml" <<TOML
[pipeline]
name = "realwork"

[stages.build]
uses = "build"
timeout = "10m"
cache = false
inherit-env = ["HOME", "PATH"]
allow = { exec = ["cargo"], read = ["~/.cargo", "~/.rustup"] }

[stages.test]
uses = "cargo-test"
needs = ["build"]
timeout = "10m"
cache = false
inherit-env = ["HOME", "PATH"]
allow = { exec = ["cargo"], read = ["~/.cargo", "~/.rustup"] }
TOML
fresh() {
  rm -rf "$work/src"
  cp -r "$repo/examples/quickstart/service" "$work/src"
  rm -rf "$work/src/target"
}
now() { date +%s.%N; }
cd "$work"
fresh
"$weir" run pipeline.toml --workspace "$work/src" --json >/dev/null # warm: compile cache, cargo's registry
weir_times=(); shell_times=()
for i in $(seq "$repeats"); do
  fresh
  t0=$(now)
  "$weir" run pipeline.toml --workspace "$work/src" --json >"$work/run.json" || { tail -5 "$work/run.json" >&2; exit 1; }
  t1=$(now)
  weir_times+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')")
  fresh
  t0=$(now)
  (cd "$work/src" && cargo build --release -q 2>/dev/null && cargo test --no-fail-fast --color never -q >/dev/null 2>&1)
  t1=$(now)
  shell_times+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')")
  printf '  repeat %s: weir %.2f s, shell %.2f s\n' "$i" "${weir_times[-1]}" "${shell_times[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
w=$(median "${weir_times[@]}"); s=$(median "${shell_times[@]}")
sandbox=$(grep -o '"sandbox":"[^"]*"' "$work/run.json" | head -1 | cut -d'"' -f4)
printf '  weir run (build, test)   median %.2f s   (programs: %s)\n' "$w" "${sandbox:-not recorded}"
printf '  the same commands        median %.2f s\n' "$s"
r=$(awk -v a="$w" -v b="$s" 'BEGIN { print a / b }')
printf '  ratio weir / direct: %.3f (goal within 2%%)\n' "$r"
printf 'FIGURE realwork.ratio %.4f x median\n' "$r"
