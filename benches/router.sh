#!/usr/bin/env bash
# The local target's router against nginx as the same weighted reverse
# proxy, and the time from a failed canary check to all traffic back on
# the stable version.
#
#   benches/router.sh [SECONDS] [CONNECTIONS]     (default 10 s, 64)
#
# Needs nginx and wrk (Debian: apt-get install nginx-light wrk). Builds weir
# in release mode, then:
#   1. starts the target and two instances of a backend (nginx answering
#      `ok` from memory, so the backend is never the bottleneck) as
#      versions `a` and `b`, split 90/10 by weir's router;
#   2. starts nginx as a reverse proxy to the same two instances with
#      `weight=9` and `weight=1` and upstream keep-alive;
#   3. drives each (and one backend directly, the floor) with wrk on
#      loopback, and prints requests/s and the p50/p99 latency each adds;
#   4. deploys a version that answers 500 to one request in five, five
#      times, and prints the rollout's `recovery_ms` (from the failed
#      check to all traffic verified back on the stable version).
# Not a test: nothing asserts. On 2 cores wrk, the proxy and the backend
# share the CPUs; compare ratios, not absolute numbers.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-10}"
conns="${2:-64}"
for tool in nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "router.sh needs $tool (Debian: apt-get install nginx-light wrk curl)" >&2; exit 2; }
done
work="$(mktemp -d)"
cleanup() {
  (cd "$work" && "$weir" target down >/dev/null 2>&1) || true
  [ -f "$work/proxy/nginx.pid" ] && kill "$(cat "$work/proxy/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$repo" && cargo build --release -q)
weir="$repo/target/release/weir"
export WEIR_CACHE_DIR="$work/cache"
cd "$work"

# The backend: nginx on $PORT answering `ok` (and the readiness path).
mkdir -p ws
cat > ws/backend.sh <<'SH'
#!/bin/sh
dir="$(mktemp -d)"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  server { listen 127.0.0.1:$PORT; keepalive_requests 100000; location / { return 200 "ok\n"; } }
}
CONF
exec nginx -c "$dir/nginx.conf" -p "$dir"
SH
chmod +x ws/backend.sh
"$weir" target up >/dev/null
sock="$work/.weir/target/control.sock"
api() { curl -sf --unix-socket "$sock" -H 'content-type: application/json' "$@"; }
start() {
  api -X POST -d "{\"service\":\"bench\",\"version\":\"$1\",\"program\":\"$work/ws/backend.sh\",\"args\":[],\"env\":[],\"readiness_path\":\"/\",\"port\":0,\"run\":null}" http://t/v1/instances
}
port_a=$(start a | python3 -c 'import json,sys; print(json.load(sys.stdin)["port"])')
port_b=$(start b | python3 -c 'import json,sys; print(json.load(sys.stdin)["port"])')
api -X PUT -d '{"weights":[["a",90],["b",10]]}' http://t/v1/services/bench/weights >/dev/null
router=$(api http://t/v1/services/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')

# nginx as the same weighted proxy.
mkdir -p proxy
proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > proxy/nginx.conf <<CONF
worker_processes 1;
pid $work/proxy/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/proxy; proxy_temp_path $work/proxy; fastcgi_temp_path $work/proxy; uwsgi_temp_path $work/proxy; scgi_temp_path $work/proxy;
  upstream bench { server 127.0.0.1:$port_a weight=9; server 127.0.0.1:$port_b weight=1; keepalive 128; }
  server {
    listen 127.0.0.1:$proxy_port;
    keepalive_requests 100000;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$work/proxy/nginx.conf" -p "$work/proxy"

measure() { # KEY LABEL ADDRESS
  wrk -t2 -c"$conns" -d"${secs}s" --latency "http://$3/" >"$work/$1.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$work/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$1.txt")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/$1.txt" | tr '\n' ' ')
  printf '%-22s %12s req/s   p50 %8s   p99 %8s   %s\n' "$2" "$rps" "$p50" "$p99" "$errors"
}
echo "wrk: 2 threads, $conns connections, ${secs}s each, on $(nproc) cores"
measure direct "backend (direct)" "127.0.0.1:$port_a"
measure nginx "nginx 90/10" "127.0.0.1:$proxy_port"
measure weir "weir router 90/10" "$router"
python3 - "$work" <<'PY'
import re, sys
def parse(name):
    text = open(f"{sys.argv[1]}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def ms(p):
        v = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", text, re.M)
        return float(v.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[v.group(2)]
    return rps, ms(50), ms(99)
d, n, w = parse("direct"), parse("nginx"), parse("weir")
print(f"throughput weir/nginx: {w[0] / n[0]:.2f}")
print(f"p99 added over the backend: nginx {n[2] - d[2]:.2f} ms, weir {w[2] - d[2]:.2f} ms")
PY

# Time to recovery: a canary that fails its first check.
cat > ws/svc.py <<'PY'
#!/usr/bin/env python3
import http.server, os, threading
RATE = float(os.environ.get("ERROR_RATE", "0"))
lock = threading.Lock(); served = [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with lock:
            served[0] += 1; n = served[0]
        code = 500 if self.path != "/healthz" and int(n * RATE) != int((n - 1) * RATE) else 200
        self.send_response(code); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
pipeline() { # VERSION ERROR_RATE
  cat > pipeline.toml <<TOML
[pipeline]
name = "recovery"
[stages.deploy]
uses = "deploy"
with = { service = "web", artifact = "svc.py", version = "$1", readiness-path = "/healthz", replicas = 2, env = { ERROR_RATE = "$2" } }
strategy = { uses = "canary", with = { steps = [20, 100], interval = "2s" } }
checks = [{ uses = "canary-metrics", with = { max-error-rate = 0.05, min-requests = 10 } }]
load = { rate = 50 }
allow = { runtime = true, metrics = ["builtin"] }
TOML
}
pipeline stable 0
"$weir" run pipeline.toml --workspace "$work/ws" --json >/dev/null
for i in 1 2 3 4 5; do
  pipeline "bad$i" 0.2
  "$weir" run pipeline.toml --workspace "$work/ws" --json >"$work/bad$i.json" || true
done
python3 - "$work" <<'PY'
import json, sys
times = []
for i in range(1, 6):
    for line in open(f"{sys.argv[1]}/bad{i}.json"):
        e = json.loads(line)
        if e.get("event") == "rollout" and e.get("phase") == "rolled_back":
            times.append(e["recovery_ms"])
times.sort()
print(f"failed check -> all traffic on stable: {times} ms (median {times[len(times) // 2]} ms)")
PY
