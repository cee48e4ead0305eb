#!/usr/bin/env bash
# Daemon memory under big reads (issue "bounded memory per request"), against
# the real `oj daemon` binary; target for both: under 64 MB above idle.
#   1. 10 parallel `GET /v1/jobs/{id}/logs` of one LOG_MB (default 200) MB log;
#   2. 100 parallel clients each walking every page of `GET /v1/jobs` over
#      JOBS (default 20 000) jobs (limit=1000 per page), while `/v1/status`
#      is polled: its latency is printed beside (it must not wait behind them).
# "Above idle" = the highest VmRSS sampled every 5 ms during the load, minus
# VmRSS of the same daemon idle just before it.
#
# Usage: bench/memory.sh [LOG_MB] [JOBS]
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Needs: python3 (used only by this script).
set -euo pipefail

LOG_MB=${1:-200}
JOBS=${2:-20000}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

bench_workdir memory

export OJ_BIN WORK LOG_MB JOBS
python3 - <<'PY'
import http.client, json, os, signal, socket, statistics, subprocess, threading, time

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
LOG_MB, JOBS = int(os.environ["LOG_MB"]), int(os.environ["JOBS"])
STATE = f"{WORK}/state/oj"
SOCK = f"{STATE}/daemon.sock"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=120)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(SOCK)


def call(method, path, body=None, conn=None):
    c = conn or UnixHTTP()
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def start():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
    env.update(HOME=WORK, XDG_CONFIG_HOME=f"{WORK}/config", XDG_STATE_HOME=f"{WORK}/state")
    # max_finished above the job count: retention would prune the 20 000 jobs.
    p = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none",
                          "--set", "jobs.max_finished=1000000"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(3000):
        try:
            if call("GET", "/v1/status")[0] == 200:
                return p
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("daemon did not become ready")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024


def peak_during(pid, work):
    """Runs work() while sampling VmRSS every 5 ms; returns (idle, peak)."""
    time.sleep(1.0)
    idle = rss_mb(pid)
    peak, done = [idle], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    try:
        work()
    finally:
        done.set()
        t.join()
    return idle, peak[0]


def wait_done(jid):
    for _ in range(6000):
        job = json.loads(call("GET", f"/v1/jobs/{jid}")[1])
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise SystemExit(f"job {jid} did not end")


# --- 1. parallel reads of a big log --------------------------------------------
d = start()
s, body = call("POST", "/v1/jobs", {"name": "big-log", "steps": [{"name": "out",
              "run": f"head -c {LOG_MB << 20} /dev/zero | tr '\\0' x"}]})
jid = json.loads(body)["id"]
assert wait_done(jid)["state"] == "done"
sizes = []


def reads():
    def one():
        c = UnixHTTP()
        c.request("GET", f"/v1/jobs/{jid}/logs")
        r, n = c.getresponse(), 0
        while chunk := r.read(1 << 20):
            n += len(chunk)
        sizes.append(n)
    ts = [threading.Thread(target=one) for _ in range(10)]
    [t.start() for t in ts]
    [t.join() for t in ts]


idle, peak = peak_during(d.pid, reads)
assert all(n >= LOG_MB << 20 for n in sizes), sizes
print(f"log reads: 10 x {LOG_MB} MB: idle {idle:.1f} MB, peak {peak:.1f} MB, above idle {peak - idle:.1f} MB")
s, template = call("GET", f"/v1/jobs/{jid}")
template = json.loads(template)
d.send_signal(signal.SIGTERM)
d.wait(timeout=30)

# --- 2. parallel lists of many jobs ----------------------------------------------
snap_path = f"{STATE}/snapshot.json"
with open(snap_path) as f:
    snap = json.load(f)
jobs = []
for i in range(JOBS):
    j = dict(template)
    j["id"], j["name"] = f"0mx3{i:08d}", f"job-{i}"
    jobs.append(j)
snap["state"]["jobs"] = jobs
with open(snap_path, "w") as f:
    json.dump(snap, f)
try:
    os.remove(f"{STATE}/wal.jsonl")
except FileNotFoundError:
    pass
d = start()
counts, status_ms = [], []


def lists():
    stop = threading.Event()

    def walk():
        c, n, after = UnixHTTP(), 0, None
        while True:
            q = "/v1/jobs?limit=1000" + (f"&after={after}" if after else "")
            page = json.loads(call("GET", q, conn=c)[1])
            n += len(page["jobs"])
            after = page["next"]
            if after is None:
                break
        counts.append(n)

    def poll_status():
        while not stop.is_set():
            t0 = time.perf_counter()
            call("GET", "/v1/status")
            status_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)

    poller = threading.Thread(target=poll_status)
    poller.start()
    ts = [threading.Thread(target=walk) for _ in range(100)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    stop.set()
    poller.join()


idle, peak = peak_during(d.pid, lists)
assert counts == [JOBS] * 100, counts[:3]
print(f"job lists: 100 x {JOBS} jobs: idle {idle:.1f} MB, peak {peak:.1f} MB, above idle {peak - idle:.1f} MB")
status_ms.sort()
print(f"/v1/status during the lists: median {statistics.median(status_ms):.1f} ms, "
      f"max {status_ms[-1]:.1f} ms over {len(status_ms)} calls")
d.send_signal(signal.SIGTERM)
d.wait(timeout=30)
PY
