#!/usr/bin/env bash
# The web UI's jobs page with JOBS (default 20 000) finished jobs in the
# daemon's history: first contentful paint in headless Chromium, median of
# LOADS (default 15) fresh loads of /ui/ (SPEC §8.4; target <= 300 ms).
# The browser is driven over WebDriver (chromedriver) with plain HTTP calls;
# FCP is the browser's own `first-contentful-paint` entry, so it counts the
# request, the server rendering and the first paint, not WebDriver overhead.
#
# Usage: bench/ui_paint.sh [JOBS] [LOADS]
#   OJ_BIN=path/to/oj     use that binary (default: builds the release binary)
# Needs: python3, chromium and chromium-driver (Debian packages).
set -euo pipefail

JOBS=${1:-20000}
LOADS=${2:-15}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
command -v chromedriver >/dev/null || { echo "bench/ui_paint.sh: chromedriver is not installed (apt-get install chromium chromium-driver)" >&2; exit 1; }

bench_workdir ui_paint

export OJ_BIN WORK JOBS LOADS BENCH_DIR="$ROOT/bench"
python3 - <<'PY'
import json, os, socket, statistics, subprocess, sys, time, urllib.request

sys.path.insert(0, os.environ["BENCH_DIR"])
import ojbench

OJ, WORK = os.environ["OJ_BIN"], os.environ["WORK"]
JOBS, LOADS = int(os.environ["JOBS"]), int(os.environ["LOADS"])
SOCK = f"{WORK}/state/oj/daemon.sock"
TOKEN = "bench-ui-paint-token-0123456789"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.headers, r.read()


port = free_port()
env = {k: v for k, v in os.environ.items() if not k.startswith("OJ_")}
env.update(HOME=WORK, XDG_CONFIG_HOME=f"{WORK}/config", XDG_STATE_HOME=f"{WORK}/state")
daemon = subprocess.Popen([OJ, "daemon", "--set", "notify.backend=none", "--set", "jobs.max_finished=1000000",
                           "--set", "jobs.max_concurrent=16", "--set", f"listen.tcp=127.0.0.1:{port}",
                           "--set", f"listen.auth_token={TOKEN}"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
driver = None
try:
    for _ in range(3000):
        try:
            if ojbench.idle(SOCK):
                break
        except (OSError, ValueError, KeyError):
            time.sleep(0.01)
    t0 = time.monotonic()
    ojbench.submit(SOCK, JOBS)
    while not ojbench.idle(SOCK):
        time.sleep(0.05)
    print(f"history: {JOBS} jobs submitted and finished in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    base = f"http://127.0.0.1:{port}"
    _, headers, _ = http("POST", f"{base}/v1/session", headers={"Authorization": f"Bearer {TOKEN}"})
    name, value = headers["Set-Cookie"].split(";")[0].split("=", 1)

    wd_port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={wd_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wd = f"http://127.0.0.1:{wd_port}"
    for _ in range(200):
        try:
            http("GET", f"{wd}/status"); break
        except OSError:
            time.sleep(0.05)
    binary = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else "/usr/bin/chromium"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={WORK}/chromium"]
    caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": binary, "args": args}}}}
    _, _, body = http("POST", f"{wd}/session", caps)
    sid = json.loads(body)["value"]["sessionId"]
    s = f"{wd}/session/{sid}"
    http("POST", f"{s}/url", {"url": f"{base}/ui/assets/style.css"})
    http("POST", f"{s}/cookie", {"cookie": {"name": name, "value": value, "path": "/", "httpOnly": True}})
    script = ("const e = performance.getEntriesByName('first-contentful-paint')[0];"
              "const n = performance.getEntriesByType('navigation')[0];"
              "return [e ? e.startTime : null, n ? n.responseEnd - n.requestStart : null,"
              " document.querySelectorAll('#jobs tbody tr').length];")
    fcp, server = [], []
    for i in range(LOADS + 1):
        http("POST", f"{s}/url", {"url": f"{base}/ui/"})
        paint, resp, rows = None, None, 0
        for _ in range(100):
            _, _, out = http("POST", f"{s}/execute/sync", {"script": script, "args": []})
            paint, resp, rows = json.loads(out)["value"]
            if paint is not None:
                break
            time.sleep(0.02)
        if rows == 0:
            raise SystemExit("the jobs page showed no jobs")
        if i > 0 and paint is not None:  # the first load warms the browser's caches
            fcp.append(paint); server.append(resp)
    http("DELETE", s)
    print(f"jobs page first paint: median {statistics.median(fcp):.1f} ms "
          f"(min {min(fcp):.1f}, max {max(fcp):.1f}) over {len(fcp)} loads, {JOBS} jobs in history, "
          f"{rows} rows on the page; page response median {statistics.median(server):.1f} ms")
finally:
    if driver:
        driver.kill()
    daemon.terminate()
    daemon.wait(timeout=30)
PY
