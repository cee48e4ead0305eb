#!/usr/bin/env bash
# What one client call costs the user: `oj status` against an idle daemon
# with JOBS finished jobs in its history, over the Unix socket.
#   status_instructions   instructions of one call (valgrind callgrind), with
#                         the share that config resolution takes
#   status_wall_ms        median wall time of RUNS calls, start to exit
#   version_wall_ms       the same for `oj --version` (start-up alone) and
#   true_wall_ms          for /bin/true (the harness's own process cost)
# Targets (issue "fast where every user feels it"): <= 3 M instructions,
# <= 1.5 ms median.
#
# Usage: bench/client.sh [JOBS] [RUNS]            (defaults 500 and 200)
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Needs: python3; valgrind for the instruction count (skipped without it;
# the config share needs symbols: CARGO_PROFILE_RELEASE_STRIP=false).
set -euo pipefail

JOBS=${1:-500}
RUNS=${2:-200}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

bench_workdir client

export OJ_BIN WORK JOBS RUNS
python3 - <<'PY'
import json, os, shutil, statistics, subprocess, time

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
JOBS, RUNS = int(os.environ["JOBS"]), int(os.environ["RUNS"])
env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
env.update(HOME=WORK, XDG_CONFIG_HOME=WORK + "/config", XDG_STATE_HOME=WORK + "/state",
           XDG_RUNTIME_DIR=WORK)
quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

daemon = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none",
                           "--set", "jobs.max_concurrent=8"], **quiet)
try:
    deadline = time.time() + 15
    while subprocess.call([OJ, "status"], **quiet) != 0:
        if time.time() > deadline or daemon.poll() is not None:
            raise SystemExit("the daemon did not come up")
        time.sleep(0.05)
    # History: JOBS finished one-step jobs, then an idle daemon (nothing
    # queued or running; polled with `status --json`, which any oj has).
    for _ in range(JOBS):
        subprocess.check_call([OJ, "exec", "--", "true"], **quiet)
    while True:
        counts = json.loads(subprocess.check_output([OJ, "status", "--json"], env=env))["jobs"]
        if counts.get("queued", 0) + counts.get("running", 0) == 0:
            break
        time.sleep(0.1)

    for _ in range(5):  # warm the page cache
        subprocess.call([OJ, "status"], **quiet)
    def median_ms(cmd):
        walls = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.call(cmd, **quiet)
            walls.append((time.perf_counter() - t0) * 1000)
        return statistics.median(walls), min(walls), max(walls)

    med, lo, hi = median_ms([OJ, "status"])
    print(f"status_wall_ms {med:.2f}  (median of {RUNS}; min {lo:.2f}, max {hi:.2f})")
    # The floors beside it, measured the same way: starting this binary at
    # all (`--version` parses the command line and exits), and starting a
    # process (`/bin/true`).
    print(f"version_wall_ms {median_ms([OJ, '--version'])[0]:.2f}  (the binary's start-up and exit)")
    print(f"true_wall_ms {median_ms(['/bin/true'])[0]:.2f}  (a process start from this harness)")

    if shutil.which("valgrind"):
        out = WORK + "/callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", OJ, "status"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        total, config = 0, None
        annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                                  capture_output=True, text=True).stdout
        for line in annotate.splitlines():
            fields = line.split()
            if not fields or not fields[0][0].isdigit():
                continue
            n = int(fields[0].replace(",", ""))
            if "PROGRAM TOTALS" in line:
                total = n
            elif config is None and "oj_config::load::load" in line:
                config = n
        share = f", config resolution {config / total:.0%}" if config and total else ""
        print(f"status_instructions {total}  ({total / 1e6:.2f} M{share})")
    else:
        print("status_instructions SKIPPED (valgrind is not installed)")
finally:
    daemon.terminate()
    daemon.wait(timeout=10)
PY
