#!/usr/bin/env bash
# Daemon benchmarks (SPEC §5), all against the real `oj daemon` binary:
#   1. job throughput: N one-step `true` jobs submitted through the API (one
#      keep-alive connection on the Unix socket), until the last is `done`,
#      printed beside the machine's raw fork+exec rate of the same shell
#      (`/bin/sh -c true`, sequentially) measured in the same run; target
#      ratio >= 0.5;
#   2. start to `/readyz` 200 (median of R runs; target <= 150 ms);
#   3. SIGTERM to exit of an idle daemon (median of R runs; target <= 200 ms).
#
# Usage: bench/throughput.sh [JOBS] [RUNS]        (defaults 2000 and 15)
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
#   MAX_CONCURRENT=N      jobs.max_concurrent of the daemon (default 4)
#   CLIENTS=N             concurrent submitting connections (default 4)
# Needs: curl, python3 (used only by this script).
set -euo pipefail

N=${1:-2000}
RUNS=${2:-15}
MAXC=${MAX_CONCURRENT:-4}
CLIENTS=${CLIENTS:-4}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

bench_workdir throughput

export OJ_BIN WORK N RUNS MAXC CLIENTS
python3 - <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, time

OJ, WORK, N, RUNS, MAXC = os.environ["OJ_BIN"], os.environ["WORK"], int(os.environ["N"]), int(os.environ["RUNS"]), os.environ["MAXC"]
CLIENTS = max(1, int(os.environ["CLIENTS"]))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def env_for(d):
    e = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
    e.update(HOME=d, XDG_CONFIG_HOME=d + "/config", XDG_STATE_HOME=d + "/state", XDG_RUNTIME_DIR=d)
    return e

def start(d, admin_port, extra=()):
    os.makedirs(d, exist_ok=True)
    args = [OJ, "daemon", "--set", "notify.backend=none", "--set", "log.file.enabled=false",
            "--set", f"admin.addr=127.0.0.1:{admin_port}", "--set", f"jobs.max_concurrent={MAXC}", *extra]
    return subprocess.Popen(args, env=env_for(d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def http_status(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return int(s.recv(64).split()[1])
    except OSError:
        return 0

def unix_request(sock_path, method, path, body=None):
    s = socket.socket(socket.AF_UNIX); s.connect(sock_path)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    chunks = []
    while True:
        c = s.recv(65536)
        if not c: break
        chunks.append(c)
    s.close()
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    return head, rest

def wait_ready(port, proc, limit=15.0):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if http_status(port, "/readyz") == 200:
            return time.perf_counter()
        if proc.poll() is not None:
            sys.exit(f"daemon exited with {proc.returncode}")
        time.sleep(0.001)
    sys.exit("daemon not ready")

# --- 1. throughput -----------------------------------------------------------
d = WORK + "/tp"; port = free_port()
proc = start(d, port)
wait_ready(port, proc)
sock = d + "/state/oj/daemon.sock"
spec = d + "/spec.json"
with open(spec, "w") as f:
    json.dump({"name": "bench", "steps": [{"name": "t", "run": "true"}]}, f)

t0 = time.perf_counter()
# CLIENTS curls, each one keep-alive connection sending its share of the N
# POSTs (URL globbing); the daemon commits concurrent requests together.
share = [N // CLIENTS + (1 if i < N % CLIENTS else 0) for i in range(CLIENTS)]
curls = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--unix-socket", sock, "-X", "POST",
                "-H", "Content-Type: application/json", "--data-binary", "@" + spec,
                f"http://x/v1/jobs?c={i}&n=[1-{k}]"]) for i, k in enumerate(share) if k]
for c in curls:
    c.wait()
t_submitted = time.perf_counter()
while True:
    _, body = unix_request(sock, "GET", "/v1/status")
    jobs = json.loads(body)["jobs"]
    if jobs["done"] + jobs["failed"] >= N:
        break
    time.sleep(0.005)
t1 = time.perf_counter()
if jobs["failed"]:
    print(f"warning: {jobs['failed']} jobs failed", file=sys.stderr)
proc.send_signal(signal.SIGTERM); proc.wait(timeout=30)
api_rate = N / (t1 - t0)

r0 = time.perf_counter()
for _ in range(N):
    subprocess.run(["/bin/sh", "-c", "true"])
raw_rate = N / (time.perf_counter() - r0)
# Python's subprocess adds its own cost; also measure with a plain shell loop.
r1 = time.perf_counter()
subprocess.run(["/bin/sh", "-c", f"i=0; while [ $i -lt {N} ]; do /bin/sh -c true; i=$((i+1)); done"], check=True)
raw_rate_sh = N / (time.perf_counter() - r1)
raw = max(raw_rate, raw_rate_sh)
print(f"jobs:              {N} one-step `true` jobs, jobs.max_concurrent={MAXC}, {CLIENTS} submitting connections")
print(f"submit phase:      {N / (t_submitted - t0):8.0f} submissions/s")
print(f"end to end:        {api_rate:8.0f} jobs/s")
print(f"raw fork+exec:     {raw:8.0f} /bin/sh -c true per s (sequential; python {raw_rate:.0f}/s, sh loop {raw_rate_sh:.0f}/s)")
print(f"ratio:             {api_rate / raw:8.2f}   (target >= 0.50)")

# --- 2./3. start to ready, SIGTERM to exit -----------------------------------
ready_ms, stop_ms = [], []
for i in range(RUNS):
    d = f"{WORK}/r{i}"; port = free_port()
    t0 = time.perf_counter()
    proc = start(d, port)
    t_ready = wait_ready(port, proc)
    ready_ms.append((t_ready - t0) * 1000)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    stop_ms.append((time.perf_counter() - t0) * 1000)
    if code != 0:
        print(f"warning: exit code {code}", file=sys.stderr)
print(f"start to /readyz:  median {statistics.median(ready_ms):6.1f} ms  (min {min(ready_ms):.1f}, max {max(ready_ms):.1f}; target <= 150 ms; includes process spawn)")
print(f"SIGTERM to exit:   median {statistics.median(stop_ms):6.1f} ms  (min {min(stop_ms):.1f}, max {max(stop_ms):.1f}; target <= 200 ms; idle daemon)")
PY
