#!/usr/bin/env bash
# Daemon memory after a restart with many jobs (issue 20 item 3; target
# <= 30 MB): JOBS (default 5000) one-step `true` jobs are submitted over the
# API and finish; the daemon is stopped and started again (it reads them
# back from the snapshot and WAL); then `oj job list` walks every page.
# Prints VmRSS of the fresh daemon (no jobs), of the full one before the
# restart, after the restart, and after the full list, in MB.
#
# Usage: bench/restart_rss.sh [JOBS]
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Needs: python3 (used only by this script).
set -euo pipefail

JOBS=${1:-5000}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_workdir restart-rss

export OJ_BIN WORK JOBS ROOT
python3 - <<'PY'
import os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "bench"))
import ojbench  # noqa: E402

OJ, WORK, JOBS = os.environ["OJ_BIN"], os.environ["WORK"], int(os.environ["JOBS"])
env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
env.update(HOME=WORK, XDG_CONFIG_HOME=f"{WORK}/config", XDG_STATE_HOME=f"{WORK}/state",
           XDG_RUNTIME_DIR=WORK, XDG_DATA_HOME=f"{WORK}/data")
SOCK = f"{WORK}/state/oj/daemon.sock"


def start():
    p = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none", "--set", "log.file.enabled=false",
                          "--set", f"jobs.max_finished={max(JOBS, 10000)}"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if subprocess.run([OJ, "status"], env=env, capture_output=True).returncode == 0:
            return p
        time.sleep(0.05)
    raise SystemExit("restart_rss: the daemon did not start")


def rss_mb(p):
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop(p):
    subprocess.run([OJ, "daemon", "stop"], env=env, capture_output=True)
    p.wait(timeout=60)


def settle(p):
    # The reading after the work: let freed memory and threads settle.
    time.sleep(1.0)
    return rss_mb(p)


p = start()
fresh = settle(p)
ojbench.submit(SOCK, JOBS)
while not ojbench.idle(SOCK):
    time.sleep(0.1)
full = settle(p)
stop(p)

p = start()
restarted = settle(p)
listed = subprocess.run([OJ, "job", "list"], env=env, capture_output=True, text=True).stdout.count("\n") - 1
after_list = settle(p)
stop(p)
if listed != JOBS:
    raise SystemExit(f"restart_rss: the list showed {listed} jobs, expected {JOBS}")

print(f"VmRSS with {JOBS} jobs: fresh daemon {fresh:.1f} MB, before restart {full:.1f} MB, "
      f"after restart {restarted:.1f} MB, after a full list {after_list:.1f} MB (target <= 30 MB)")
PY
