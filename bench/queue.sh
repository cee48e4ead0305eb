#!/usr/bin/env bash
# The scheduler under a deep queue (SPEC §8.2, issue 26): a daemon with 10
# queues gets WAITING (default 10 000) held jobs spread over the queues with
# mixed priorities, half of them with an `after` dependency on another held
# job. Measured before and after they are added, on the same daemon:
#   - start rate: N (default 500) new one-step `true` jobs in the default
#     queue, submitted on one keep-alive connection, until all have ended
#     (median of 3 runs);
#   - GET /v1/status: median latency of 200 requests;
#   - VmRSS: its growth divided by the number of waiting jobs (the event
#     ring, a fixed cost, is filled before the baseline; printed apart).
# Targets: start rate with the waiting jobs >= 0.8 x without; /v1/status
# <= 2 x as slow; <= 2 KB of RSS per waiting job.
#
# Usage: bench/queue.sh [WAITING] [N]
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Needs: python3 (used only by this script).
set -euo pipefail

WAITING=${1:-10000}
N=${2:-500}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_workdir queue

export OJ_BIN WORK WAITING N ROOT
python3 - <<'PY'
import json, os, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "bench"))
import ojbench  # noqa: E402

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
WAITING, N = int(os.environ["WAITING"]), int(os.environ["N"])
env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
env.update(HOME=WORK, XDG_CONFIG_HOME=f"{WORK}/config", XDG_STATE_HOME=f"{WORK}/state",
           XDG_RUNTIME_DIR=WORK, XDG_DATA_HOME=f"{WORK}/data")
SOCK = f"{WORK}/state/oj/daemon.sock"
os.makedirs(f"{WORK}/config/oj", exist_ok=True)
with open(f"{WORK}/config/oj/config.toml", "w") as f:
    f.write("[jobs]\nmax_concurrent = 4\nmax_finished = 100000\n")
    for q in range(10):
        f.write(f"[queues.q{q}]\nmax_concurrent = 2\n")


class Conn:
    """One keep-alive HTTP/1.1 connection to the daemon's socket."""

    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(SOCK)
        self.f = self.s.makefile("rb")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        status = int(self.f.readline().split()[1])
        length = 0
        while (line := self.f.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, self.f.read(length)


def rss_kb(p):
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def settle(p):
    time.sleep(1.0)
    return rss_kb(p)


def counts():
    code, body = Conn().call("GET", "/v1/status")
    return json.loads(body)["jobs"]


def start_rate(waiting=0):
    """N new jobs until all ended (the `waiting` held jobs stay queued)."""
    t0 = time.perf_counter()
    ojbench.submit(SOCK, N)
    while (c := counts())["running"] > 0 or c["queued"] > waiting:
        time.sleep(0.005)
    return N / (time.perf_counter() - t0)


def status_ms():
    c = Conn()
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        code, _ = c.call("GET", "/v1/status")
        times.append((time.perf_counter() - t0) * 1000)
        assert code == 200
    return statistics.median(times)


p = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none", "--set", "log.file.enabled=false"],
                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(300):
        if subprocess.run([OJ, "status"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    else:
        raise SystemExit("queue: the daemon did not start")
    start_rate()  # warm up
    # Each rate is the median of 3 runs (one machine hiccup moves one run).
    empty_rate, empty_status = statistics.median(start_rate() for _ in range(3)), status_ms()
    # The event ring (the last 10 000 published changes, SPEC §8.4) is a
    # fixed cost every daemon that has run a few thousand jobs pays; fill
    # it before the baseline so that it is not charged to waiting jobs.
    # Its share is printed on its own.
    unfilled = settle(p)
    ojbench.submit(SOCK, 3500)
    while (c := counts())["running"] > 0 or c["queued"] > 0:
        time.sleep(0.01)
    before = settle(p)
    c = Conn()
    heads = []
    for i in range(WAITING):
        spec = {"name": f"w{i}", "queue": f"q{i % 10}", "priority": (i * 37) % 2001 - 1000,
                "hold": True, "steps": [{"name": "s", "run": "true"}]}
        if i % 2 == 1 and heads:
            spec["after"] = [{"job": heads[(i * 7) % len(heads)]}]
        code, body = c.call("POST", "/v1/jobs", spec)
        if code != 201:
            raise SystemExit(f"queue: submitting a waiting job failed: {code} {body[:200]!r}")
        if i % 2 == 0:
            heads.append(json.loads(body)["id"])
    after = settle(p)
    deep_rate, deep_status = statistics.median(start_rate(WAITING) for _ in range(3)), status_ms()
    per_job = (after - before) / WAITING
    print(f"start rate: empty {empty_rate:.0f} jobs/s, with {WAITING} waiting {deep_rate:.0f} jobs/s, "
          f"ratio {deep_rate / empty_rate:.2f} (target >= 0.8)")
    print(f"/v1/status median: empty {empty_status:.3f} ms, with {WAITING} waiting {deep_status:.3f} ms, "
          f"ratio {deep_status / empty_status:.2f} (target <= 2)")
    print(f"RSS per waiting job: {per_job:.2f} KB ({before / 1024:.1f} MB before, {after / 1024:.1f} MB after; "
          f"target <= 2 KB)")
    print(f"RSS of the 3500 jobs run before the baseline (their records and the full event ring): "
          f"{(before - unfilled) / 1024:.1f} MB")
finally:
    p.terminate()
    p.wait(timeout=60)
PY
