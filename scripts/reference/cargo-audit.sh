#!/usr/bin/env bash
# Compare the scan plugin's vulnerable dependencies with `cargo audit` on
# the same Cargo.lock and the same offline advisory database.
#
#   scripts/reference/cargo-audit.sh [ADVISORY_DB [CARGO_LOCK [--write-expected FILE]]]
#
# Defaults: ../shared/advisory-db beside the repository, and a generated
# lock file pinning versions around every bound in that database
# (tests/fixtures/deps/Cargo.lock, see make_lockfile.py). Installs
# cargo-audit when it is missing. Exits 1 when the two disagree.
# --write-expected records cargo audit's answer for the end-to-end test
# (tests/fixtures/deps/cargo-audit.expected), which runs without it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
db="$(cd "${1:-$repo/../shared/advisory-db}" && pwd)"
lock="$(realpath "${2:-$repo/tests/fixtures/deps/Cargo.lock}")"
command -v cargo-audit >/dev/null || cargo install cargo-audit --locked
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ws"
cp "$lock" "$work/ws/Cargo.lock"
cat > "$work/pipeline.toml" <<TOML
[pipeline]
name = "compare-cargo-audit"

[stages.deps]
uses = "scan"
with = { checks = ["dependencies"], advisory-db = "$db" }
allow = { read = ["$db"] }
TOML
# cargo audit exits 1 when it finds vulnerabilities, and prints yanked-check
# errors for the generated versions that crates.io never published.
cargo audit --db "$db" --no-fetch -f "$work/ws/Cargo.lock" --json >"$work/audit.json" 2>/dev/null || true
(cd "$repo" && cargo build -q)
"$repo/target/debug/weir" run "$work/pipeline.toml" --workspace "$work/ws" --json >"$work/weir.jsonl" || true
python3 "$repo/scripts/reference/compare_audit.py" "$work/audit.json" "$work/weir.jsonl" "${@:3}"
