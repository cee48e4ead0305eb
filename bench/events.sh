#!/usr/bin/env bash
# What the event stream (GET /v1/events, SPEC §8.4) costs and saves:
#   wait overhead     median wall of `oj exec --wait -- true` minus that of
#                     `oj exec -- true`, RUNS of each interleaved against one
#                     idle daemon (target <= 15 ms)
#   idle stop         median wall of `oj daemon stop` on an idle daemon, one
#                     daemon per run (target <= 20 ms)
#   200 readers       end-to-end job throughput (JOBS one-step `true` jobs
#                     through the API) with 200 connected event readers,
#                     over the same without readers; ROUNDS of each,
#                     (readers: bench/sse_readers.c, one epoll loop, so
#                     that their own CPU is not what is measured)
#                     interleaved, median ratio (target >= 0.85)
#
# Usage: bench/events.sh [RUNS] [JOBS] [ROUNDS]     (defaults 50, 1000, 3)
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Prints one `name: value` line per figure (bench/run reads them).
set -euo pipefail

RUNS=${1:-50}
JOBS=${2:-1000}
ROUNDS=${3:-3}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

bench_workdir events

export OJ_BIN WORK RUNS JOBS ROUNDS ROOT
python3 - <<'PY'
import json, os, selectors, signal, socket, statistics, subprocess, sys, threading, time

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
RUNS, JOBS, ROUNDS = int(os.environ["RUNS"]), int(os.environ["JOBS"]), int(os.environ["ROUNDS"])
READERS = 200
MAXC = 8

def env_for(d):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
    env.update(HOME=d, XDG_CONFIG_HOME=d + "/config", XDG_STATE_HOME=d + "/state", XDG_RUNTIME_DIR=d)
    return env

def start(d):
    os.makedirs(d, exist_ok=True)
    p = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none", "--set", "log.file.enabled=false",
                          "--set", f"jobs.max_concurrent={MAXC}"],
                         env=env_for(d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = d + "/state/oj/daemon.sock"
    deadline = time.time() + 15
    while True:
        try:
            status(sock)
            return p, sock
        except (OSError, ValueError, IndexError):
            pass
        if time.time() > deadline or p.poll() is not None:
            sys.exit("the daemon did not come up")
        time.sleep(0.005)

def status(sock):
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while c := s.recv(65536):
        data += c
    s.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])

def wall(cmd, env):
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000

# --- 1. --wait overhead --------------------------------------------------------
d = WORK + "/wait"
proc, sock = start(d)
env = env_for(d)
for _ in range(5):  # warm up
    wall([OJ, "exec", "--wait", "--", "true"], env)
plain, waited = [], []
for _ in range(RUNS):
    plain.append(wall([OJ, "exec", "--", "true"], env))
    waited.append(wall([OJ, "exec", "--wait", "--", "true"], env))
proc.send_signal(signal.SIGTERM); proc.wait(timeout=30)
mp, mw = statistics.median(plain), statistics.median(waited)
print(f"exec median ms: {mp:.1f}")
print(f"exec --wait median ms: {mw:.1f}")
print(f"wait overhead ms: {mw - mp:.1f}")

# --- 2. idle daemon stop --------------------------------------------------------
stops = []
for i in range(max(5, RUNS // 4)):
    d = WORK + f"/stop{i}"
    proc, sock = start(d)
    time.sleep(0.05)
    stops.append(wall([OJ, "daemon", "stop"], env_for(d)))
    proc.wait(timeout=30)
print(f"idle stop median ms: {statistics.median(stops):.1f}")

# --- 3. throughput with 200 event readers ---------------------------------------
def readers(sock, n, stop):
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX); s.connect(sock)
        s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        conns.append(s)
    got = [0]
    def loop():
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                got[0] += len(data)
        for s in conns:
            s.close()
    t = threading.Thread(target=loop); t.start()
    return t, got

def c_readers():
    """bench/sse_readers.c built into WORK with cc (one epoll loop: the
    readers' own CPU stays small beside the daemon's), or None."""
    import shutil
    cc = shutil.which("cc")
    if not cc:
        print("note: no C compiler (cc): the readers are a python loop, whose own CPU lowers the ratio",
              file=sys.stderr)
        return None
    exe = WORK + "/sse_readers"
    src = os.path.join(os.environ["ROOT"], "bench", "sse_readers.c")
    return exe if subprocess.run([cc, "-O2", "-o", exe, src]).returncode == 0 else None

READER_EXE = c_readers()

class CReaders:
    """The C readers as a process: connected when started, stopped with SIGTERM."""
    def __init__(self, sock, n):
        self.p = subprocess.Popen([READER_EXE, sock, str(n)], stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            sys.exit("the event readers did not connect")
    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out, _ = self.p.communicate(timeout=30)
        return int(out.split()[-1])

def throughput(with_readers):
    d = WORK + f"/tp{time.perf_counter_ns()}"
    proc, sock = start(d)
    spec = d + "/spec.json"
    with open(spec, "w") as f:
        json.dump({"name": "bench", "steps": [{"name": "t", "run": "true"}]}, f)
    stop = threading.Event()
    reader = None
    if with_readers:
        reader = CReaders(sock, READERS) if READER_EXE else readers(sock, READERS, stop)
    time.sleep(0.2)
    before = status(sock)["jobs"]
    t0 = time.perf_counter()
    share = [JOBS // 4 + (1 if i < JOBS % 4 else 0) for i in range(4)]
    curls = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--unix-socket", sock, "-X", "POST",
                               "-H", "Content-Type: application/json", "--data-binary", "@" + spec,
                               f"http://x/v1/jobs?c={i}&n=[1-{k}]"]) for i, k in enumerate(share) if k]
    for c in curls:
        c.wait()
    while True:
        jobs = status(sock)["jobs"]
        if jobs["done"] + jobs["failed"] - before["done"] - before["failed"] >= JOBS:
            break
        time.sleep(0.005)
    rate = JOBS / (time.perf_counter() - t0)
    got = 0
    if isinstance(reader, CReaders):
        got = reader.stop()
    elif reader:
        stop.set(); reader[0].join(); got = reader[1][0]
    proc.send_signal(signal.SIGTERM); proc.wait(timeout=30)
    return rate, got

ratios, none_rates, with_rates = [], [], []
for r in range(ROUNDS):
    a, _ = throughput(False)
    b, got = throughput(True)
    none_rates.append(a); with_rates.append(b); ratios.append(b / a)
    print(f"round {r + 1}: {a:.0f} jobs/s without readers, {b:.0f} with {READERS} ({got / 1e6:.1f} MB read)", file=sys.stderr)
print(f"throughput without readers: {statistics.median(none_rates):.0f} jobs/s")
print(f"throughput with {READERS} readers: {statistics.median(with_rates):.0f} jobs/s")
print(f"readers ratio: {statistics.median(ratios):.3f}")
PY
