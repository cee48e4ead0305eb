#!/usr/bin/env bash
# oj beside the tools people use instead, in ONE run on one machine, each at
# 8 parallel slots with TASKS (default 500) trivial tasks (`true`):
#   submit via CLI    one CLI command per task, from the first until all are
#                     done: tasks per second (oj exec / pueue add / tsp)
#   status call       median wall time of one status command with TASKS
#                     finished tasks in the history (oj status / pueue status
#                     / tsp -l), RUNS calls
#   instructions      of one status call (valgrind callgrind), when valgrind
#                     is installed
#   API submission    oj only: one keep-alive connection on the Unix socket
#                     (bench/api_submit.c, a C client: the load generator
#                     should not compete with the daemon for the CPU),
#                     submit TASKS jobs until all are done, beside the
#                     machine's sequential `sh -c true` spawn rate measured by
#                     a small C spawner (bench/spawn.c: posix_spawn + waitpid,
#                     not a shell loop) in the same run; the ratio is the figure
#
# Peers: task-spooler (Debian package `task-spooler`, command `tsp`) and
# pueue (`cargo install --locked --root "$PEERS" pueue`; PEERS defaults to
# .peers beside $CARGO_TARGET_DIR, else /var/tmp/oj-peers: outside the clone). A peer that is not
# installed is skipped with a note; nothing is installed by this script
# unless INSTALL=1.
#
# Usage: bench/peers.sh [TASKS] [RUNS]          (defaults 500 and 100)
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
set -euo pipefail

TASKS=${1:-500}
RUNS=${2:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then PEERS=${PEERS:-$(dirname "$CARGO_TARGET_DIR")/.peers}; fi
PEERS=${PEERS:-/var/tmp/oj-peers}

if [[ -n "${INSTALL:-}" ]]; then
  command -v tsp >/dev/null || apt-get install -y -qq task-spooler
  [[ -x "$PEERS/bin/pueue" ]] || cargo install --locked --root "$PEERS" pueue
fi

bench_workdir peers
export OJ_BIN WORK TASKS RUNS PEERS ROOT
python3 - <<'PY'
import json, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "bench"))
import ojbench  # noqa: E402

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
TASKS, RUNS, PEERS = int(os.environ["TASKS"]), int(os.environ["RUNS"]), os.environ["PEERS"]
SLOTS = 8
rows = []


