#!/usr/bin/env bash
# Compare the scan plugin's secrets with detect-secrets (PyPI) on the
# corpus of planted secrets and decoys in tests/fixtures/secrets/ (written
# by make_secrets_corpus.py; truth.txt lists the planted ones).
#
#   scripts/reference/detect-secrets.sh [--write-expected FILE]
#
# Installs detect-secrets when it is missing. Exits 1 when weir finds fewer
# true secrets than detect-secrets, or misses one it finds.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
fixture="$repo/tests/fixtures/secrets"
command -v detect-secrets >/dev/null || python3 -m pip install --quiet detect-secrets
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pipeline.toml" <<TOML
[pipeline]
name = "compare-detect-secrets"

[stages.secrets]
uses = "scan"
with = { checks = ["secrets"] }
TOML
(cd "$fixture/corpus" && detect-secrets scan --all-files . >"$work/detect-secrets.json")
(cd "$repo" && cargo build -q)
"$repo/target/debug/weir" run "$work/pipeline.toml" --workspace "$fixture/corpus" --json >"$work/weir.jsonl" || true
python3 "$repo/scripts/reference/compare_secrets.py" "$fixture/truth.txt" "$work/weir.jsonl" "$work/detect-secrets.json" "$@"
