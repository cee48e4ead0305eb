#!/usr/bin/env bash
# What container steps cost the Kubernetes API server (issue: one shared pod
# watch instead of one per step).
#
# Starts the fake API server as a fake cluster that plays the kubelet
# (crates/k8s-fake/examples/fake_cluster.rs: every pod starts, prints a line
# and succeeds), a real `oj daemon` pointed at it with KUBECONFIG and
# jobs.max_concurrent = STEPS, submits STEPS one-step container jobs at once,
# waits until all are done, and prints what the fake counted:
#
#   API requests per container step: 5.00   (pod and pod-log requests / pods; the
#                                            shared watch is not counted)
#   watch connections: 1                    (the most pod watches open at once)
#
# Usage: bench/k8s_scale.sh [STEPS]          (default 500)
#   OJ_BIN=path/to/oj  use that binary (default: builds target/release/oj)
#   FAKE_BIN=path      the fake_cluster example (default: built in release)
# Exit status: 0 when every job ended done and at most 2 watches were open.
set -euo pipefail

STEPS=${1:-500}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_workdir k8s

if [[ -z "${FAKE_BIN:-}" ]]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target} \
    cargo build --release -q -p oj-k8s-fake --example fake_cluster)
  FAKE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/fake_cluster
fi

"$FAKE_BIN" "$WORK/kubeconfig" >"$WORK/fake.out" 2>"$WORK/fake.err" &
FAKE_PID=$!
PIDS+=("$FAKE_PID")
for _ in $(seq 1 500); do [[ -s "$WORK/kubeconfig" ]] && break; sleep 0.01; done

mkdir -p "$WORK/home" "$WORK/state"
env -i PATH="$PATH" HOME="$WORK/home" XDG_STATE_HOME="$WORK/state" \
  XDG_CONFIG_HOME="$WORK/config" KUBECONFIG="$WORK/kubeconfig" \
  "$OJ_BIN" daemon --set notify.backend=none --set lock.strategy=none \
  --set log.level=warn --set "jobs.max_concurrent=$STEPS" \
  >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
SOCK="$WORK/state/oj/daemon.sock"
for _ in $(seq 1 500); do [[ -S "$SOCK" ]] && break; sleep 0.01; done
[[ -S "$SOCK" ]] || { echo "k8s_scale: the daemon did not start:" >&2; cat "$WORK/daemon.err" >&2; exit 1; }

api() { curl -s --unix-socket "$SOCK" "$@"; }
start=$(date +%s.%N)
# 50 submissions at a time (waiting on those pids only: the fake and the
# daemon are children too).
batch=()
for i in $(seq 1 "$STEPS"); do
  api -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d "{\"name\":\"scale-$i\",\"steps\":[{\"name\":\"s\",\"run\":\"true\",\"container\":\"busybox\"}]}" \
    http://oj/v1/jobs &
  batch+=($!)
  if (( ${#batch[@]} == 50 )); then wait "${batch[@]}"; batch=(); fi
done
(( ${#batch[@]} )) && wait "${batch[@]}"

done_count() {
  api "http://oj/v1/jobs?limit=1000" | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
print(sum(j["state"] == "done" for j in jobs), sum(j["state"] in ("failed", "cancelled", "interrupted") for j in jobs))'
}
ok=0
for _ in $(seq 1 6000); do
  read -r d f < <(done_count)
  if (( d + f >= STEPS )); then ok=1; break; fi
  sleep 0.05
done
elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
kill -TERM "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true

echo "container steps:                 $STEPS (done ${d:-0}, other ${f:-0}, ${elapsed}s)"
sed -n 's/^API requests per container step: /API requests per container step: /p' "$WORK/fake.out"
peak=$(sed -n 's/^watch connections (peak): //p' "$WORK/fake.out")
echo "watch connections:               $peak"
[[ $ok == 1 && ${d:-0} == "$STEPS" && -n "$peak" && $peak -le 2 ]]
