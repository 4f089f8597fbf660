#!/usr/bin/env bash
# (11) Container releases: weir's oci-image stage (build the image and push
# it, no daemon) against `podman build` + `podman push` of the equivalent
# FROM scratch Containerfile, both into the same docker-registry on
# loopback; and container start → ready, through weir's target and with a
# bare `podman run` of the same flags.
#
#   benches/containers.sh [N]        N rounds (default 5)
#
# Needs podman, runc and docker-registry (Debian). Prints FIGURE lines;
# docs/BENCHMARKS.md section 11 records them. Not a test: nothing asserts.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-5}"
weir="$repo/target/release/weir"
[ -x "$weir" ] || cargo build --release -q --manifest-path "$repo/Cargo.toml"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
reg="$("$repo/scripts/registry.sh" start "$port" "$work/registry")"
cleanup() {
  (cd "$work/p" 2>/dev/null && "$weir" target down >/dev/null 2>&1) || true
  "$repo/scripts/registry.sh" stop "$work/registry"
  rm -rf "$work"
}
trap cleanup EXIT
ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "building the quickstart service as a static binary"
(cd "$repo/examples/quickstart/service" &&
  RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release \
    --target x86_64-unknown-linux-gnu --target-dir "$work/build")
bin="$work/build/x86_64-unknown-linux-gnu/release/quickstart-service"
size=$(stat -c %s "$bin")
echo "binary: $size bytes; registry $reg; podman $(podman --version | awk '{print $3}')"
mkdir -p "$work/p/ws" "$work/ctx"
cp "$bin" "$work/p/ws/service"
cp "$bin" "$work/ctx/quickstart-service"
cat > "$work/ctx/Containerfile" <<'CF'
FROM scratch
COPY quickstart-service /quickstart-service
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
ENTRYPOINT ["/quickstart-service"]
CF
P=(podman)
[ -n "${WEIR_PODMAN_ARGS:-}" ] && read -r -a extra <<<"$WEIR_PODMAN_ARGS" && P+=("${extra[@]}")
if [ -z "${WEIR_PODMAN_ARGS:-}" ]; then
  [ -d /run/systemd/system ] || P+=(--cgroup-manager=cgroupfs)
  if [ -d /sys/fs/cgroup/unified ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ] && command -v runc >/dev/null; then
    P+=(--runtime=runc)
  fi
fi

image_pipeline() {
  cat > "$work/p/pipeline.toml" <<TOML
[pipeline]
name = "bench-image"

[stages.image]
uses = "oci-image"
with = { image = "$reg/$1:latest", files = [{ from = "service", to = "/quickstart-service" }], entrypoint = ["/quickstart-service"], env = { HOST = "0.0.0.0", PORT = "8080" }, port = 8080 }
allow = { network = ["$reg"] }
TOML
}

echo
echo "image build + push, each round into a new repository (nothing to reuse)"
: > "$work/weir-stage.txt"; : > "$work/weir-run.txt"; : > "$work/podman.txt"
for i in $(seq 1 "$n"); do
  image_pipeline "weir-$i"
  t0=$(ms)
  (cd "$work/p" && "$weir" run pipeline.toml --json --workspace ws > "$work/run.json")
  t1=$(ms)
  echo $((t1 - t0)) >> "$work/weir-run.txt"
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="stage_finished" and e.get("stage")=="image": print(e["duration_ms"])' "$work/run.json" >> "$work/weir-stage.txt"
  t0=$(ms)
  "${P[@]}" build -q -t "$reg/podman-$i:latest" "$work/ctx" > /dev/null
  "${P[@]}" push -q --tls-verify=false "$reg/podman-$i:latest" > /dev/null
  t1=$(ms)
  echo $((t1 - t0)) >> "$work/podman.txt"
done
ws=$(median < "$work/weir-stage.txt"); wr=$(median < "$work/weir-run.txt"); pb=$(median < "$work/podman.txt")
echo "  weir oci-image stage:        median ${ws} ms   (the whole weir run: ${wr} ms)"
echo "  podman build + podman push:  median ${pb} ms"
echo "FIGURE containers image_build_push_weir_stage_ms $ws"
echo "FIGURE containers image_build_push_weir_run_ms $wr"
echo "FIGURE containers image_build_push_podman_ms $pb"
d1=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="stage_finished": print(e["outputs"]["digest"])' "$work/run.json")
image_pipeline "weir-$n"
(cd "$work/p" && "$weir" run pipeline.toml --json --workspace ws > "$work/run2.json")
d2=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="stage_finished": print(e["outputs"]["digest"])' "$work/run2.json")
echo "  the same inputs again: $d1 then $d2 ($([ "$d1" = "$d2" ] && echo same || echo DIFFERENT))"

echo
echo "container start → ready (image present; GET /healthz answers 200)"
image=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")=="stage_finished": print(e["outputs"]["image"])' "$work/run.json")
"${P[@]}" pull -q --tls-verify=false "$image" > /dev/null
: > "$work/bare.txt"
for i in $(seq 1 "$n"); do
  hp="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  t0=$(ms)
  "${P[@]}" run -d --rm --name "bench-bare-$i" --init --publish "127.0.0.1:$hp:8080" --user=65534:65534 --cap-drop=all \
    --security-opt=no-new-privileges --read-only --ulimit=nofile=1024:1024 --ulimit=nproc=1024:1024 \
    --memory=536870912 --pids-limit=256 "$image" > /dev/null
  until curl -fsS -o /dev/null "http://127.0.0.1:$hp/healthz" 2>/dev/null; do sleep 0.005; done
  t1=$(ms)
  echo $((t1 - t0)) >> "$work/bare.txt"
  "${P[@]}" rm -f -t 0 "bench-bare-$i" > /dev/null
done
cat > "$work/p/pipeline.toml" <<TOML
[pipeline]
name = "bench-start"

[stages.deploy]
uses = "container"
timeout = "5m"
with = { service = "bench", image = "$image", port = 8080, readiness-path = "/healthz", replicas = $n }
strategy = { uses = "recreate" }
allow = { runtime = true, network = ["$reg"] }
TOML
(cd "$work/p" && "$weir" run pipeline.toml --json --workspace ws > "$work/deploy.json")
python3 - "$work/deploy.json" > "$work/weir-start.txt" <<'PY'
import json, sys
starts, ready = [], []
for line in open(sys.argv[1]):
    e = json.loads(line)
    m = e.get("message", "")
    if e.get("event") == "stage_progress" and "starting a container" in m:
        starts.append(e["time_ms"])
    if e.get("event") == "stage_log" and " is ready on port " in m:
        ready.append(e["time_ms"])
for s, r in zip(starts, ready):
    print(r - s)
PY
bs=$(median < "$work/bare.txt"); wsr=$(median < "$work/weir-start.txt")
echo "  bare podman run -d, polled:   median ${bs} ms"
echo "  weir's target (start-container → ready, over the control API): median ${wsr} ms ($(wc -l < "$work/weir-start.txt") containers)"
echo "FIGURE containers start_ready_podman_ms $bs"
echo "FIGURE containers start_ready_weir_ms $wsr"