def env_for(name):
    home = f"{WORK}/{name}"
    os.makedirs(home, exist_ok=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
    e.update(HOME=home, XDG_CONFIG_HOME=f"{home}/config", XDG_STATE_HOME=f"{home}/state",
             XDG_RUNTIME_DIR=home, XDG_DATA_HOME=f"{home}/data", TMPDIR=home)
    return e


def run(cmd, env):
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def wait_until(f, timeout=120, every=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if f():
            return True
        time.sleep(every)
    return False


def oj_idle_on(sock_path):
    # Asked every 2 ms, so the end of a short run is seen when it happens
    # (a 20 ms poll is 5 % of 500 jobs at 1300/s).
    return ojbench.idle(sock_path)


def median_wall(cmd, env):
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        run(cmd, env)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def instructions(cmd, env):
    if not shutil.which("valgrind"):
        return None
    out = f"{env['HOME']}/callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with open(out) as f:
            for line in f:
                if line.startswith("summary:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cli_submit(submit, all_done, env):
    t0 = time.perf_counter()
    for _ in range(TASKS):
        run(submit, env)
    if not wait_until(all_done):
        return None
    return TASKS / (time.perf_counter() - t0)


def compiled(name):
    """bench/NAME.c built into WORK with cc, or None without a compiler."""
    cc = shutil.which("cc")
    if not cc:
        print(f"note: no C compiler (cc): bench/{name}.c is replaced by a python loop")
        return None
    exe = f"{WORK}/{name}"
    src = os.path.join(os.environ["ROOT"], "bench", f"{name}.c")
    return exe if subprocess.run([cc, "-O2", "-o", exe, src]).returncode == 0 else None


def spawn_rate(n=TASKS):
    """Sequential `sh -c true` spawns per second, from bench/spawn.c (a C
    posix_spawn + waitpid loop); python's os.posix_spawn when there is no C
    compiler (its loop overhead makes the limit a little lower)."""
    spawner = compiled("spawn")
    if spawner:
        return float(subprocess.run([spawner, str(n)], capture_output=True, text=True, check=True).stdout)
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ)
        os.waitpid(pid, 0)
    return n / (time.perf_counter() - t0)


# --- oj -----------------------------------------------------------------------
e = env_for("oj")
d = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none", "--set", f"jobs.max_concurrent={SLOTS}",
                      "--set", "log.file.enabled=false"], env=e, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
try:
    assert wait_until(lambda: run([OJ, "status"], e) == 0, 15), "oj daemon did not start"

    def oj_done():
        out = subprocess.run([OJ, "status", "--json"], env=e, capture_output=True, text=True).stdout
        try:
            j = json.loads(out)["jobs"]
        except (ValueError, KeyError):
            return False
        return j["queued"] == 0 and j["running"] == 0

    rate = cli_submit([OJ, "exec", "--", "true"], oj_done, e)
    status_ms = median_wall([OJ, "status"], e)
    ins = instructions([OJ, "status"], e)
    rows.append(("oj", rate, status_ms, ins))

    # API submission on one keep-alive connection: bench/api_submit.c when
    # there is a C compiler (the load generator should cost little beside
    # the daemon on 2 cores), else the same loop in python.
    sock_path = f"{e['XDG_STATE_HOME']}/oj/daemon.sock"
    submitter = compiled("api_submit")
    t0 = time.perf_counter()
    if submitter:
        subprocess.run([submitter, sock_path, str(TASKS)], check=True, stdout=subprocess.DEVNULL)
        api_client = "C client (bench/api_submit.c)"
    else:
        api_client = "python client"
        ojbench.submit(sock_path, TASKS)
    assert wait_until(lambda: oj_idle_on(sock_path), every=0.002)
    api = TASKS / (time.perf_counter() - t0)
    spawn = spawn_rate()
finally:
    d.terminate()
    d.wait(timeout=30)

# --- pueue --------------------------------------------------------------------
pueue, pueued = f"{PEERS}/bin/pueue", f"{PEERS}/bin/pueued"
if os.path.exists(pueue) and os.path.exists(pueued):
    e = env_for("pueue")
    pd = subprocess.Popen([pueued], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: run([pueue, "status"], e) == 0, 15), "pueued did not start"
        run([pueue, "parallel", str(SLOTS)], e)

        def pueue_done():
            out = subprocess.run([pueue, "status", "--json"], env=e, capture_output=True, text=True).stdout
            try:
                tasks = json.loads(out)["tasks"].values()
            except (ValueError, KeyError):
                return False
            return all("Done" in json.dumps(t["status"]) for t in tasks)

        rate = cli_submit([pueue, "add", "--", "true"], pueue_done, e)
        rows.append(("pueue", rate, median_wall([pueue, "status"], e), instructions([pueue, "status"], e)))
    finally:
        run([pueue, "shutdown"], e)
        pd.wait(timeout=30)
else:
    print(f"note: pueue skipped: {pueue} not installed (INSTALL=1 or cargo install --locked --root {PEERS} pueue)")

# --- task-spooler -------------------------------------------------------------
tsp = shutil.which("tsp")
if tsp:
    e = env_for("tsp")
    e["TS_SOCKET"] = f"{e['HOME']}/tsp.socket"
    e["TS_SLOTS"] = str(SLOTS)
    run([tsp, "-S", str(SLOTS)], e)

    def tsp_done():
        out = subprocess.run([tsp, "-l"], env=e, capture_output=True, text=True).stdout
        lines = out.splitlines()[1:]
        return len(lines) >= TASKS and all(" finished " in l for l in lines)

    rate = cli_submit([tsp, "true"], tsp_done, e)
    rows.append(("task-spooler", rate, median_wall([tsp, "-l"], e), instructions([tsp, "-l"], e)))
    run([tsp, "-K"], e)
else:
    print("note: task-spooler skipped: `tsp` not installed (apt-get install task-spooler)")

# --- the table ------------------------------------------------------------------
print(f"\n{TASKS} trivial tasks, {SLOTS} slots, status with {TASKS} in history (median of {RUNS})\n")
print(f"{'':14} {'CLI submit→done':>16} {'status call':>12} {'instructions/status':>20}")
for name, rate, ms, ins in rows:
    r = f"{rate:.0f} /s" if rate else "n/a"
    i = f"{ins / 1e6:.2f} M" if ins else "n/a"
    print(f"{name:14} {r:>16} {ms:>9.2f} ms {i:>20}")
by = {n: r for n, r, _, _ in rows}
if by.get("task-spooler") and by.get("oj"):
    print(f"\noj / task-spooler CLI submission: {by['oj'] / by['task-spooler']:.2f} (target >= 1)")
print(f"API submission, one keep-alive connection: {api:.0f} /s; sequential sh -c true: {spawn:.0f} /s; "
      f"ratio {api / spawn:.2f} (target >= 0.85; {api_client})")
PY
