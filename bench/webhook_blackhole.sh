#!/usr/bin/env bash
# Cost of a dead webhook on job throughput (SPEC §5: "A webhook that never
# answers costs <= 5 % of job throughput").
#
# Starts, in the same run, `oj daemon`s from the same binary that differ only
# in notify.backend: "none", and "webhook" pointed at a black hole (a TCP
# listener that accepts connections and never answers, so every delivery
# attempt waits for the full notify.webhook.timeout and the notification
# queue fills up). For each, submits N one-step `true` jobs through the API
# (one keep-alive connection on the Unix socket) and measures the time until
# all N are `done`. Runs ROUNDS rounds alternating the two daemons and keeps
# each one's best, then prints jobs/s and the ratio webhook/none.
#
# A third daemon, notify.backend = "log" with INFO filtered out, has the same
# notification bookkeeping as the webhook one (each notification persisted in
# the WAL, queued, acknowledged) but no delivery: comparing the three
# separates what persistence costs from what the dead receiver costs.
#
# Usage: bench/webhook_blackhole.sh [JOBS] [ROUNDS]      (defaults 500 and 3)
#   OJ_BIN=path/to/oj  use that binary (default: builds target/release/oj)
# Needs: python3 (the client and the black hole; oj does not use it).
# Exit status: 0 when the ratio meets the target 0.95, 1 otherwise.
set -euo pipefail

N=${1:-500}
ROUNDS=${2:-3}
TARGET=0.95
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_workdir hook

# --- the black hole: accepts, reads, never answers ---------------------------
cat > "$WORK/blackhole.py" <<'EOF'
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1024)
print(s.getsockname()[1], flush=True)
held = []
def drain(c):
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
while True:
    c, _ = s.accept(); held.append(c)
    threading.Thread(target=drain, args=(c,), daemon=True).start()
EOF
python3 "$WORK/blackhole.py" > "$WORK/blackhole.port" &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -s "$WORK/blackhole.port" ]] && break; sleep 0.05; done
HOLE_PORT=$(cat "$WORK/blackhole.port")

# --- the client: submit N jobs on one connection, wait until all are done ----
cat > "$WORK/client.py" <<'EOF'
import http.client, json, socket, sys, time
class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60); self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(self.path)
def call(c, method, url, body=None):
    c.request(method, url, body=body, headers={"Content-Type": "application/json"} if body else {})
    r = c.getresponse(); data = r.read(); return r.status, json.loads(data or b"null")
sock, n = sys.argv[1], int(sys.argv[2])
c = UnixConn(sock)
spec = json.dumps({"name": "bench", "steps": [{"name": "s", "run": "true"}]})
_, st = call(c, "GET", "/v1/status"); before = st["jobs"].get("done", 0)
start = time.monotonic()
for _ in range(n):
    status, job = call(c, "POST", "/v1/jobs", spec)
    if status != 201:
        sys.exit(f"submit failed: {status} {job}")
while True:
    _, st = call(c, "GET", "/v1/status")
    if st["jobs"].get("done", 0) - before >= n:
        break
    time.sleep(0.005)
print(f"{n / (time.monotonic() - start):.1f}")
EOF

start_daemon() { # name, then extra config lines on stdin
  local name=$1 home=$WORK/$1
  mkdir -p "$home/config/oj" "$home/state" "$home/runtime"
  cat > "$home/config/oj/config.toml"
  env -i PATH="$PATH" HOME="$home" XDG_CONFIG_HOME="$home/config" XDG_STATE_HOME="$home/state" \
    XDG_RUNTIME_DIR="$home/runtime" "$OJ_BIN" daemon >"$home/out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    [[ -S "$home/state/oj/daemon.sock" ]] && return 0
    sleep 0.05
  done
  echo "daemon $name did not start:" >&2; cat "$home/out" >&2; exit 1
}

COMMON='[jobs]
max_concurrent = 8
[log]
level = "warn"
file.enabled = false'

start_daemon none <<EOF
$COMMON
[notify]
backend = "none"
EOF
start_daemon hole <<EOF
$COMMON
[notify]
backend = "webhook"
[notify.webhook]
url = "http://127.0.0.1:$HOLE_PORT/hook"
timeout = "10s"
EOF

start_daemon log <<EOF
$COMMON
[notify]
backend = "log"
EOF

best_none=0; best_hole=0; best_log=0
for r in $(seq 1 "$ROUNDS"); do
  a=$(python3 "$WORK/client.py" "$WORK/none/state/oj/daemon.sock" "$N")
  b=$(python3 "$WORK/client.py" "$WORK/hole/state/oj/daemon.sock" "$N")
  c=$(python3 "$WORK/client.py" "$WORK/log/state/oj/daemon.sock" "$N")
  printf '  round %d: none %8s   webhook black hole %8s   log (filtered) %8s jobs/s\n' "$r" "$a" "$b" "$c"
  best_none=$(python3 -c "print(max($best_none, $a))")
  best_hole=$(python3 -c "print(max($best_hole, $b))")
  best_log=$(python3 -c "print(max($best_log, $c))")
done
ratio=$(python3 -c "print(f'{$best_hole/$best_none:.3f}')")
ratio_log=$(python3 -c "print(f'{$best_hole/$best_log:.3f}')")

echo "oj webhook black-hole benchmark ($N one-step jobs per run, best of $ROUNDS)"
printf '  notify.backend = "none"            %8s jobs/s\n' "$best_none"
printf '  webhook that never answers         %8s jobs/s\n' "$best_hole"
printf '  log backend, INFO filtered         %8s jobs/s\n' "$best_log"
printf '  ratio black hole / none            %8s (target >= %s)\n' "$ratio" "$TARGET"
printf '  ratio black hole / log             %8s (the dead receiver alone, bookkeeping excluded)\n' "$ratio_log"
python3 -c "import sys; sys.exit(0 if $ratio >= $TARGET else 1)"
