#!/usr/bin/env bash
# The API against its own OpenAPI document: schemathesis (PyPI) generates
# requests from /api/v1/openapi.json, valid and not, sends them to a real
# `weir serve` on 127.0.0.1, and checks every answer: no 5xx, every status,
# content type, header and body as the document says, invalid requests
# refused, valid ones accepted. .ci/run runs it after the tests.
#
#   scripts/api-fuzz.sh [target/debug/weir] [examples per operation]
set -euo pipefail
weir="$(realpath "${1:-target/debug/weir}")"
examples="${2:-30}"
# Through its module, so a pyenv whose shims were not rehashed finds it.
python3 -c "import schemathesis" 2>/dev/null || { echo "api-fuzz: schemathesis is not installed (pip install schemathesis)" >&2; exit 2; }

work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  WEIR_STATE_DIR="$work/state" "$weir" target down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A repository with a small real pipeline, so runs the fuzzer queues run.
mkdir -p "$work/repo"
cat >"$work/repo/pipeline.toml" <<'TOML'
[pipeline]
name = "fuzzed"

[stages.checkout]
uses = "git"
with = { repo = "${{ pipeline.dir }}", ref = "HEAD", depth = 1 }
allow = { exec = ["git"], read = ["."] }
TOML
git -C "$work/repo" init -q -b main
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=ci -c user.email=ci@example.com commit -qm first

cat >"$work/weir-server.toml" <<'TOML'
[server]
data-dir = "state"
concurrency = 2
# The fuzzer is one client sending as fast as it can.
rate-limit = 10000

[repositories.app]
forge = "github"
name = "acme/app"
clone-url = "repo"
secret-env = "FUZZ_HOOK_SECRET"
TOML

cd "$work"
token="$("$weir" serve --config weir-server.toml token create --operator --label fuzzer 2>/dev/null)"
FUZZ_HOOK_SECRET=fuzz "$weir" serve --config weir-server.toml --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 100); do
  addr="$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$work/serve.out")"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "api-fuzz: weir serve did not start" >&2; cat "$work/serve.err" >&2; exit 1; }

status=0
python3 -m schemathesis.cli run "http://$addr/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$examples" \
  --seed 20261207 \
  --no-color || status=$?
if grep -q "panicked" "$work/serve.err"; then
  echo "api-fuzz: the server panicked:" >&2
  grep -A5 "panicked" "$work/serve.err" >&2
  status=1
fi
kill -0 "$server" 2>/dev/null || { echo "api-fuzz: the server died" >&2; status=1; }
exit "$status"
