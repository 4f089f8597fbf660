#!/usr/bin/env bash
# A local OCI registry for the containers example and the benchmarks:
# Debian's docker-registry (the CNCF distribution registry) on loopback,
# its blobs under DIR (default .weir/registry).
#
#   scripts/registry.sh start [PORT] [DIR]   # PORT default 5000; prints the address
#   scripts/registry.sh stop [DIR]
#
# With REGISTRY_HTPASSWD=FILE it asks for a user and password (Basic).
set -euo pipefail
cmd="${1:-start}"
case "$cmd" in
  start) port="${2:-5000}"; dir="${3:-.weir/registry}" ;;
  stop) dir="${2:-.weir/registry}" ;;
  *) echo "usage: $0 start [PORT] [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ "$cmd" = stop ]; then
  if [ -f "$dir/registry.pid" ]; then kill "$(cat "$dir/registry.pid")" 2>/dev/null || true; rm -f "$dir/registry.pid"; fi
  exit 0
fi
command -v docker-registry >/dev/null 2>&1 || {
  echo "docker-registry is not installed (Debian: apt-get install docker-registry)" >&2; exit 1; }
if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
  echo "a registry already runs from $dir (pid $(cat "$dir/registry.pid")); $0 stop $dir" >&2; exit 1
fi
auth=""
if [ -n "${REGISTRY_HTPASSWD:-}" ]; then
  auth="auth:
  htpasswd:
    realm: weir-registry
    path: $REGISTRY_HTPASSWD"
fi
cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
YAML
nohup docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
echo $! > "$dir/registry.pid"
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null \
    || [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ]; then
    echo "127.0.0.1:$port"; exit 0
  fi
  sleep 0.1
done
echo "the registry did not answer on 127.0.0.1:$port; see $dir/registry.log" >&2
exit 1
