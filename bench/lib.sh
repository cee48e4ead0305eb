# Shared preamble of the bench scripts (sourced, not run):
#   - ROOT, and OJ_BIN = $OJ_BIN or a freshly built release binary;
#   - bench_workdir NAME: WORK (a temp dir) and PIDS, both cleaned up on exit
#     (every pid in PIDS is killed, WORK removed).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -z "${OJ_BIN:-}" ]]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target} cargo build --release -q -p oj-cli)
  OJ_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/oj
fi

PIDS=()
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# Work directories go under BENCH_TMPDIR (default /var/tmp): on a machine
# whose /tmp is churned by test suites, creating files there can be slow
# for reasons that have nothing to do with what is measured (ext4 without a
# journal skips inodes freed in the last 30 s, and a busy /tmp is full of
# them), and every job creates a log directory and file.
bench_workdir() {
  local base=${BENCH_TMPDIR:-/var/tmp}
  [[ -d "$base" && -w "$base" ]] || base=${TMPDIR:-/tmp}
  WORK=$(mktemp -d -p "$base" "oj-bench-$1.XXXXXX")
  trap bench_cleanup EXIT
}
